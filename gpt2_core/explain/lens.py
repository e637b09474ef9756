"""The logit lens: what the model would say next if it stopped after each layer.

GPT-2 adds each block's output to one running vector per position, the residual stream; only at the end does it read
that vector through the final LayerNorm and the LM head to get the next token's logits. The lens reads the stream the
same way after the embeddings and after every block, so each layer's guess can be shown: the first rows are mostly
the input token or noise, the later ones close in on the answer, and the last row is the model's own output exactly.
It reads the model's own `ln_f` and `lm_head`, whatever they are (fp32, fp16, CPU int8), and it is an analysis path of
its own, like attention.py: decoding (model.py, compiled.py) has neither a branch nor a cost for it.

For each layer and position it reports the top tokens and their probabilities, the rank of the model's final top
guess there (the layer from which that rank stays 1 is where the model *committed* to its answer) and, if asked, the
rank and probability of one chosen token.

References: nostalgebraist 2020, "interpreting GPT: the logit lens" (LessWrong); Belrose et al. 2023, "Eliciting Latent
Predictions from Transformers with the Tuned Lens".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from gpt2_core.explain.attention import MAX_ATTENTION_TOKENS
from gpt2_core.generate.sampling import ranks_of
from gpt2_core.model import GPT

MAX_LENS_TOKENS = MAX_ATTENTION_TOKENS  # the grid's columns: as many tokens as an attention map shows


@dataclass(frozen=True)
class LensIds:
    """The lens in token ids, for rows 0 (the embeddings) to n_layer (the last block: the model's own output)."""

    top_ids: torch.Tensor  # (n_layer + 1, T, top) the likeliest next tokens at each row and position
    top_probs: torch.Tensor  # (n_layer + 1, T, top) their probabilities
    final_ranks: torch.Tensor  # (n_layer + 1, T) the rank at each row of the last row's top guess at that position
    target_ranks: torch.Tensor | None  # (n_layer + 1, T) the chosen token's rank (1 = likeliest), if one was chosen
    target_probs: torch.Tensor | None  # (n_layer + 1, T) its probability


def residual_streams(model: GPT, ids: list[int]) -> list[torch.Tensor]:
    """The residual stream of `ids` after the embeddings and after every block: n_layer + 1 tensors (T, n_embd), the
    last one the input of the final LayerNorm (transformers' hidden_states[-1] is that LayerNorm's output)."""
    T = len(ids)
    device = model.wpe.weight.device
    idx = torch.tensor([ids], device=device)  # (1, T)
    x = model.drop(model.wte(idx) + model.wpe(torch.arange(T, device=device)))  # (1, T, C), as GPT._trunk
    streams = [x[0]]
    for block in model.h:
        x = block(x, None)  # (1, T, C)
        streams.append(x[0])
    return streams


def read_through_head(model: GPT, stream: torch.Tensor) -> torch.Tensor:
    """One layer's stream (T, n_embd) read as the model reads its last: final LayerNorm, LM head -> (T, vocab) fp32."""
    logits: torch.Tensor = model.lm_head(model.ln_f(stream))
    return logits.float()


@torch.inference_mode()
def lens_ids(model: GPT, ids: list[int], *, top: int, target: int | None = None) -> LensIds:
    """Every layer's top `top` guesses for the token after each of `ids`, and the ranks described in LensIds."""
    T = len(ids)
    if not 0 < T <= model.config.block_size:
        raise ValueError(f"the logit lens needs 1 to {model.config.block_size} tokens, but got {T}")
    vocab = model.config.vocab_size
    if not 0 < top <= vocab or (target is not None and not 0 <= target < vocab):
        raise ValueError(f"top has to be in [1, {vocab}] and target in [0, {vocab}), but are {top} and {target}")
    streams = residual_streams(model, ids)
    output = read_through_head(model, streams[-1])  # (T, vocab): the model's own logits
    final = output.argmax(-1)  # (T,) the model's own top guess at each position
    targets = None if target is None else torch.full((T,), target, device=final.device)
    top_ids, top_probs, final_ranks, target_ranks, target_probs = [], [], [], [], []
    for row, stream in enumerate(streams):  # a row at a time: gpt2-xl's 49 x T x 50257 logits would be 630 MB
        logits = output if row == len(streams) - 1 else read_through_head(model, stream)  # (T, vocab)
        probs = logits.softmax(-1)
        best = torch.topk(probs, top, dim=-1)
        top_ids.append(best.indices)
        top_probs.append(best.values)
        final_ranks.append(ranks_of(logits, final))
        if targets is not None:
            target_ranks.append(ranks_of(logits, targets))
            target_probs.append(probs[:, target])
    return LensIds(torch.stack(top_ids).cpu(), torch.stack(top_probs).cpu(), torch.stack(final_ranks).cpu(),
                   torch.stack(target_ranks).cpu() if target_ranks else None,
                   torch.stack(target_probs).cpu() if target_probs else None)


def committed_rows(final_ranks: torch.Tensor) -> list[int]:
    """For each position, the first row from which the last row's top guess stays the top guess up to the end:
    final_ranks (rows, T) -> T row indices (the last row when it becomes the top guess only there)."""
    rows = final_ranks.size(0)
    on_top = final_ranks == 1  # (rows, T); the last row is on top by definition
    # a row counts only if every row after it is on top too: a cumulative "and" from the last row upwards
    stays = on_top.flip(0).int().cumprod(0).flip(0).bool()  # (rows, T)
    return [rows - int(stays[:, t].sum()) for t in range(final_ranks.size(1))]


@dataclass(frozen=True)
class LensCell:
    """What one layer says at one position: its guesses for the next token."""

    top: list[tuple[str, int, float]]  # the likeliest next tokens: (token text, token id, probability), likeliest first
    final_rank: int  # the rank here of the model's final top guess at this position (1: it is already on top)
    target_rank: int | None = None  # the chosen token's rank (1 = likeliest), when one was chosen
    target_prob: float | None = None


@dataclass(frozen=True)
class LogitLens:
    """A text read through the logit lens: rows are the embeddings and each layer, columns the text's tokens."""

    tokens: list[str]  # the text's tokens (they join to the text); column t guesses the token after tokens[t]
    token_ids: list[int]
    layers: list[str]  # the rows' names: "embeddings", "layer 1", ..., "layer N" (the model's own output)
    cells: list[list[LensCell]]  # cells[row][t]
    committed: list[int]  # per position: the first row from which its final top guess stayed on top
    target: str | None = None  # the chosen token's text, if one was chosen
    target_id: int | None = None
    vocab_size: int | None = None  # the most a rank can be (None: not told)

    def final_guesses(self) -> list[tuple[str, int, float]]:
        """The model's own top guess at each position (the last row's)."""
        return [cell.top[0] for cell in self.cells[-1]]


def logit_lens_view(tokens: list[str], ids: list[int], found: LensIds, *, token_text: Callable[[int], str],
                    target: str | None = None, target_id: int | None = None,
                    vocab_size: int | None = None) -> LogitLens:
    """Put LensIds together with the tokens' texts."""
    texts: dict[int, str] = {}

    def text_of(token: int) -> str:
        if token not in texts:
            texts[token] = token_text(token)
        return texts[token]

    cells = []
    for row in range(found.top_ids.size(0)):
        cells.append([
            LensCell([(text_of(int(i)), int(i), float(p)) for i, p in zip(found.top_ids[row, t].tolist(),
                                                                            found.top_probs[row, t].tolist())],
                     int(found.final_ranks[row, t]),
                     None if found.target_ranks is None else int(found.target_ranks[row, t]),
                     None if found.target_probs is None else float(found.target_probs[row, t]))
            for t in range(len(ids))])
    layers = ["embeddings"] + [f"layer {n}" for n in range(1, len(cells))]
    return LogitLens(tokens, list(ids), layers, cells, committed_rows(found.final_ranks), target, target_id,
                     vocab_size)

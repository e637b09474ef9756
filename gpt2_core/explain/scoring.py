"""How likely the model found each token of a text: its probability, its rank and the alternatives (as GLTR shows).

Every token is conditioned on all the tokens before it, the first one on <|endoftext|> (the start of a document for
GPT-2). A text longer than the context is scored in overlapping windows of the context's length: the first window
scores its tokens with all the context they have; each later window moves on by half a context and scores only its
new tokens, so that each of them still sees at least half a context (512 tokens for GPT-2) of the text before it.
No window is longer than the position table.

References: Gehrmann, Strobelt, Rush 2019, "GLTR: Statistical Detection and Visualization of Generated Text";
the sliding-window perplexity of Hugging Face's "Perplexity of fixed-length models" guide.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from gpt2_core.generate.detokenize import PieceDecoder
from gpt2_core.generate.sampling import ranks_of
from gpt2_core.model import GPT


@dataclass(frozen=True)
class TokenScore:
    """One token of a scored text."""

    text: str  # the token's characters ("" for a token that ends inside a character; the next one carries it)
    start: int  # character offsets into the text: text[start:end] == self.text
    end: int
    token_id: int
    prob: float  # the model's probability of this token given everything before it
    rank: int  # 1 = the model's likeliest token at this position
    alternatives: list[tuple[str, int, float]]  # the likeliest tokens here: (token text, token id, probability)


@dataclass(frozen=True)
class ScoredIds:
    logprobs: torch.Tensor  # (n,) log-probability of each token
    ranks: torch.Tensor  # (n,) 1-based rank of each token among the vocabulary
    top_ids: torch.Tensor  # (n, top) the likeliest tokens at each position
    top_logprobs: torch.Tensor  # (n, top)


def scoring_windows(n: int, context: int) -> Iterator[tuple[int, int, int]]:
    """The windows that score `n` tokens in a context of `context` (module docstring), in order: (start, first, last)
    each, for seq = <|endoftext|> + the tokens; the model reads seq[start:last] and scores seq[first..last]."""
    stride = max(1, context // 2)
    first = 1  # the next position of seq to score
    while first <= n:
        last = min(n, context - 1 if first == 1 else first + stride - 1)
        yield max(0, last + 1 - context), first, last
        first = last + 1


def scoring_tokens(n: int, context: int) -> int:
    """How many tokens the model reads to score `n` tokens: its windows' lengths (about twice `n` once `n` passes the context)."""
    return sum(last - start for start, _, last in scoring_windows(n, context))


@torch.inference_mode()
def score_ids(model: GPT, ids: list[int], *, bos: int, top: int) -> ScoredIds:
    """Probability, rank and top alternatives of every token of `ids`, in windows of the context (module docstring)."""
    device = model.wpe.weight.device
    seq = torch.tensor([bos, *ids], device=device)  # position 0 conditions the first token
    chosen, ranks, top_ids, top_logprobs = [], [], [], []
    for start, first, last in scoring_windows(len(ids), model.config.block_size):
        window = seq[None, start:last]  # the tokens that predict seq[first..last]
        logits = model(window, first=first - 1 - start)[0].float()  # (new, vocab)
        targets = seq[first : last + 1]
        logprobs = logits.log_softmax(-1)
        chosen.append(logprobs.gather(-1, targets[:, None])[:, 0])
        ranks.append(ranks_of(logits, targets))
        best = torch.topk(logprobs, top, dim=-1)
        top_ids.append(best.indices)
        top_logprobs.append(best.values)
    if not chosen:
        empty = torch.empty(0)
        return ScoredIds(empty, empty.long(), empty.long().reshape(0, top), empty.reshape(0, top))
    return ScoredIds(torch.cat(chosen).cpu(), torch.cat(ranks).cpu(), torch.cat(top_ids).cpu(),
                     torch.cat(top_logprobs).cpu())


def token_scores(text: str, ids: list[int], scored: ScoredIds, *, table: list[bytes],
                 token_text: Callable[[int], str]) -> list[TokenScore]:
    """Put the scores of `ids` (the tokens of `text`) together with each token's piece of `text` and its offsets."""
    decoder = PieceDecoder(table)
    out, offset = [], 0
    for i, token in enumerate(ids):
        piece = decoder.add(token)
        alternatives = [(token_text(int(a)), int(a), math.exp(lp))
                        for a, lp in zip(scored.top_ids[i].tolist(), scored.top_logprobs[i].tolist())]
        out.append(TokenScore(piece, offset, offset + len(piece), token, math.exp(scored.logprobs[i]), int(scored.ranks[i]),
                              alternatives))
        offset += len(piece)
    if offset != len(text) or "".join(s.text for s in out) != text:  # a tokenizer that rewrites text (normalizes it)
        raise ValueError("this tokenizer does not split text into byte-exact tokens, so its tokens cannot be shown")
    return out

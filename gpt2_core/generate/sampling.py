"""Turning next-token logits into a token: repetition penalty, temperature, top-k, top-p, then a draw.

Each step is a small pure function on logits of shape (..., vocab): it returns a new tensor and never edits its input.
`logits_to_probs` chains them for a batch, each row with its own settings, and `draw` draws from the result.
Randomness comes only from the `torch.Generator` passed in (one per sample), never from the global RNG.

References: Holtzman et al. 2019 "The Curious Case of Neural Text Degeneration" (top-p / nucleus sampling);
Fan et al. 2018 (top-k); Keskar et al. 2019 "CTRL" (repetition penalty).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch

from gpt2_core.generate.settings import SamplingParams


def apply_repetition_penalty(logits: torch.Tensor, previous_ids: torch.Tensor, penalty: float) -> torch.Tensor:
    """Make tokens that already occurred less likely: positive logits divided by `penalty`, negative ones multiplied."""
    if penalty == 1.0 or previous_ids.numel() == 0:
        return logits
    seen = logits.gather(-1, previous_ids)
    seen = torch.where(seen > 0, seen / penalty, seen * penalty)
    largest = torch.finfo(seen.dtype).max  # a penalty near 0 would make a seen token's logit inf (and softmax nan)
    return logits.scatter(-1, previous_ids, seen.clamp(-largest, largest))


def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Divide by the temperature: < 1 sharpens the distribution, > 1 flattens it. (0 means greedy: see sample_token.)

    The largest logit is subtracted first (softmax does not change), so that a temperature near 0 sends the others to
    -inf, not the largest to inf: 1e-38 samples as greedy does instead of giving NaN probabilities. (A temperature
    below the dtype's smallest normal number counts as that number; in float32 it would be 0, and 0 / 0 NaN.)"""
    assert temperature > 0, "temperature 0 is greedy decoding and never reaches apply_temperature"
    return (logits - logits.amax(-1, keepdim=True)) / max(temperature, torch.finfo(logits.dtype).tiny)


def apply_top_k(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k largest logits, set the rest to -inf. k = 0 (or k >= vocab) keeps everything."""
    if k == 0 or k >= logits.size(-1):
        return logits
    kth_largest = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth_largest, float("-inf"))


def apply_top_p(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Keep the smallest set of most likely tokens whose probabilities add up to at least p (the nucleus); p = 1 keeps all."""
    if p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
    cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
    remove_sorted = cumulative - sorted_logits.softmax(dim=-1) >= p  # mass before this token already reaches p
    remove_sorted[..., 0] = False  # the likeliest token always stays (a p below float32's smallest would cut it)
    remove = remove_sorted.scatter(-1, order, remove_sorted)
    return logits.masked_fill(remove, float("-inf"))


class Distribution(NamedTuple):
    """What a draw is made from: probabilities over candidate tokens."""

    probs: torch.Tensor  # (n,), on the CPU
    ids: torch.Tensor | None  # (n,) the candidates' token ids; None: the whole vocabulary, in order
    # (n,) the candidates' own logits, where they are the model's likeliest (a top-k of its unpenalized logits): every
    # token the model scores higher than a candidate is then a candidate too, so a drawn token's rank counts here
    logits: torch.Tensor | None = None

    def over_vocabulary(self, vocab_size: int) -> torch.Tensor:
        """The same distribution as a (vocab,) tensor: 0 where the settings cut a token."""
        if self.ids is None:
            return self.probs
        return torch.zeros(vocab_size, dtype=self.probs.dtype).scatter(-1, self.ids, self.probs)

    def probs_of(self, tokens: torch.Tensor) -> list[float]:
        """The probability of drawing each of `tokens` (0 for a token the settings cut)."""
        if self.ids is None:
            return self.probs[tokens].tolist()
        drawn = dict(zip(self.ids.tolist(), self.probs.tolist()))
        return [drawn.get(t, 0.0) for t in tokens.tolist()]


def logits_to_probs(logits: torch.Tensor, params: Sequence[SamplingParams],
                    histories: Sequence[torch.Tensor | None] | None = None) -> list[Distribution]:
    """The distribution each row of `logits` (B, vocab) is drawn from under its settings: the one place the settings
    shape it. Sampling draws from it, the explanations show it, and remote mode works it out of a server's reported
    log-probabilities with it.

    Repetition penalty (over the row's `histories`, prompt and generated ids), then greedy = the likeliest token with
    probability 1, or temperature, top-k, top-p and softmax. With top-k on, the candidates are the top-k, sorted:
    the same distribution as masking the whole vocabulary, at a fraction of the cost. Rows that narrow without a
    penalty share one top-k over the batch, where the logits are (the GPU, too); only (B, k) values reach the CPU.
    """
    vocab = logits.size(-1)
    histories = histories or [None] * len(params)
    out: list[Distribution | None] = [None] * len(params)
    narrowed = [b for b, p in enumerate(params) if p.repetition_penalty == 1.0 and (p.greedy or 0 < p.top_k < vocab)]
    if narrowed:
        k = max(1 if params[b].greedy else params[b].top_k for b in narrowed)
        rows = logits if len(narrowed) == len(params) else logits[narrowed]
        values, ids = (t.cpu() for t in torch.topk(rows, k))  # (N, k) each, sorted
        alike: dict[tuple[float, int, float], list[int]] = {}  # rows with the same settings, shaped in one call
        for n, b in enumerate(narrowed):
            p = params[b]
            if p.greedy:
                out[b] = Distribution(torch.ones(1), ids[n, :1], values[n, :1])
            else:
                alike.setdefault((p.temperature, p.top_k, p.top_p), []).append(n)
        for (_, top_k, _), members in alike.items():  # (each row's numbers as alone: the ops work row by row)
            shaped = _shaped(values[members, :top_k], params[narrowed[members[0]]])
            for n, probs in zip(members, shaped):
                out[narrowed[n]] = Distribution(probs, ids[n, :top_k], values[n, :top_k])
    distributions = []
    for b, p in enumerate(params):
        found = out[b]
        if found is None:
            found = _distribution(logits[b].cpu(), p, histories[b], vocab)
        distributions.append(found)
    return distributions


def _distribution(row: torch.Tensor, p: SamplingParams, history: torch.Tensor | None, vocab: int) -> Distribution:
    """logits_to_probs for one row (vocab,) that the batch's shared top-k did not cover."""
    if history is not None:
        row = apply_repetition_penalty(row, history, p.repetition_penalty)
    if p.greedy:
        return Distribution(torch.ones(1), torch.argmax(row).reshape(1))
    if 0 < p.top_k < vocab:
        values, ids = torch.topk(row, p.top_k)
        return Distribution(_shaped(values, p), ids)
    return Distribution(_shaped(row, p), None)


def _shaped(candidates: torch.Tensor, params: SamplingParams) -> torch.Tensor:
    """Temperature, then top-p, then softmax, over candidate logits (the top-k, or the whole vocabulary)."""
    return apply_top_p(apply_temperature(candidates, params.temperature), params.top_p).softmax(-1)


class Draw(NamedTuple):
    token: int
    prob: float  # the model's own probability of the token
    distribution: Distribution  # what it was drawn from
    rank: int  # 1 + how many tokens the model scored strictly higher (ranks_of)


def draw(logits: torch.Tensor, params: Sequence[SamplingParams], generators: Sequence[torch.Generator],
         histories: Sequence[torch.Tensor | None] | None = None) -> list[Draw]:
    """Choose the next token of every row of `logits` (B, vocab), each with its own settings and generator.

    The reported probability is the model's own softmax(logits), before temperature and filtering, so it says how
    likely the model found the token, whatever the sliders did; so does the rank. A token drawn from the model's
    top-k is ranked among its k candidates' logits (the same count as over the vocabulary: every token scored higher
    is among them), others over the vocabulary (an 8-row step's ranks took 0.4 ms that way, of a 15 ms step).
    """
    distributions = logits_to_probs(logits, params, histories)
    choices = [0 if p.greedy else int(torch.multinomial(d.probs, 1, generator=g))
               for d, p, g in zip(distributions, params, generators, strict=True)]
    tokens = [c if d.ids is None else int(d.ids[c]) for c, d in zip(choices, distributions)]
    chosen = logits.gather(-1, torch.tensor(tokens, device=logits.device)[:, None])[:, 0]
    probs = (chosen - torch.logsumexp(logits, dim=-1)).exp().tolist()
    ranks = [0 if d.logits is None else 1 + int((d.logits > d.logits[c]).sum()) for c, d in zip(choices, distributions)]
    if unranked := [b for b, rank in enumerate(ranks) if rank == 0]:
        counted = ranks_of(logits[unranked], torch.tensor([tokens[b] for b in unranked], device=logits.device))
        for b, rank in zip(unranked, counted.tolist()):
            ranks[b] = rank
    return [Draw(*drawn) for drawn in zip(tokens, probs, distributions, ranks)]


def sample_token(logits: torch.Tensor, params: SamplingParams, generator: torch.Generator,
                 previous_ids: torch.Tensor | None = None) -> tuple[int, float]:
    """`draw` for one sequence's logits (vocab,): (token id, the model's probability of it)."""
    drawn = draw(logits[None], [params], [generator], [previous_ids])[0]
    return drawn.token, drawn.prob


def ranks_of(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """1 + how many tokens the model scored strictly higher than `tokens`: logits (N, vocab), tokens (N,) -> (N,)."""
    chosen = logits.gather(-1, tokens[:, None])  # (N, 1)
    return (logits > chosen).sum(-1) + 1

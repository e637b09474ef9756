"""Turning next-token logits into a token: repetition penalty, temperature, top-k, top-p, then a draw.

Each step is a small pure function on logits of shape (..., vocab): it returns a new tensor and never edits its input.
`candidate_distribution` chains them for one sequence and `sample_token` draws from it. It first narrows the
vocabulary to the top-k candidates (when top-k is on), which gives the same distribution as masking the whole
vocabulary, at a fraction of the cost.
Randomness comes only from the `torch.Generator` passed in (one per sample), never from the global RNG.

References: Holtzman et al. 2019 "The Curious Case of Neural Text Degeneration" (top-p / nucleus sampling);
Fan et al. 2018 (top-k); Keskar et al. 2019 "CTRL" (repetition penalty).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch


def apply_repetition_penalty(logits: torch.Tensor, previous_ids: torch.Tensor, penalty: float) -> torch.Tensor:
    """Make tokens that already occurred less likely: positive logits divided by `penalty`, negative ones multiplied."""
    if penalty == 1.0 or previous_ids.numel() == 0:
        return logits
    seen = logits.gather(-1, previous_ids)
    seen = torch.where(seen > 0, seen / penalty, seen * penalty)
    return logits.scatter(-1, previous_ids, seen)


def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Divide by the temperature: < 1 sharpens the distribution, > 1 flattens it. (0 means greedy: see sample_token.)"""
    assert temperature > 0, "temperature 0 is greedy decoding and never reaches apply_temperature"
    return logits / temperature


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
    remove = remove_sorted.scatter(-1, order, remove_sorted)
    return logits.masked_fill(remove, float("-inf"))


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 1.0  # 0 = greedy
    top_k: int = 0  # 0 = off
    top_p: float = 1.0  # 1.0 = off
    repetition_penalty: float = 1.0  # 1.0 = off


def candidate_distribution(logits: torch.Tensor, params: SamplingParams,
                           previous_ids: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The distribution a draw is made from, for one sequence's logits (vocab,): (probabilities, their token ids).

    Ids are None when the candidates are the whole vocabulary in order. Greedy (temperature 0) is one candidate with
    probability 1. With top-k on, the candidates are the top-k, sorted: the same distribution as masking the whole
    vocabulary, at a fraction of the cost. This is the one place the settings shape the distribution: sampling draws
    from it, and the explanations (explain/distribution.py) show it.
    """
    if previous_ids is not None:
        logits = apply_repetition_penalty(logits, previous_ids, params.repetition_penalty)
    if params.temperature == 0:
        return torch.ones(1), torch.argmax(logits).reshape(1)
    candidates, ids = logits, None
    if 0 < params.top_k < logits.size(-1):
        candidates, ids = torch.topk(logits, params.top_k)  # narrow to the top-k, sorted (same distribution)
    return narrowed_probs(candidates, params), ids


def narrowed_probs(candidates: torch.Tensor, params: SamplingParams) -> torch.Tensor:
    """Temperature, then top-p, then softmax, over candidate logits (the top-k, or the whole vocabulary)."""
    return apply_top_p(apply_temperature(candidates, params.temperature), params.top_p).softmax(-1)


class Draw(NamedTuple):
    token: int
    prob: float  # the model's own probability of the token
    distribution: tuple[torch.Tensor, torch.Tensor | None] | None  # what it was drawn from (candidate_distribution)


def draw_token(
    logits: torch.Tensor, params: SamplingParams, generator: torch.Generator, previous_ids: torch.Tensor | None = None
) -> Draw:
    """Choose the next token of one sequence from its logits (vocab,), and say what it was drawn from.

    The reported probability is the model's own softmax(logits), before temperature and filtering, so it says how
    likely the model found the token, whatever the sliders did.
    """
    probs, ids = candidate_distribution(logits, params, previous_ids)
    choice = 0 if params.temperature == 0 else int(torch.multinomial(probs, 1, generator=generator))
    token = choice if ids is None else int(ids[choice])
    prob = float(torch.exp(logits[token] - torch.logsumexp(logits, dim=-1)))
    return Draw(token, prob, (probs, ids))


def sample_token(
    logits: torch.Tensor, params: SamplingParams, generator: torch.Generator, previous_ids: torch.Tensor | None = None
) -> tuple[int, float]:
    """`draw_token`'s (token id, model probability of it)."""
    token, prob, _ = draw_token(logits, params, generator, previous_ids)
    return token, prob


def sample_rows(logits: torch.Tensor, params: list[SamplingParams], generators: list[torch.Generator],
                histories: list[torch.Tensor | None]) -> list[Draw]:
    """`draw_token` for every row of a batch's logits (B, vocab), on any device; the same draws, less work.

    The vocabulary-wide work runs once for the whole batch where the logits are (on the GPU, too): the normaliser
    of the reported probability and, when every row narrows to its top-k, the top-k itself. Only (B, k) values then
    travel to the CPU, where each row draws with its own generator.
    """
    vocab = logits.size(-1)  # top_k >= vocab means off, as in sample_token: such a row draws in vocabulary order
    narrowed = all(p.repetition_penalty == 1.0 and (0 < p.top_k < vocab or p.temperature == 0) for p in params)
    if not narrowed:  # a row needs the whole vocabulary: row by row
        logits = logits.cpu()
        return [draw_token(logits[b], p, g, h) for b, (p, g, h) in enumerate(zip(params, generators, histories))]
    k = min(max(max(p.top_k for p in params), 1), vocab)
    values, ids = torch.topk(logits, k)  # (B, k) each, sorted
    log_z = torch.logsumexp(logits, dim=-1)  # (B,)
    values, ids, log_z = values.cpu(), ids.cpu(), log_z.cpu()
    out = []
    for b, (p, g) in enumerate(zip(params, generators)):
        if p.temperature == 0:
            choice, distribution = 0, (torch.ones(1), ids[b, :1])
        else:
            distribution = (narrowed_probs(values[b, : p.top_k], p), ids[b, : p.top_k])
            choice = int(torch.multinomial(distribution[0], 1, generator=g))
        out.append(Draw(int(ids[b, choice]), float(torch.exp(values[b, choice] - log_z[b])), distribution))
    return out

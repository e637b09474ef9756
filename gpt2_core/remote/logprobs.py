"""Reading an OpenAI-compatible server's logprobs: token ids, and what the sampling settings make of the top tokens.

vLLM, asked for `logprobs: N` with `return_tokens_as_token_ids`, reports each token as "token_id:123" with the N
likeliest tokens at its place (raw log-probabilities, before any setting), plus the chosen token where it is not
among them. The rest of the vocabulary is not reported, so some figures can be worked out exactly and some cannot:

- a token's rank is known when it is among the N (its place in them); otherwise it is only known to be beyond N;
- the probability that sampling with the settings draws a token (the "after your settings" column) is known when the
  settings keep only tokens among the N: greedy, top-k <= N, or top-p whose nucleus ends within the N at temperature 1.
  Otherwise it needs the whole vocabulary and is reported as None ("not known"), never guessed.
"""

from __future__ import annotations

import math

import torch

from gpt2_core.generate.sampling import logits_to_probs
from gpt2_core.generate.settings import SamplingParams

TOKEN_ID_PREFIX = "token_id:"


def token_id(token: str, encode) -> int:
    """The id behind a reported token: "token_id:123" (vLLM's return_tokens_as_token_ids), else the text's one token."""
    if token.startswith(TOKEN_ID_PREFIX):
        return int(token[len(TOKEN_ID_PREFIX):])
    ids = encode(token)
    if len(ids) != 1:
        raise ValueError(f"the server reported the token {token!r}, which is not one token of this tokenizer: "
                         "use a server that returns token ids (vLLM: return_tokens_as_token_ids)")
    return ids[0]


def top_tokens(top_logprobs: dict[str, float], encode) -> list[tuple[int, float]]:
    """A step's reported tokens as (id, log-probability), likeliest first."""
    pairs = [(token_id(t, encode), lp) for t, lp in top_logprobs.items()]
    return sorted(pairs, key=lambda pair: -pair[1])


def rank_in(top: list[tuple[int, float]], token: int, reported: int) -> int | None:
    """`token`'s rank (1 = likeliest) when it is among the `reported` likeliest, else None (beyond them)."""
    for rank, (i, _) in enumerate(top[:reported], 1):
        if i == token:
            return rank
    return None


def sampling_probs(top: list[tuple[int, float]], params: SamplingParams, *, reported: int) -> list[float | None]:
    """For each of `top` (likeliest first): the probability that sampling with `params` draws it, where the reported
    tokens decide it (module docstring); else None for every token. Worked out by the sampler's own logits_to_probs.

    A logit and its log-probability differ by one constant, which temperature, top-k, top-p and softmax do not see,
    so the reported log-probabilities stand in for the logits. At temperature 1 with top-k off, the unreported rest
    of the vocabulary joins as tokens that share its probability, each less likely than every reported token (as the
    true unreported ones are): softmax then gives every reported token its true probability, and top-p keeps what it
    would keep of the whole vocabulary as long as the nucleus ends among the reported tokens.
    """
    top = top[:reported]
    if not top or params.repetition_penalty != 1.0:
        # the penalty depends on each logit's sign, which log-probabilities do not keep
        return [None] * len(top)
    logprobs = torch.tensor([lp for _, lp in top], dtype=torch.float64)
    with_rest = not params.greedy and not 0 < params.top_k <= len(top)
    if with_rest:
        if params.temperature != 1.0 or params.top_k != 0:
            return [None] * len(top)  # needs the whole vocabulary (its normaliser at this temperature, its top-k)
        rest = 1.0 - float(logprobs.exp().sum())
        if rest > 0:
            pieces = math.floor(rest / math.exp(float(logprobs[-1]))) + 1  # each below the least likely reported
            logprobs = torch.cat([logprobs, torch.full((pieces,), math.log(rest / pieces), dtype=torch.float64)])
    probs = logits_to_probs(logprobs[None], [params])[0].over_vocabulary(len(logprobs))
    if with_rest and params.top_p < 1.0 and bool((probs[len(top):] > 0).any()):
        return [None] * len(top)  # the nucleus goes on past the reported tokens
    return probs[: len(top)].tolist()


def probability(logprob: float | None) -> float:
    return 0.0 if logprob is None else math.exp(logprob)

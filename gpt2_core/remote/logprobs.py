"""Reading an OpenAI-compatible server's logprobs: token ids, and what the sampling settings make of the top tokens.

vLLM, asked for `logprobs: N` with `return_tokens_as_token_ids`, reports each token as "token_id:123" with the N
likeliest tokens at its place (raw log-probabilities, before any setting), plus the chosen token where it is not
among them. The rest of the vocabulary is not reported, so some figures can be worked out exactly and some cannot:

- a token's rank is known when it is among the N (its place in them); otherwise it is only known to be beyond N;
- the probability that sampling with the settings draws a token (the "after your settings" column) is known when the
  settings keep only tokens among the N: greedy, top-k <= N, or top-p whose nucleus ends within the N at temperature 1.
  Otherwise it needs the whole vocabulary and is reported as None ("not known"), never guessed
  (explain/distribution.py's reported_sampling_probs works it out).
"""

from __future__ import annotations

import math
from collections.abc import Callable

Encode = Callable[[str], list[int]]  # a tokenizer's encode: text -> ids

TOKEN_ID_PREFIX = "token_id:"


def token_id(token: str, encode: Encode) -> int:
    """The id behind a reported token: "token_id:123" (vLLM's return_tokens_as_token_ids), else the text's one token."""
    if token.startswith(TOKEN_ID_PREFIX):
        return int(token[len(TOKEN_ID_PREFIX):])
    ids = encode(token)
    if len(ids) != 1:
        raise ValueError(f"the server reported the token {token!r}, which is not one token of this tokenizer: "
                         "use a server that returns token ids (vLLM: return_tokens_as_token_ids)")
    return ids[0]


def top_tokens(top_logprobs: dict[str, float], encode: Encode) -> list[tuple[int, float]]:
    """A step's reported tokens as (id, log-probability), likeliest first."""
    pairs = [(token_id(t, encode), lp) for t, lp in top_logprobs.items()]
    return sorted(pairs, key=lambda pair: -pair[1])


def rank_in(top: list[tuple[int, float]], token: int, reported: int) -> int | None:
    """`token`'s rank (1 = likeliest) when it is among the `reported` likeliest, else None (beyond them)."""
    for rank, (i, _) in enumerate(top[:reported], 1):
        if i == token:
            return rank
    return None


def probability(logprob: float | None) -> float:
    return 0.0 if logprob is None else math.exp(logprob)

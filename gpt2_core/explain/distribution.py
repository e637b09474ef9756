"""The next token's distribution, as the model gives it and as the sampling settings reshape it.

A `Candidate` is a likely next token with two probabilities: the model's own softmax, and the probability that
sampling with the given settings draws the token. The second comes from `logits_to_probs`, the very function the
sampler draws from (generate/sampling.py), so what the page shows is what Generate does: over the whole vocabulary
where the model runs here, or from the tokens a server reports (`reported_sampling_probs`) where they decide it.

`NextTokensCache` keeps the next-token candidates of recent prompts, so that moving a slider recomputes the picture from
them without running the model again (as Transformer Explainer does in the browser).
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from gpt2_core.generate.sampling import logits_to_probs
from gpt2_core.generate.settings import SamplingParams

if TYPE_CHECKING:
    from gpt2_core.backend import NextTokens


@dataclass(frozen=True)
class Candidate:
    """One possible next token."""

    token_text: str  # the token's text (a token that is only part of a character is shown as its bytes)
    token_id: int
    prob: float  # the model's probability: softmax of its logits, before any setting
    sampling_prob: float | None  # the probability that sampling with the settings draws it (0 = cut by the
    # settings; None = not known, where a server's reported tokens do not decide it)


def reported_sampling_probs(top: list[tuple[int, float]], params: SamplingParams) -> list[float | None]:
    """For each of `top`, a server's reported likeliest tokens as (id, log-probability), likeliest first: the
    probability that sampling with `params` draws it, where these tokens decide it, else None for every token.
    They decide it for greedy, a top-k within them, and top-p at temperature 1 whose nucleus ends among them.

    A logit and its log-probability differ by one constant, which temperature, top-k, top-p and softmax do not see,
    so the reported log-probabilities stand in for the logits. At temperature 1 with top-k off, the unreported rest
    of the vocabulary joins as tokens that share its probability, each less likely than every reported token (as the
    true unreported ones are): softmax then gives every reported token its true probability, and top-p keeps what it
    would keep of the whole vocabulary as long as the nucleus ends among the reported tokens.
    """
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
            # each piece below the least likely reported token; without top-p, where no order matters, one piece
            pieces = math.floor(rest / math.exp(float(logprobs[-1]))) + 1 if params.top_p < 1.0 else 1
            logprobs = torch.cat([logprobs, torch.full((pieces,), math.log(rest / pieces), dtype=torch.float64)])
    probs = logits_to_probs(logprobs[None], [params])[0].over_vocabulary(len(logprobs))
    if with_rest and params.top_p < 1.0 and bool((probs[len(top):] > 0).any()):
        return [None] * len(top)  # the nucleus goes on past the reported tokens
    return probs[: len(top)].tolist()


class NextTokensCache:
    """The next-token candidates (a backend's NextTokens) of the most recent prompts (token ids), least recently used
    first out; thread-safe."""

    def __init__(self, compute: Callable[[list[int]], NextTokens], max_entries: int = 32):
        self._compute = compute  # ids -> NextTokens
        self._entries: OrderedDict[tuple[int, ...], NextTokens] = OrderedDict()
        self._lock = threading.Lock()
        self.max_entries = max_entries

    def get(self, ids: list[int]) -> NextTokens:
        key = tuple(ids)
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
        found = self._compute(ids)  # outside the lock: another prompt need not wait for this one
        with self._lock:
            self._entries[key] = found
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return found

"""The next token's distribution, as the model gives it and as the sampling settings reshape it.

`candidates` lists the likeliest next tokens with two probabilities: the model's own softmax, and the probability that
sampling with the given settings draws the token. The second comes from `logits_to_probs`, the very function the
sampler draws from (generate/sampling.py), so what the page shows is what Generate does.

`LogitsCache` keeps the last logits of recent prompts, so that moving a slider recomputes the picture from them without
running the model again (as Transformer Explainer does in the browser).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import torch

from gpt2_core.generate.sampling import logits_to_probs
from gpt2_core.generate.settings import SamplingParams


@dataclass(frozen=True)
class Candidate:
    """One possible next token."""

    token_text: str  # the token's text (a token that is only part of a character is shown as its bytes)
    token_id: int
    prob: float  # the model's probability: softmax of its logits, before any setting
    sampling_prob: float  # the probability that sampling with the settings draws it (0 = cut by the settings)


def candidates(logits: torch.Tensor, params: SamplingParams, *, k: int, token_text: Callable[[int], str],
               previous_ids: torch.Tensor | None = None) -> list[Candidate]:
    """The k tokens the model finds likeliest after these logits (vocab,), likeliest first, with both probabilities."""
    logits = logits.float().cpu()
    raw = logits.softmax(-1)
    after = logits_to_probs(logits[None], [params], [previous_ids])[0].over_vocabulary(logits.size(-1))
    top = torch.topk(raw, k)
    return [Candidate(token_text(int(i)), int(i), float(p), float(after[i])) for p, i in zip(top.values, top.indices)]


class LogitsCache:
    """Next-token logits of the most recent prompts (token ids), least recently used first out; thread-safe."""

    def __init__(self, compute: Callable[[list[int]], torch.Tensor], max_entries: int = 32):
        self._compute = compute  # ids -> logits (vocab,) on the CPU
        self._entries: OrderedDict[tuple[int, ...], torch.Tensor] = OrderedDict()
        self._lock = threading.Lock()
        self.max_entries = max_entries

    def get(self, ids: list[int]) -> torch.Tensor:
        key = tuple(ids)
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
        logits = self._compute(ids)  # outside the lock: another prompt need not wait for this one
        with self._lock:
            self._entries[key] = logits
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return logits

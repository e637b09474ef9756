"""What the app's tabs ask of a GPT-2, wherever it runs: the `Backend` protocol and the `ModelDescription` it gives.

Two backends implement it: `LanguageModel` (gpt2_core/lm.py), the model running in this process, and `RemoteModel`
(gpt2_core/remote), a client of an OpenAI-compatible completions server such as vLLM. What a backend cannot do is
named in `ModelDescription.unavailable` with the reason, and calling it raises FeatureUnavailableError with that
reason: the page shows it instead of a result, never a made-up one.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from gpt2_core.explain.attention import Attention
    from gpt2_core.explain.distribution import Candidate
    from gpt2_core.explain.scoring import TokenScore
    from gpt2_core.lm import PreparedPrompt, Sample

ATTENTION, TRAINING, SCALE = "attention", "training", "scale"  # features a backend may lack (ModelDescription)


class FeatureUnavailableError(ValueError):
    """This backend cannot do what was asked (attention maps from a remote server, say); the message says why."""


@dataclass(frozen=True)
class ModelDescription:
    """What the page's model panel shows, read from the backend (None: the backend does not know)."""

    name: str
    where: str  # "cpu", "cuda:0", or the server's address
    precision: str | None  # "fp32", "int8", ...; None when the server does not say
    parameters: int | None
    memory_bytes: int | None
    context: int | None  # tokens seen at once (None: a server not yet asked)
    max_alternatives: int  # likeliest tokens reported beside each token (a server's logprobs limit)
    remote: bool = False
    unavailable: dict[str, str] = field(default_factory=dict)  # feature -> why this backend cannot do it
    problem: str | None = None  # a remote model's last failure to reach its server (None: the last call worked)


class Backend(Protocol):
    """The calls the tabs make (see LanguageModel for each one's contract)."""

    name: str
    context_length: int
    eos_token_id: int

    def describe(self) -> ModelDescription: ...

    def prepare_prompt(self, prompt: str, *, room: int) -> PreparedPrompt: ...

    def token_pieces(self, ids: list[int]) -> list[str]: ...

    def stream(self, prompt: str = "", **settings) -> Iterator[list[Sample]]: ...

    def generate(self, prompt: str = "", **settings) -> list[Sample]: ...

    def next_token_distribution(self, prompt: str, **settings) -> list[Candidate]: ...

    def next_token_probs(self, prompt: str, k: int = 10) -> list[tuple[str, int, float]]: ...

    def score_text(self, text: str, *, top: int = 5) -> list[TokenScore]: ...

    def sequence_logprob(self, text: str) -> float: ...

    def attention(self, text: str) -> Attention: ...

    def close(self) -> None: ...

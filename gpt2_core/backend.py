"""The seam between text and tokens: what a GPT-2 backend does, in token ids only.

A `TokenBackend` runs a model somewhere and speaks token ids (as vLLM's EngineClient and gpt-fast's `generate` do):
it streams generated tokens with their probabilities, scores a sequence, and gives the next token's likeliest
candidates. Two implement it: `LocalBackend` (gpt2_core/local.py), gpt2_core's own model and engine in this process,
and `ServerBackend` (gpt2_core/remote), a client of an OpenAI-compatible completions server such as vLLM.
`ZeroGpuBackend` (gpt2_core/zerogpu.py) runs a LocalBackend's model calls on a GPU lent one call at a time.

Above it, one text layer (`TextModel`, gpt2_core/lm.py) does everything about text for both: prompts, trimming,
detokenizing, stop strings, samples, scoring text, the next-token distribution.

What a backend cannot do is named in `ModelDescription.unavailable` with the reason, and calling it raises
FeatureUnavailableError with that reason: the page shows it instead of a result, never a made-up one. Where a
server does not report a figure (a token's rank beyond its top N), the types say `None`, never a guess.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, TypeAlias

if TYPE_CHECKING:
    import torch

    from gpt2_core.explain.lens import LensIds
    from gpt2_core.explain.scoring import ScoredIds
    from gpt2_core.generate.settings import SamplingParams

# features a backend may lack (ModelDescription)
ATTENTION, LENS, TRAINING, SCALE = "attention", "lens", "training", "scale"


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
    decoding: str | None = None  # "eager", "compiling" (eager until ready), "compiled", "cuda-graphs"; None: a server


@dataclass(frozen=True)
class TokenRequest:
    """A generation, in tokens: `params.num_samples` samples of one prompt, sample i seeded with seeds[i]."""

    prompt_ids: list[int]
    params: SamplingParams
    seeds: list[int]
    max_new_tokens: int
    deadline: float  # time.monotonic() after which the request ends with finish_reason "timeout"
    alternatives: int = 0  # report this many likeliest tokens at each step, beside the chosen one


@dataclass(frozen=True)
class TokenEvent:
    """One sample's step: its new token, or its end."""

    sample: int  # index of the sample within its request
    token: int | None  # the new token (None when the sample ended without one, e.g. cancelled)
    prob: float  # the model's probability of the token (0.0 without a token)
    finish_reason: str | None  # None while running; "length", "eos", "cancelled", "timeout"
    rank: int | None = 0  # 1 = the model's likeliest token (0 without a token; None: beyond what a server reports)
    # if asked: (id, probability, probability that sampling with the settings draws it; None where not known)
    alternatives: tuple[tuple[int, float, float | None], ...] = ()


# What a TokenStream's `events` yields: one step's TokenEvents, or the error that ended the request
StreamItem: TypeAlias = list[TokenEvent] | Exception


class StreamEvents(Protocol):
    """Where a generation's steps are read from: a queue that a thread fills (the local engine, a server's client), or
    a call on a lent GPU that runs on to its next step when read (gpt2_core/zerogpu.py)."""

    def get(self) -> StreamItem: ...


class TokenStream(Protocol):
    """A generation in flight. `events.get()` gives lists of TokenEvent (one list per step) or an Exception."""

    @property
    def events(self) -> StreamEvents: ...

    def cancel(self) -> None:
        """End every sample at once (Stop pressed, tab closed, caller gone)."""

    def stop_sample(self, index: int) -> None:
        """End one sample (its text reached a stop string)."""


@dataclass(frozen=True)
class NextTokens:
    """The next token's likeliest candidates after some ids."""

    top: list[tuple[int, float]]  # (token id, log-probability), likeliest first: as many as the backend reports
    logits: torch.Tensor | None = None  # the whole vocabulary's logits (vocab,), where the model runs here


class Tokenizer(Protocol):
    """What gpt2_core asks of a tokenizer: the calls of Hugging Face's GPT-2 tokenizer that it makes (a byte-level BPE;
    decode and convert_ids_to_tokens give a list only for a batch, which gpt2_core never passes)."""

    @property
    def eos_token_id(self) -> int | None: ...

    def encode(self, text: str) -> list[int]: ...

    def decode(self, token_ids: list[int], *, clean_up_tokenization_spaces: bool = ...) -> str | list[str]: ...

    def convert_ids_to_tokens(self, ids: list[int]) -> str | list[str]: ...

    def __len__(self) -> int: ...


class TokenBackend(Protocol):
    """A GPT-2 that takes and gives token ids (module docstring).

    The figures are read-only properties, so that a backend may keep them as attributes (LocalBackend) or work them
    out when asked (ServerBackend asks its server on first use); `name` is the one the page renames.
    """

    name: str

    @property
    def slides_window(self) -> bool:
        """Writes past its context, the oldest tokens leaving its view (the local engine)."""
        ...

    @property
    def max_alternatives(self) -> int:
        """Likeliest tokens it reports beside each generated or scored token."""
        ...

    @property
    def tokenizer(self) -> Tokenizer:
        """The tokenizer its ids belong to."""
        ...

    @property
    def context_length(self) -> int:
        """Tokens the model sees at once."""
        ...

    @property
    def eos_token_id(self) -> int:
        """<|endoftext|>: ends a text, and starts one (an empty prompt)."""
        ...

    @property
    def max_candidates(self) -> int:
        """Next-token candidates it reports (NextTokens.top)."""
        ...

    @property
    def max_scored_tokens(self) -> int:
        """The longest sequence prompt_logprobs scores."""
        ...

    def describe(self) -> ModelDescription: ...

    def submit(self, request: TokenRequest) -> TokenStream: ...

    def failure(self, error: Exception, request: TokenRequest) -> Exception:
        """The exception a caller gets for an error the backend reported for `request` (a fresh one per caller)."""
        ...

    def next_tokens(self, ids: list[int]) -> NextTokens: ...

    def prompt_logprobs(self, ids: list[int], *, top: int) -> ScoredIds:
        """Each of ids[1:] scored given the ids before it: log-probability, rank and the `top` likeliest there."""
        ...

    def attention(self, ids: list[int]) -> torch.Tensor:
        """Every layer's and head's attention over `ids`: (n_layer, n_head, T, T). Local only: a server raises
        FeatureUnavailableError."""
        ...

    def logit_lens(self, ids: list[int], *, top: int, target: int | None) -> LensIds:
        """Every layer's guesses for the token after each of `ids`, read through the final LayerNorm and the LM head
        (explain/lens.py). Local only: a server raises FeatureUnavailableError."""
        ...

    def close(self) -> None: ...


if TYPE_CHECKING:  # checked by mypy (pyproject.toml, CI): the backends and their streams satisfy the protocols above
    from gpt2_core.generate.engine import Request
    from gpt2_core.local import LocalBackend
    from gpt2_core.remote.model import RemoteRequest, ServerBackend
    from gpt2_core.zerogpu import LentStream, ZeroGpuBackend

    _BACKENDS: tuple[type[TokenBackend], ...] = (LocalBackend, ServerBackend, ZeroGpuBackend)
    _STREAMS: tuple[type[TokenStream], ...] = (Request, RemoteRequest, LentStream)

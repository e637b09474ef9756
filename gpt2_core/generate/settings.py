"""`SamplingParams`, the one settings object of a generation: its fields, defaults and ranges, validated once, here.

Everything that generates builds one and passes it whole: the Python API (`lm.stream(prompt, params)` or keywords), the
CLI, the page and its share links, Scale. The page's sliders take their ranges from `RANGES` (narrowed where a slider
shows less, demo/knobs.py), so a bad value gets the same message everywhere, before any tensor is made:
"`top_k` has to be an integer in [0, 50257], but is -5". (As vLLM's SamplingParams and transformers'
GenerationConfig.validate() do.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from numbers import Integral, Real
from typing import Any

CONTEXT_LENGTH = 1024  # GPT-2's position table
MAX_SEED = 2**63 - 1
RANDOM_SEEDS = 10**9  # a seed drawn at random is below this: short to read off a projector, exact in JavaScript
MAX_SAMPLES = 8
MAX_STOP_STRINGS = 4
MAX_STOP_CHARS = 200
MAX_PROMPT_CHARS = 20_000  # far more than 1024 tokens of any text; longer pastes keep their end (see TextModel)
VOCAB_SIZE = 50257
MAX_SHOWN_CHARS = 80  # of a bad value quoted back in an error message


@dataclass(frozen=True)
class Range:
    """The values a numeric setting takes: [low, high], or (low, high] with low_open; integers only if `integer`."""

    low: float
    high: float
    integer: bool = False
    low_open: bool = False

    def check(self, name: str, value: Any) -> int | float:
        if self.integer:
            return check_int(name, value, int(self.low), int(self.high))
        return check_float(name, value, self.low, self.high, low_open=self.low_open)


RANGES = {
    "temperature": Range(0.0, 2.0),  # 0 = greedy
    "top_k": Range(0, VOCAB_SIZE, integer=True),  # 0 (or the whole vocabulary) = off
    "top_p": Range(0.0, 1.0, low_open=True),  # 1 = off
    "repetition_penalty": Range(0.0, 10.0, low_open=True),  # 1 = off
    "max_new_tokens": Range(1, CONTEXT_LENGTH - 1, integer=True),
    "num_samples": Range(1, MAX_SAMPLES, integer=True),
}


@dataclass(frozen=True)
class SamplingParams:
    """How to sample: checked when made (ValueError naming the field and its range); frozen, so passed around whole."""

    temperature: float = 0.8  # 0 = greedy; OpenAI's GPT-2 samples used 0.7-1.0
    top_k: int = 40  # 0 = off; OpenAI's released samples used top-k 40
    top_p: float = 1.0  # 1.0 = off
    repetition_penalty: float = 1.0  # 1.0 = off
    max_new_tokens: int = 100  # tokens to generate after the prompt
    seed: int | None = None  # None or -1 = draw one below RANDOM_SEEDS (and report it)
    num_samples: int = 1  # independent samples of the same prompt, decoded as one batch
    stop: tuple[str, ...] = field(default_factory=tuple)  # literal strings that end a sample

    def __post_init__(self) -> None:
        # Normalise (integral floats from sliders become ints) while checking, so the stored values are clean.
        for name, allowed in RANGES.items():
            object.__setattr__(self, name, allowed.check(name, getattr(self, name)))
        object.__setattr__(self, "seed", check_seed(self.seed))
        object.__setattr__(self, "stop", check_stop(self.stop))

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def replace(self, **changes: Any) -> SamplingParams:
        """A copy with `changes`, checked as a new one is."""
        return replace(self, **changes)


GenerationSettings = SamplingParams  # the name earlier versions of gpt2_core exported


def check_int(name: str, value: Any, low: int, high: int) -> int:
    """An integer in [low, high]; integral floats (64.0, as sliders send) are accepted, 3.7 / True / '5' are not."""
    ok = isinstance(value, Integral) and not isinstance(value, bool)
    if isinstance(value, Real) and not isinstance(value, (bool, Integral)):
        ok = math.isfinite(value) and float(value).is_integer()
    if not ok or not low <= int(value) <= high:
        raise ValueError(f"`{name}` has to be an integer in [{low}, {high}], but is {shown(value)}")
    return int(value)


def check_seed(value: Any) -> int | None:
    """A seed in [0, MAX_SEED], or None for a random one (None or -1, as the page and the CLI write it)."""
    if value is None or (isinstance(value, Real) and not isinstance(value, bool) and value == -1):
        return None
    try:
        return check_int("seed", value, 0, MAX_SEED)
    except ValueError:
        raise ValueError(f"`seed` has to be -1 (random) or an integer in [0, {MAX_SEED}], "
                         f"but is {shown(value)}") from None


def check_float(name: str, value: Any, low: float, high: float, *, low_open: bool = False) -> float:
    """A finite number in [low, high] (or (low, high] with low_open); NaN and inf are refused."""
    bracket = "(" if low_open else "["
    ok = isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (low < value if low_open else low <= value) and value <= high
    if not ok:
        raise ValueError(f"`{name}` has to be a finite number in {bracket}{low:g}, {high:g}], but is {shown(value)}")
    return float(value)


def check_stop(stop: Any) -> tuple[str, ...]:
    if stop is None:
        return ()
    # a string, or a list or tuple of them (5 or a dict's keys or b"\n" read as its bytes were not what was meant)
    strings = (stop,) if isinstance(stop, str) else tuple(stop) if isinstance(stop, (list, tuple)) else None
    if strings is None or len(strings) > MAX_STOP_STRINGS or not all(
            isinstance(s, str) and 0 < len(s) <= MAX_STOP_CHARS for s in strings):
        raise ValueError(
            f"`stop` has to be a string or a list of at most {MAX_STOP_STRINGS} non-empty strings of at most "
            f"{MAX_STOP_CHARS} characters, but is {shown(stop)}"
        )
    return strings


def shown(value: Any) -> str:
    """`value` as the message quotes it: its repr, cut to MAX_SHOWN_CHARS (a 10 MB string must not come back whole)."""
    return cut(repr(value))


def cut(text: str) -> str:
    """`text` as a message quotes it: at most MAX_SHOWN_CHARS, the last of them an ellipsis where it goes on."""
    return text if len(text) <= MAX_SHOWN_CHARS else text[: MAX_SHOWN_CHARS - 1] + "\u2026"


def check_prompt(prompt: Any) -> str:
    if not isinstance(prompt, str):
        raise ValueError(f"`prompt` has to be a string, but is {type(prompt).__name__}")
    return check_unicode("prompt", prompt)


def check_text(name: str, text: Any, max_chars: int = MAX_PROMPT_CHARS) -> str:
    """A string of at most `max_chars` characters (a text to analyse is never cut silently)."""
    if not isinstance(text, str):
        raise ValueError(f"`{name}` has to be a string, but is {type(text).__name__}")
    if len(text) > max_chars:
        raise ValueError(f"`{name}` has to be at most {max_chars} characters long, but has {len(text)}")
    return check_unicode(name, text)


def check_unicode(name: str, text: str) -> str:
    """Text the tokenizer can encode: no lone surrogate, half of a UTF-16 pair (JSON can carry one as "\\ud800")."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise ValueError(f"`{name}` has to be valid Unicode text, but has a lone surrogate "
                         f"({text[error.start]!r}) at character {error.start}") from None
    return text


DEFAULTS = SamplingParams()

"""ZeroGPU: a GPT-2 whose GPU is lent to one call at a time, as a TokenBackend (gpt2_core/backend.py).

On a Hugging Face ZeroGPU Space, CUDA exists only inside a function decorated with `@spaces.GPU(duration=...)`. Each
such call runs in a worker process forked for it (or kept warm from an earlier call), and its arguments and what it
returns or yields are pickled across. The model is placed on `cuda` at start-up; the `spaces` package keeps it aside
until a call is lent the GPU. No thread of the app's own process may run it, and `torch.compile` is not supported.

`ZeroGpuBackend` wraps a LocalBackend (local.py) and runs every model call inside such a call, in that call's own
thread. A generation is one lent call that decodes the request alone (`LocalBackend.run`: an engine of its own, no
engine thread, eager steps) and yields each step's token events; the page streams them as they come. Scoring, the
next token's candidates and attention maps are one lent call each, and their tensors come back on the CPU. The text
layer above (lm.py) is the same as for the other backends. gpt2_core never imports `spaces`: the host passes its
decorator in as `lend` (demo/zerogpu.py).

How long each call asks for (`GpuTime`): a generation asks for a start-up allowance plus its new tokens times its
samples divided by the decode rate (tokens per second of one sample). The rate is the slowest of the last few
generations measured here, and before the first a conservative default. The request is bounded by its deadline
(the engine ends it then) and by MAX_S. Other calls ask for a fixed CALL_S.

Training and the Scale tab are unavailable here (ModelDescription.unavailable says why).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Generator
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from gpt2_core.backend import (
    SCALE,
    TRAINING,
    ModelDescription,
    NextTokens,
    StreamItem,
    Tokenizer,
    TokenRequest,
)
from gpt2_core.local import MAX_ALTERNATIVES, MAX_SCORED_TOKENS, LocalBackend

if TYPE_CHECKING:
    import torch

    from gpt2_core.explain.lens import LensIds
    from gpt2_core.explain.scoring import ScoredIds

# `lend(fn, duration)`: `fn` made to run on a lent GPU, each call asking for `duration(*args, **kwargs)` seconds
# (on a ZeroGPU Space: spaces.GPU(duration=duration)(fn)); a generator function stays one
Lend = Callable[[Callable[..., Any], Callable[..., int]], Callable[..., Any]]

DEFAULT_RATE = 20.0  # tokens/s of one sample before any is measured: below every eager fp16 rate measured here on an
# H200 (gpt2 168, gpt2-xl 22; README, Performance)
START_S = 10.0  # a call's start-up: a worker forked, CUDA set up, the weights moved to the GPU, the prompt prefilled
CALL_S = 20  # a call that scores, lists candidates or draws attention maps: a few forward passes, plus the start-up
MAX_S = 120  # the most a generation asks for: ZeroGPU grants more, but a free account's daily quota is 3.5 minutes
# and a call that asks for more than its visitor has left is refused
MEASURED = 8  # generations whose rate is kept: the slowest of them counts
MIN_MEASURED_STEPS = 16  # shorter generations are not measured

ZEROGPU_UNAVAILABLE = {
    TRAINING: "training keeps a GPU busy for minutes, and on this ZeroGPU Space every visitor's GPU time comes out of "
              "a small daily quota. Run the app on your own machine to train one.",
    SCALE: "the Scale tab loads each GPT-2 size while it runs, and on a ZeroGPU Space a model has to be on the GPU "
           "before the page is served. Run the app on your own machine to compare sizes.",
}


class GpuTime:
    """How many seconds a lent call asks for (module docstring); shared by every request of a model, thread-safe."""

    def __init__(self, *, rate: float = DEFAULT_RATE, start_s: float = START_S, max_s: float = MAX_S):
        self.default_rate = rate  # tokens/s of one sample, until generations here are measured
        self.start_s = start_s
        self.max_s = max_s
        self._lock = threading.Lock()
        self._measured: deque[float] = deque(maxlen=MEASURED)  # tokens/s of one sample, per measured generation

    @property
    def rate(self) -> float:
        """Tokens per second of one sample: the slowest of the last generations measured, or the default before any."""
        with self._lock:
            return min(self._measured, default=self.default_rate)

    def generation(self, request: TokenRequest) -> int:
        """Seconds to ask for `request`: the start-up, then its new tokens x samples / rate; no longer than until its
        deadline (the engine ends it then) and MAX_S."""
        wanted = self.start_s + request.max_new_tokens * len(request.seeds) / self.rate
        until_deadline = self.start_s + max(0.0, request.deadline - time.monotonic())
        return math.ceil(min(wanted, until_deadline, self.max_s))

    def call(self, *args: object, **kwargs: object) -> int:
        """Seconds to ask for a call that is not a generation (the same for all: CALL_S)."""
        return CALL_S

    def record(self, steps: int, seconds: float) -> None:
        """A generation made `steps` tokens per sample in `seconds`, from its first step's events to its last."""
        if steps >= MIN_MEASURED_STEPS and seconds > 0:
            with self._lock:
                self._measured.append((steps - 1) / seconds)


class ZeroGpuBackend:
    """A LocalBackend whose every model call runs inside a call of `lend`, in that call's thread (module docstring).

    Built at start-up, after the model was placed on its device: what the model panel shows is read now, once, since
    afterwards the weights are the host's until a call is lent the GPU.
    """

    slides_window = True
    max_alternatives = MAX_ALTERNATIVES
    max_scored_tokens = MAX_SCORED_TOKENS

    def __init__(self, local: LocalBackend, lend: Lend, *, gpu_time: GpuTime | None = None):
        self.local = local
        self.name = local.name
        self.time = gpu_time or GpuTime()
        self.tokenizer: Tokenizer = local.tokenizer
        self.context_length = local.context_length
        self.eos_token_id = local.eos_token_id
        self.max_candidates = local.max_candidates
        self._description = replace(local.describe(), where=f"{local.device} (ZeroGPU)",
                                    unavailable=dict(ZEROGPU_UNAVAILABLE))
        # Decorated once, here, before the page is served (as the host requires)
        self._run = lend(local.run, self.time.generation)
        self._next_tokens = lend(local.next_tokens, self.time.call)
        self._prompt_logprobs = lend(local.prompt_logprobs, self.time.call)
        self._attention = lend(local.attention, self.time.call)
        self._logit_lens = lend(local.logit_lens, self.time.call)

    def describe(self) -> ModelDescription:
        return replace(self._description, name=self.name)

    def submit(self, request: TokenRequest) -> LentStream:
        return LentStream(self._run(request), samples=len(request.seeds), gpu_time=self.time)

    def failure(self, error: Exception, request: TokenRequest) -> Exception:
        return self.local.failure(error, request)

    def next_tokens(self, ids: list[int]) -> NextTokens:
        result: NextTokens = self._next_tokens(ids)
        return result

    def prompt_logprobs(self, ids: list[int], *, top: int) -> ScoredIds:
        result: ScoredIds = self._prompt_logprobs(ids, top=top)
        return result

    def attention(self, ids: list[int]) -> torch.Tensor:
        result: torch.Tensor = self._attention(ids)
        return result

    def logit_lens(self, ids: list[int], *, top: int, target: int | None) -> LensIds:
        result: LensIds = self._logit_lens(ids, top=top, target=target)
        return result

    def close(self) -> None:
        self.local.close()


class LentStream:
    """A generation running in a lent call (a TokenStream whose `events` it is itself): reading the next step runs the
    call on to it. Once running, the call cannot be told anything: Stop closes it (the host ends it at its next step),
    and a sample that reached a stop string runs on until the others end (all of them stopped: the call is closed)."""

    def __init__(self, steps: Generator[StreamItem, None, None], *, samples: int, gpu_time: GpuTime):
        self._steps = steps
        self._time = gpu_time
        self._running = set(range(samples))  # samples the call has not ended
        self._stopped: set[int] = set()  # samples the caller ended (a stop string)
        self._tokens = [0] * samples  # tokens each sample made
        self._first_at: float | None = None  # when the first step's events came

    @property
    def events(self) -> LentStream:
        return self

    def get(self) -> StreamItem:
        """The next step's events (or the error that ended the request), as soon as the lent call yields them."""
        try:
            item = next(self._steps)
        except StopIteration:
            return RuntimeError("the GPU call ended before its samples did")
        if isinstance(item, list):
            now = time.monotonic()
            if self._first_at is None:
                self._first_at = now
            for event in item:
                if event.token is not None:
                    self._tokens[event.sample] += 1
                if event.finish_reason is not None:
                    self._running.discard(event.sample)
            if not self._running:  # the call's last step: it ends by itself; let it end (the host then frees the GPU)
                self._time.record(max(self._tokens), now - self._first_at)
                for _ in self._steps:
                    pass
        return item

    def cancel(self) -> None:
        self._steps.close()

    def stop_sample(self, index: int) -> None:
        self._stopped.add(index)
        if self._running <= self._stopped:
            self.cancel()

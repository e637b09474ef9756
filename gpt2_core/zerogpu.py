"""ZeroGPU: a GPT-2 whose GPU is lent to one call at a time, as a TokenBackend (gpt2_core/backend.py).

On a Hugging Face ZeroGPU Space, CUDA exists only inside a function decorated with `@spaces.GPU(duration=...)`. Each
such call runs in a worker process forked for it (or kept warm from an earlier call), and its arguments and what it
returns or yields are pickled across. The model is placed on `cuda` at start-up; the `spaces` package keeps it aside
until a call is lent the GPU. No thread of the app's own process may run it, and `torch.compile` is not supported.

`ZeroGpuBackend` wraps a LocalBackend (local.py) and runs every model call inside such a call, in that call's own
thread. A generation is one lent call that decodes the request alone (`LocalBackend.run`: an engine of its own, no
engine thread, eager steps) and yields each step's token events; the page streams them as they come. Scoring, the
next token's candidates, attention maps and the logit lens are one lent call each, and their tensors come back on the
CPU. The text layer above (lm.py) is the same as for the other backends. gpt2_core never imports `spaces`: the host
passes its decorator in as `lend` (demo/zerogpu.py).

How long each call asks for (`GpuTime`): a start-up allowance plus the request's work over a rate measured here, in
whole seconds, at most MAX_S. A generation's work is its prompt's prefill at the forward rate, then its new tokens
times its samples at the decode rate (tokens per second of one sample), and it asks for no longer than until its
deadline (the engine ends it then). Every other call's work is its token passes at the forward rate: a token pass is
one token read by a forward pass through the whole model (its blocks and LM head), and `TokenPasses` counts them from
the call's own arguments (the logit lens also reads each layer through the head: a share of a pass per layer). Each
rate is the slowest of the last few measured here, and before the first a conservative default. The estimate assumes
a call's time grows in proportion to its tokens. On a GPU a short pass costs mostly its kernel launches instead: a
rate measured on short calls is low, and longer calls then over-ask; one measured on long calls misses a short call's
launches, tens of milliseconds that the start-up allowance covers. Calls too short to say are not measured.

Training and the Scale tab are unavailable here (ModelDescription.unavailable says why).
"""

from __future__ import annotations

import functools
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
from gpt2_core.config import GPTConfig
from gpt2_core.explain.scoring import scoring_tokens
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
DEFAULT_FORWARD_RATE = 1000.0  # token passes/s before any call is measured: far below every prefill measured here
# on an H200 (a 1023-token prompt in 31 ms on gpt2, 42 ms on gpt2-xl: 24,000/s or more; README, Performance); scoring
# the longest text (8192 tokens, 16,368 passes) then asks for 27 s
START_S = 10.0  # a call's start-up: a worker forked, CUDA set up, the weights moved to the GPU; the least a call asks
MAX_S = 120  # the most a call asks for: ZeroGPU grants more, but a free account's daily quota is 3.5 minutes and a
# call that asks for more than its visitor has left is refused
MEASURED = 8  # calls whose rate is kept, for each rate: the slowest of them counts
MIN_MEASURED_STEPS = 16  # shorter generations are not measured
MIN_MEASURED_PASSES = 256  # calls of fewer token passes are not measured: an eager pass costs at least its kernel
# launches (about one decode step, 45 ms on gpt2-xl), however few its tokens, so 3 tokens would measure 67/s and make
# every long scoring ask for MAX_S; 256 tokens in that time measure 5,700/s

ZEROGPU_UNAVAILABLE = {
    TRAINING: "training keeps a GPU busy for minutes, and on this ZeroGPU Space every visitor's GPU time comes out of "
              "a small daily quota. Run the app on your own machine to train one.",
    SCALE: "the Scale tab loads each GPT-2 size while it runs, and on a ZeroGPU Space a model has to be on the GPU "
           "before the page is served. Run the app on your own machine to compare sizes.",
}


def head_share(config: GPTConfig) -> float:
    """The LM head's share of a token pass: its vocab x n_embd weights over all the weights a token is multiplied by
    (12 n_embd^2 per block: attention's 4, the MLP's 8; then the head). gpt2 0.31, gpt2-xl 0.05. Attention's own
    T x T work is left out (a fifth more at gpt2's full context), and the rates measured on such calls take it in."""
    head = config.vocab_size * config.n_embd
    return head / (12 * config.n_layer * config.n_embd**2 + head)


class TokenPasses:
    """How many token passes (module docstring) each lent call that is not a generation makes, from the same
    arguments as the call: what its duration is worked out from, and what its measured time is divided by."""

    def __init__(self, config: GPTConfig):
        self.context = config.block_size
        self.lens_heads = config.n_layer * head_share(config)  # the lens's head reads beyond its pass, in passes

    def next_tokens(self, ids: list[int]) -> float:
        return len(ids)  # one pass over the prompt

    def prompt_logprobs(self, ids: list[int], *, top: int) -> float:
        # every window's tokens (ids[0] only conditions the first), counted as whole passes though the head reads the
        # new ones only: an over-estimate by at most the head's share
        return scoring_tokens(len(ids) - 1, self.context)

    def attention(self, ids: list[int]) -> float:
        return len(ids)  # one pass, its attention written out (T x T per head: little beside the pass at 64 tokens)

    def logit_lens(self, ids: list[int], *, top: int, target: int | None) -> float:
        # one pass, then the head again for every layer's stream but the last (the pass read that one); the softmax,
        # top-k and ranks over the vocabulary cost a few operations per logit, where the head costs n_embd
        return len(ids) * (1 + self.lens_heads)


class GpuTime:
    """How many seconds a lent call asks for (module docstring); shared by every request of a model, thread-safe."""

    def __init__(self, *, rate: float = DEFAULT_RATE, forward_rate: float = DEFAULT_FORWARD_RATE,
                 start_s: float = START_S, max_s: float = MAX_S):
        self.default_rate = rate  # tokens/s of one sample, until generations here are measured
        self.default_forward_rate = forward_rate  # token passes/s, until calls here are measured
        self.start_s = start_s
        self.max_s = max_s
        self._lock = threading.Lock()
        self._measured: deque[float] = deque(maxlen=MEASURED)  # tokens/s of one sample, per measured generation
        self._forward_measured: deque[float] = deque(maxlen=MEASURED)  # token passes/s, per measured call

    @property
    def rate(self) -> float:
        """Tokens per second of one sample: the slowest of the last generations measured, or the default before any."""
        with self._lock:
            return min(self._measured, default=self.default_rate)

    @property
    def forward_rate(self) -> float:
        """Token passes per second: the slowest of the last calls measured, or the default before any."""
        with self._lock:
            return min(self._forward_measured, default=self.default_forward_rate)

    def _ask(self, work_s: float) -> int:
        """The start-up, then `work_s`, in whole seconds: at least the start-up, at most max_s."""
        return math.ceil(min(self.start_s + work_s, self.max_s))

    def generation(self, request: TokenRequest) -> int:
        """Seconds to ask for `request`: the start-up, its prompt over the forward rate, then its new tokens x samples
        over the decode rate (the prompt is prefilled once for all samples); no longer than until its deadline (the
        engine ends it then) and MAX_S."""
        wanted = len(request.prompt_ids) / self.forward_rate + request.max_new_tokens * len(request.seeds) / self.rate
        return self._ask(min(wanted, max(0.0, request.deadline - time.monotonic())))

    def forward(self, passes: float) -> int:
        """Seconds to ask for a call of `passes` token passes (TokenPasses): the start-up, then passes over the
        forward rate; at most MAX_S."""
        return self._ask(passes / self.forward_rate)

    def record(self, steps: int, seconds: float) -> None:
        """A generation made `steps` tokens per sample in `seconds`, from its first step's events to its last."""
        if steps >= MIN_MEASURED_STEPS and seconds > 0:
            with self._lock:
                self._measured.append((steps - 1) / seconds)

    def record_forward(self, passes: float, seconds: float) -> None:
        """A call of `passes` token passes ran for `seconds` inside its lent call (_timed)."""
        if passes >= MIN_MEASURED_PASSES and seconds > 0:
            with self._lock:
                self._forward_measured.append(passes / seconds)


def _timed(fn: Callable[..., Any]) -> Callable[..., tuple[Any, float]]:
    """`fn` giving back its result and the seconds it ran, timed where it runs: on ZeroGPU that is a forked worker,
    whose own state is lost when the call ends, so the time travels back beside the result. Each call's result is on
    the CPU by the time it returns (copying it there waits for the GPU), so the time includes the GPU's work."""
    @functools.wraps(fn)  # the host knows the call by its name
    def timed(*args: Any, **kwargs: Any) -> tuple[Any, float]:
        start = time.perf_counter()
        result = fn(*args, **kwargs)
        return result, time.perf_counter() - start
    return timed


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
        self.passes = TokenPasses(local.config)
        # Decorated once, here, before the page is served (as the host requires); each call but a generation gives
        # back the seconds it ran beside its result, which measure the forward rate (`_forward`)
        self._run = lend(local.run, self.time.generation)
        self._next_tokens = lend(_timed(local.next_tokens), self._duration(self.passes.next_tokens))
        self._prompt_logprobs = lend(_timed(local.prompt_logprobs), self._duration(self.passes.prompt_logprobs))
        self._attention = lend(_timed(local.attention), self._duration(self.passes.attention))
        self._logit_lens = lend(_timed(local.logit_lens), self._duration(self.passes.logit_lens))

    def _duration(self, passes: Callable[..., float]) -> Callable[..., int]:
        """A lent call's duration from its arguments (the host passes it the call's own): its token passes over the
        forward rate (GpuTime.forward)."""
        def duration(*args: Any, **kwargs: Any) -> int:
            return self.time.forward(passes(*args, **kwargs))
        return duration

    def _forward(self, call: Callable[..., tuple[Any, float]], passes: Callable[..., float], *args: Any,
                 **kwargs: Any) -> Any:
        """Run a lent call that is not a generation, and measure the forward rate by it."""
        result, seconds = call(*args, **kwargs)
        self.time.record_forward(passes(*args, **kwargs), seconds)
        return result

    def describe(self) -> ModelDescription:
        return replace(self._description, name=self.name)

    def submit(self, request: TokenRequest) -> LentStream:
        return LentStream(self._run(request), samples=len(request.seeds), gpu_time=self.time)

    def failure(self, error: Exception, request: TokenRequest) -> Exception:
        return self.local.failure(error, request)

    def next_tokens(self, ids: list[int]) -> NextTokens:
        result: NextTokens = self._forward(self._next_tokens, self.passes.next_tokens, ids)
        return result

    def prompt_logprobs(self, ids: list[int], *, top: int) -> ScoredIds:
        result: ScoredIds = self._forward(self._prompt_logprobs, self.passes.prompt_logprobs, ids, top=top)
        return result

    def attention(self, ids: list[int]) -> torch.Tensor:
        result: torch.Tensor = self._forward(self._attention, self.passes.attention, ids)
        return result

    def logit_lens(self, ids: list[int], *, top: int, target: int | None) -> LensIds:
        result: LensIds = self._forward(self._logit_lens, self.passes.logit_lens, ids, top=top, target=target)
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

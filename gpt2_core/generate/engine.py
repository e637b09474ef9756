"""The decoding engine: one background thread that runs every sample of every request as one batch (continuous batching).
On a CPU the thread ends after IDLE_S with nothing to do, and the next request starts another.

A request (a prompt and its settings, with 1..8 samples) is prefilled, then its samples join the running batch.
Requests that wait together are prefilled together, in one forward pass of their prompts (right-padded to the
longest, at most PREFILL_TOKENS in all): a class pressing Generate at once waits for one prefill, not one each.
Each step runs one forward pass for all running samples, each of which may be at a different length, and samples each
with its own settings and its own torch.Generator, so a seeded sample is the same whoever else is generating.
Finished, cancelled or timed-out samples leave the batch at once, freeing their row for waiting requests.

A sample may run past the model's context (a 128-token model asked for 150 new tokens): when its row is full, its
window slides. The row is prefilled again with its last half-context of tokens, so the oldest ones (the prompt's
beginning first) leave the model's view, as OpenAI's and nanoGPT's samplers crop to the context; every token's
probability is still the one the model saw when it drew it.

`run` decodes one request in its caller's thread instead, with no engine thread, for a host that lends the GPU only to
the thread of a call (ZeroGPU, gpt2_core/zerogpu.py).

The engine speaks token ids only; text, stop strings and timing are the caller's (see lm.py).
"""

from __future__ import annotations

import atexit
import itertools
import logging
import queue
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

from gpt2_core.backend import StreamItem, TokenEvent
from gpt2_core.generate.compiled import Decode
from gpt2_core.generate.sampling import Distribution, Draw, draw
from gpt2_core.generate.settings import SamplingParams
from gpt2_core.memory import return_freed_memory
from gpt2_core.model import GPT, KVCache

log = logging.getLogger(__name__)
_STARTED: weakref.WeakSet[Engine] = weakref.WeakSet()  # engines that have started a thread (closed at exit)


@atexit.register
def _close_engines_at_exit() -> None:
    """Python's exit went on while an engine thread was inside a torch kernel, and the process aborted ("terminate
    called without an active exception", exit code 134): a script that broke out of a stream, or ended as a sample
    went on, crashed at its last line. The threads finish their step and end first."""
    for engine in list(_STARTED):
        engine.close()


@dataclass(eq=False)
class Request:
    """A prompt in flight (a TokenStream, gpt2_core/backend.py): the caller reads `events` (lists of TokenEvent, one
    list per step, or an Exception)."""

    prompt_ids: list[int]
    params: SamplingParams
    seeds: list[int]
    max_new_tokens: int
    deadline: float  # time.monotonic() after which the request is ended with finish_reason "timeout"
    alternatives: int = 0  # report this many likeliest tokens at each step, beside the chosen one
    events: queue.Queue[StreamItem] = field(default_factory=queue.Queue)
    _cancelled: threading.Event = field(default_factory=threading.Event)
    _stopped: set[int] = field(default_factory=set)  # samples the caller ended (a stop string appeared)

    def cancel(self) -> None:
        """Stop all samples at the next step (Stop pressed, tab closed, caller gone)."""
        self._cancelled.set()

    def stop_sample(self, index: int) -> None:
        self._stopped.add(index)


PREFILL_TOKENS = 4096  # at most this many prompt positions (padding included) in one prefill pass: the activations
# of a pass grow with it; a longer prompt still goes, alone
IDLE_S = 2.0  # a CPU engine's thread ends after this long with nothing to do; the next request starts another.
# GNU OpenMP keeps a worker pool for every thread that ran a parallel kernel while that thread lives, and with more
# pools than cores it lets idle workers sleep, so every kernel of a busy engine waits for its workers to wake
# (gpt2_core/threads.py). An open model that is not generating (a visitor's own model, kept for their page) must not
# hold one: measured on 2 cores, it made gpt2's tokens 1.5x slower (README, Performance).


@dataclass(eq=False)
class _Row:
    """One running sample: its request, where it is, and its own random stream."""

    request: Request
    index: int
    generator: torch.Generator
    length: int  # positions already in the KV cache
    next_token: int  # sampled, not yet fed to the model
    generated: int = 1
    history: list[int] = field(default_factory=list)  # prompt + generated ids (kept only for the repetition penalty)
    tokens: list[int] = field(default_factory=list)  # the ids in the model's view, next_token last (for sliding)
    slides: int = 0  # times the window slid


class Engine:
    def __init__(self, model: GPT, *, device: torch.device, dtype: torch.dtype, max_batch: int = 16,
                 eos_token_id: int = 50256):
        self.model = model
        self.device = device
        self.dtype = dtype
        self.max_batch = max_batch
        self.eos_token_id = eos_token_id
        self.steps = 0  # decode steps run so far (tests count them to prove cancellation)
        self.decode: Decode = model.decode  # the decode step: eager until `use` swaps in a faster one
        self.decoding = "eager"  # its kind: "eager", "compiled" (compiled.py) or "cuda-graphs" (cuda_graphs.py)
        self._pending: deque[Request] = deque()
        self._rows: list[_Row] = []  # row i of the batch lives in cache row i
        self._cache: KVCache | None = None
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False

    # ---- the caller's side -------------------------------------------------------------------------------------
    def use(self, decode: Decode, kind: str) -> None:
        """Decode every following step with `decode` (the same numbers as GPT.decode, faster): one assignment, read
        by the engine thread at its next step, so a compile finishing in the background swaps in between steps."""
        self.decode, self.decoding = decode, kind

    def submit(self, request: Request) -> Request:
        self._check_samples(request)
        with self._wake:
            if self._closed:
                raise RuntimeError("the engine is closed")
            self._pending.append(request)
            if self._thread is None:  # the first request, or the first since the thread ended idle
                self._thread = threading.Thread(target=self._loop, name="gpt2-engine", daemon=True)
                self._thread.start()
                _STARTED.add(self)
            self._wake.notify()
        return request

    def run(self, request: Request) -> Iterator[StreamItem]:
        """Decode `request` in the caller's thread and yield its events as they come (one list per step, or the error
        that ended it): no engine thread, and the request's samples are the whole batch. For a host where only the
        thread of a call it lent a GPU to may use the device (ZeroGPU: gpt2_core/zerogpu.py). The engine must be
        fresh and is used up by this; closing the iterator abandons the request."""
        if self._thread is not None or self._pending or self._rows:
            raise RuntimeError("Engine.run needs an engine of its own, with no thread and no other request")
        self._check_samples(request)
        self._pending.append(request)
        while self._pending or self._rows:
            self._run_once()
            while not request.events.empty():
                yield request.events.get_nowait()

    def _check_samples(self, request: Request) -> None:
        if len(request.seeds) > self.max_batch:
            raise ValueError(f"`num_samples` has to be at most {self.max_batch} with this model here (the samples it "
                             f"decodes at once, as its memory allows), but is {len(request.seeds)}")

    def close(self) -> None:
        with self._wake:
            self._closed = True
            self._wake.notify()
            thread = self._thread
        if thread is not None:
            thread.join(timeout=10)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def running(self) -> int:
        """Samples in the batch now."""
        return len(self._rows)

    @property
    def waiting(self) -> int:
        """Requests submitted and not yet admitted to the batch."""
        return len(self._pending)

    # ---- the engine thread -------------------------------------------------------------------------------------
    @property
    def _batch_cache(self) -> KVCache:
        """The cache the running rows live in (made by the first prefill, so there is one while rows run)."""
        assert self._cache is not None
        return self._cache

    def _loop(self) -> None:
        torch.set_grad_enabled(False)
        idle_s = IDLE_S if self.device.type == "cpu" else None  # (no OpenMP pools to free on a GPU: it stays)
        while True:
            with self._wake:
                while not self._pending and not self._rows and not self._closed:
                    timed_out = not self._wake.wait(timeout=idle_s)
                    if timed_out and not self._pending and not self._closed:  # (one may have come as it timed out)
                        self._release_busy_rows()
                        self._thread = None  # idle: end, freeing this thread's pool; under the lock, so a request
                        return  # from now on starts another thread
                if self._closed:
                    break
            self._run_once()
        unloaded = RuntimeError("the model was unloaded; try again")
        for request in [r.request for r in self._rows] + list(self._pending):
            request.events.put(unloaded)

    def _release_busy_rows(self) -> None:
        """Idle: a cache grown for a busy spell goes back to the system (gpt2: 75 MB a row, gpt2-xl 629 MB), and the
        next request allocates the rows it needs. A one-row cache stays, so a lone visitor's next request allocates
        nothing. Called under the lock as the thread ends, so no other engine thread runs yet."""
        if self._cache is not None and self._cache.batch_size > 1:
            self._cache = None
            return_freed_memory()

    def _run_once(self) -> None:
        """Admit waiting requests, then run one decode step of the batch (in the engine thread, or in `run`'s caller)."""
        try:
            with torch.inference_mode():
                self._admit()
                if self._rows:
                    self._step()
        except Exception as e:  # a bug here must not leave callers waiting forever
            log.exception("engine step failed")
            for request in {id(r.request): r.request for r in self._rows}.values():
                request.events.put(e)
            self._rows = []

    def _admit(self) -> None:
        """Answer waiting requests that were cancelled or ran out of time, then prefill others while they fit."""
        now = time.monotonic()
        with self._wake:
            ended = [r for r in self._pending if r._cancelled.is_set() or now > r.deadline]
            for request in ended:
                self._pending.remove(request)
        for request in ended:
            reason = "cancelled" if request._cancelled.is_set() else "timeout"
            request.events.put([TokenEvent(i, None, 0.0, reason) for i in range(len(request.seeds))])
        while group := self._next_group():
            try:
                self._prefill(group)
            except Exception:  # the pass failed (a bad prompt, memory): each request alone, so only its own fails
                if len(group) == 1:
                    self._prefill_failed(group[0])
                    continue
                log.warning("a prefill of %d prompts failed; prefilling them one at a time", len(group),
                            exc_info=True)
                _free_device_memory(self.device)
                for request in group:
                    try:
                        self._prefill([request])
                    except Exception:
                        self._prefill_failed(request)

    def _next_group(self) -> list[Request]:
        """The waiting requests to prefill together: the first ones whose samples fit in the batch and whose prompts,
        padded to the longest, fit in PREFILL_TOKENS (the first one always goes)."""
        group: list[Request] = []
        rows, longest = len(self._rows), 0
        with self._wake:
            while self._pending:
                request = self._pending[0]
                length = max(longest, len(request.prompt_ids))
                if rows + len(request.seeds) > self.max_batch or (group and length * (len(group) + 1) > PREFILL_TOKENS):
                    break
                group.append(self._pending.popleft())
                rows, longest = rows + len(request.seeds), length
        return group

    def _prefill_failed(self, request: Request) -> None:
        """This request alone fails (called while its exception is handled); the batch goes on."""
        log.exception("prefill failed")
        self._rows = [r for r in self._rows if r.request is not request]
        _free_device_memory(self.device)
        error = sys.exc_info()[1]
        request.events.put(error if isinstance(error, Exception) else RuntimeError("prefill failed"))

    def _ensure_rows(self, n: int, max_len: int) -> KVCache:
        cache = self._cache
        if cache is None or cache.batch_size < n:
            size = min(self.max_batch, max(n, 2 * cache.batch_size if cache else 1))
            if getattr(self.decode, "pads_batch", False):  # a power of two, so that padded sizes fit the cache
                size = min(self.max_batch, 1 << (size - 1).bit_length())
            new = self.model.new_cache(size, max_len, device=self.device, dtype=self.dtype)
            for i, row in enumerate(self._rows):  # carry the running samples over
                assert cache is not None  # rows run only in a cache
                for layer in range(self.model.config.n_layer):
                    new.k[layer][i, :, : row.length] = cache.k[layer][i, :, : row.length]
                    new.v[layer][i, :, : row.length] = cache.v[layer][i, :, : row.length]
            self._cache = cache = new
        return cache

    def _prefill(self, requests: list[Request]) -> None:
        """Prefill `requests` in one pass, each prompt into the first of its rows, then give each its samples. The
        pass fails as a whole (the caller then prefills each alone); after it, a request that fails fails alone."""
        counts = [len(r.seeds) for r in requests]
        starts = list(itertools.accumulate([len(self._rows)] + counts[:-1]))  # each request's first row
        cache = self._ensure_rows(starts[-1] + counts[-1], self.model.config.block_size)
        lengths = [len(r.prompt_ids) for r in requests]
        T = max(lengths)
        padded = [r.prompt_ids + [0] * (T - length) for r, length in zip(requests, lengths)]
        logits = self.model.prefill(torch.tensor(padded, device=self.device), cache, starts, lengths).cpu()  # (N, vocab)
        for request, first, length, row_logits in zip(requests, starts, lengths, logits):
            at = len(self._rows)  # batch row i lives in cache row i: a request that failed before leaves a gap
            try:
                if at != first:
                    cache.copy_row(first, at, length)
                self._start(request, at, row_logits)
            except Exception:
                self._prefill_failed(request)
        self._drop_finished()

    def _start(self, request: Request, first: int, logits: torch.Tensor) -> None:
        """`request`'s prompt is in cache row `first` and `logits` (vocab,) follow it: copy the row for each further
        sample, draw each sample's first token and add its rows to the batch."""
        n = len(request.seeds)
        cache = self._batch_cache
        T = len(request.prompt_ids)
        history = torch.tensor(request.prompt_ids) if request.params.repetition_penalty != 1.0 else None
        for i in range(1, n):
            cache.copy_row(first, first + i, T)  # every sample continues the same prompt
        generators = [torch.Generator().manual_seed(seed) for seed in request.seeds]
        draws = draw(logits[None].expand(n, -1), [request.params] * n, generators, [history] * n)
        alternatives = _alternatives(logits[None], [request], [draws[0].distribution])[0]
        events = []
        for i, (generator, (token, prob, _, rank)) in enumerate(zip(generators, draws)):
            row = _Row(request, i, generator, length=T, next_token=token,
                       history=list(request.prompt_ids) + [token] if history is not None else [],
                       tokens=list(request.prompt_ids) + [token])
            self._rows.append(row)
            events.append(TokenEvent(i, token, prob, self._finish_reason(row), rank,
                                     alternatives if request.alternatives else ()))
        request.events.put(events)

    def _slide(self) -> None:
        """Rows whose cache is full keep their last half-context of tokens: prefilled again from position 0."""
        block = self.model.config.block_size
        for b, row in enumerate(self._rows):
            if row.length < block:
                continue
            keep = row.tokens[-(block // 2) - 1 : -1]  # the next token is fed by the decode step, after these
            self.model.prefill(torch.tensor([keep], device=self.device), self._batch_cache, b)
            row.length = len(keep)
            row.tokens = keep + [row.next_token]
            row.slides += 1

    def _step(self) -> None:
        self._slide()
        while True:
            rows = self._rows
            idx = torch.tensor([[r.next_token] for r in rows], device=self.device)  # (B, 1)
            try:
                logits = self.decode(idx, self._batch_cache, [r.length for r in rows])  # (B, vocab)
                break
            except torch.OutOfMemoryError as e:  # the newest request made the batch too big: it alone leaves
                newest = rows[-1].request  # admitted last, so its rows are last
                log.warning("out of memory in a decode step of %d rows; ending the newest request", len(rows))
                newest.events.put(e)
                self._compact([r for r in rows if r.request is not newest])
                _free_device_memory(self.device)
                if not self._rows:
                    return
                # retry: nothing was sampled yet, and the retried step rewrites the cache positions it wrote
            except Exception as e:  # anything else: end this batch's requests with the error, keep serving
                log.exception("decode step failed")
                for request in {id(r.request): r.request for r in rows}.values():
                    request.events.put(e)
                self._rows = []
                _free_device_memory(self.device)
                return
        self.steps += 1
        histories = [torch.tensor(r.history) if r.history else None for r in rows]
        try:
            draws = draw(logits, [r.request.params for r in rows], [r.generator for r in rows], histories)
        except Exception:  # e.g. NaN logits in one row: end only the requests whose rows cannot be sampled
            log.exception("batched sampling failed; sampling row by row")
            each = self._sample_each(logits.cpu(), rows)
            for row, drawn in zip(rows, each):
                if isinstance(drawn, Exception) and not row.request._cancelled.is_set():
                    row.request.events.put(drawn)
                    row.request.cancel()  # its other rows leave too
            keep = [b for b, r in enumerate(rows) if not r.request._cancelled.is_set()]
            self._compact([rows[b] for b in keep])
            draws = [d for d in (each[b] for b in keep) if isinstance(d, Draw)]
            assert len(draws) == len(keep)  # a row that could not be sampled cancelled its request, so it left
            rows, histories = [rows[b] for b in keep], [histories[b] for b in keep]
            logits = logits[keep]
        alternatives = _alternatives(logits, [r.request for r in rows], [d.distribution for d in draws])
        events: dict[int, tuple[Request, list[TokenEvent]]] = {}
        for row, (token, prob, _, rank), alts in zip(rows, draws, alternatives):
            row.length += 1
            row.next_token = token
            row.generated += 1
            row.tokens.append(row.next_token)
            if row.history:
                row.history.append(row.next_token)
            event = TokenEvent(row.index, row.next_token, prob, self._finish_reason(row), rank, alts)
            events.setdefault(id(row.request), (row.request, []))[1].append(event)
        for request, request_events in events.values():  # one list per request and step
            request.events.put(request_events)
        self._drop_finished()

    @staticmethod
    def _sample_each(logits: torch.Tensor, rows: list[_Row]) -> list[Draw | Exception]:
        draws: list[Draw | Exception] = []
        for b, row in enumerate(rows):
            try:
                history = torch.tensor(row.history) if row.history else None
                draws.extend(draw(logits[b : b + 1], [row.request.params], [row.generator], [history]))
            except Exception as e:  # this row only
                draws.append(e)
        return draws

    def _finish_reason(self, row: _Row) -> str | None:
        request = row.request
        if row.next_token == self.eos_token_id:
            return "eos"
        if row.generated >= request.max_new_tokens:
            return "length"
        return None

    def _drop_finished(self) -> None:
        """Remove ended, cancelled and timed-out samples from the batch."""
        now = time.monotonic()
        keep: list[_Row] = []
        for row in self._rows:
            request = row.request
            ended = self._finish_reason(row)
            if ended is None and (request._cancelled.is_set() or row.index in request._stopped):
                request.events.put([TokenEvent(row.index, None, 0.0, "cancelled")])
                ended = "cancelled"
            elif ended is None and now > request.deadline:
                request.events.put([TokenEvent(row.index, None, 0.0, "timeout")])
                ended = "timeout"
            if ended is None:
                keep.append(row)
        self._compact(keep)

    def _compact(self, keep: list[_Row]) -> None:
        """Make `keep` (in batch order) the batch, moving rows down into the holes so it stays rows 0..B-1."""
        if len(keep) == len(self._rows):
            return
        for new_index, row in enumerate(keep):
            old_index = self._rows.index(row)
            if old_index != new_index:
                self._batch_cache.copy_row(old_index, new_index, row.length)
        self._rows = keep


def _alternatives(logits: torch.Tensor, requests: list[Request],
                  distributions: list[Distribution]) -> list[tuple[tuple[int, float, float], ...]]:
    """For each row (logits (B, vocab)) whose request asks for them, its likeliest tokens: (id, probability, sampling
    probability under the request's settings, from the distribution its token was just drawn from); () for the
    others. The top-k runs once for the whole batch."""
    n = max(r.alternatives for r in requests)
    if n == 0:
        return [()] * len(requests)
    best = torch.topk(logits, n)  # (B, n) each
    probs = (best.values - torch.logsumexp(logits, dim=-1, keepdim=True)).exp().cpu()
    ids = best.indices.cpu()
    out: list[tuple[tuple[int, float, float], ...]] = []
    for b, (request, distribution) in enumerate(zip(requests, distributions)):
        k = request.alternatives
        if not k:
            out.append(())
            continue
        chances = distribution.probs_of(ids[b, :k])
        out.append(tuple((int(i), float(p), q) for i, p, q in zip(ids[b, :k], probs[b, :k], chances)))
    return out


def _free_device_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()

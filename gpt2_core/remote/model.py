"""`RemoteModel`: GPT-2 on an OpenAI-compatible completions server (vLLM), behind the same calls as LanguageModel.

`ServerBackend` is the TokenBackend (gpt2_core/backend.py) that talks to the server; RemoteModel is the text layer
(TextModel) over it, the same code as for the model running here.

    lm = RemoteModel("http://localhost:8000")          # the server's only model; or RemoteModel(url, "gpt2")
    for update in lm.stream("Hello", max_new_tokens=20, seed=1):
        print(update[0].text)

Text stays on this side: prompts are tokenized here with the model's own tokenizer (fetched by NAME: a Hub id or a
local directory, config and tokenizer files only) and sent as token ids, so prompts are cut to the context as locally
and every token's text is this side's. The server runs the model:
- the server's limit N of likeliest tokens reported per place is asked once (vLLM: --max-logprobs, 20 unless set;
  started with 100, every page's figure is exact for a top-k up to 100);
- generation streams one request per sample, sample i seeded with seed + i as locally, each token with its
  log-probability and the server's likeliest tokens (at least 20, or the top-k where N allows). Each sample is a
  task on the client's event loop (no thread of its own); stop strings are cut here, and Stop, a stop string or a
  deadline cancels the sample's task, which closes its stream and so ends the request on the server.
  A token's rank is known when it is among the N; the others get their exact rank from one scoring request once
  the text is complete (prompt_logprobs, which reports ranks);
- the next-token distribution is a one-token request's N likeliest tokens (cached per prompt, so sliders redraw
  without asking again); scoring a text is one request with prompt_logprobs (vLLM), so at most one context long.
Attention maps, the logit lens, training and the Scale tab need the model's insides or its weights here, so they are
unavailable (ModelDescription.unavailable says why), never imitated.
"""

from __future__ import annotations

import asyncio
import logging
import math
import queue
import re
import threading
import time
from collections.abc import Callable
from contextlib import aclosing
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import torch

from gpt2_core.backend import (
    ATTENTION,
    LENS,
    SCALE,
    TRAINING,
    FeatureUnavailableError,
    ModelDescription,
    NextTokens,
    StreamItem,
    TokenEvent,
    Tokenizer,
    TokenRequest,
)
from gpt2_core.checkpoint import ModelUnavailableError, load_tokenizer, read_config, resolve_tokenizer_dir
from gpt2_core.explain.distribution import reported_sampling_probs
from gpt2_core.explain.lens import LensIds
from gpt2_core.explain.scoring import ScoredIds
from gpt2_core.generate.settings import SamplingParams
from gpt2_core.lm import TextModel
from gpt2_core.remote.client import BackendAuthError, BackendRequestError, BackendUnavailableError, CompletionsClient
from gpt2_core.remote.logprobs import probability, rank_in, token_id, top_tokens

log = logging.getLogger(__name__)

SERVER_MAX_LOGPROBS = 20  # vLLM's default --max-logprobs: the likeliest tokens it reports per place
WANTED_LOGPROBS = 100  # as many as the page lists (MAX_CANDIDATES); a server started with --max-logprobs 100 gives them
STREAM_LOGPROBS = 20  # reported per generated token at least: the details table lists 8, ranks up to 20 show at once
LIMIT_MESSAGE = re.compile(r"greater than max allowed: (\d+)")  # vLLM's answer to too many logprobs
CONNECT_RETRY_S = 2.0  # after a failed connect, calls fail at once (with its message) for this long
PROBE_EVERY_S = 5.0  # while the server is failing, the model panel asks whether it is back at most this often
DEFAULT_CONTEXT = 1024  # when neither the server (vLLM's max_model_len) nor config.json says
FINISH_REASONS = {"length": "length", "stop": "eos", "abort": "cancelled"}  # no stop strings are sent: "stop" = EOS
GREEDY = SamplingParams(temperature=0.0, top_k=0)  # one token's probabilities: no sampling on the server
REMOTE_UNAVAILABLE = {
    ATTENTION: "attention maps need the model's insides, and a model server reports only tokens and their "
               "probabilities. Start the app without --backend to see them.",
    LENS: "the logit lens reads every layer's hidden state, and a model server reports only the last layer's "
          "tokens and their probabilities. Start the app without --backend to see every layer's guesses.",
    TRAINING: "training runs the model on this machine, and in remote mode this app runs no model of its own. "
              "Start the app without --backend to train one.",
    SCALE: "the Scale tab runs every GPT-2 size on this machine, and in remote mode this app runs no model of its "
           "own. Start the app without --backend to compare sizes.",
}


class RemoteModel(TextModel):
    """The text layer over a model server: `RemoteModel(url)` serves its only model, `RemoteModel(url, "gpt2")` one
    of several. It connects on first use (`connect()` to do so now)."""

    backend: ServerBackend

    def __init__(self, url: str, model: str | None = None, *, tokenizer: str | Path | None = None,
                 api_key: str | None = None, max_alternatives: int | None = None,
                 client: CompletionsClient | None = None, show_address: bool = True):
        super().__init__(ServerBackend(url, model, tokenizer=tokenizer, api_key=api_key,
                                       max_alternatives=max_alternatives, client=client, show_address=show_address))
        self.url = url

    def connect(self) -> RemoteModel:
        self.backend.connect()
        return self

    def probe(self) -> str | None:
        return self.backend.probe()

    @property
    def problem(self) -> str | None:
        return self.backend.problem


class ServerBackend:
    """A TokenBackend on an OpenAI-compatible completions server (module docstring)."""

    slides_window = False  # a server's prompt and new tokens must fit its context together

    def __init__(self, url: str, model: str | None = None, *, tokenizer: str | Path | None = None,
                 api_key: str | None = None, max_alternatives: int | None = None,
                 client: CompletionsClient | None = None, show_address: bool = True):
        self.url = url
        self._client = client or CompletionsClient(url, api_key=api_key, show_address=show_address)
        self._model = model  # None: the server's only model, once asked
        self._tokenizer_source = tokenizer
        self.max_alternatives = max_alternatives or SERVER_MAX_LOGPROBS  # the server's logprobs limit, once asked
        self._ask_limit = max_alternatives is None
        self.name = model or "(the server's model)"
        self.problem: str | None = None  # the last failure to reach the server; None once a call succeeds
        self._probed = 0.0
        self._connect_failure: tuple[float, Exception | None] = (0.0, None)  # when connecting last failed, and why
        self._lock = threading.Lock()
        self._connected = False
        self._tokenizer: Tokenizer | None = None
        self._context: int | None = None
        self._eos: int | None = None
        self._parameters: int | None = None

    # ---- connecting ---------------------------------------------------------------------------------------------
    def connect(self) -> ServerBackend:
        """Ask the server which model it serves and load that model's tokenizer: once, or again after a failure,
        but not within CONNECT_RETRY_S of it (a page's every keystroke must not wait on a server that is down)."""
        if self._connected:  # set last, once every field is: the per-token properties take no lock
            return self
        with self._lock:
            if self._connected:
                return self
            failed_at, error = self._connect_failure
            if error is not None and time.monotonic() - failed_at < CONNECT_RETRY_S:
                raise fresh(error)
            try:
                return self._connect()
            except (ModelUnavailableError, ValueError) as e:
                self._connect_failure = time.monotonic(), e
                self.problem = str(e)  # setup problems too (a wrong --model): the panel's banner shows them
                raise

    def _connect(self) -> ServerBackend:
        """connect()'s work, under its lock."""
        with self._tracked():
            served = self._client.models()
        ids = [m.get("id") for m in served]
        if self._model is None and len(ids) != 1:
            raise BackendRequestError(f"{self._client.shown} serves {len(ids)} models "
                                      f"({', '.join(map(str, ids)) or 'none'}): choose one with --model")
        name = self._model or ids[0]
        if not isinstance(name, str):  # an OpenAI-compatible server names each model it lists ("id")
            raise BackendRequestError(f"{self._client.shown} lists a model without a name (id): {served[0]}")
        if name not in ids:
            raise BackendRequestError(f"{self._client.shown} does not serve {name!r}; it serves "
                                      f"{', '.join(map(str, ids))}")
        entry = served[ids.index(name)]
        try:
            directory = resolve_tokenizer_dir(self._tokenizer_source or name)
        except ModelUnavailableError as e:
            raise ModelUnavailableError(
                f"the tokenizer of {name!r} is needed here to count and show tokens: {e} (start the server "
                "with --served-model-name set to a Hub id such as gpt2, or pass --model with one)") from e
        self._tokenizer = load_tokenizer(directory)
        config = read_config(directory) if (directory / "config.json").is_file() else None
        self._context = int(entry.get("max_model_len") or (config.block_size if config else DEFAULT_CONTEXT))
        self._eos = config.eos_token_id if config else self._tokenizer.eos_token_id
        if self._eos is None:  # it starts an empty prompt and ends every text: nothing works without it
            raise ModelUnavailableError(f"{name!r} has no config.json, and its tokenizer names no end-of-text token")
        self._parameters = config.num_parameters() if config else None
        self.name = name
        if self._ask_limit:
            self.max_alternatives = self._logprobs_limit()
        self._connected = True
        self._connect_failure = 0.0, None
        log.info("remote model %s at %s: context %d", name, self.url, self._context)
        return self

    def _tracked(self, ignore: Callable[[], bool] | None = None) -> _Tracked:
        return _Tracked(self, ignore)

    def _logprobs_limit(self) -> int:
        """How many likeliest tokens the server reports per place: WANTED_LOGPROBS if it allows them, else the limit
        its refusal names (vLLM: --max-logprobs, 20 unless set), else SERVER_MAX_LOGPROBS."""
        try:
            with self._tracked():
                self._client.complete(model=self.name, prompt=[self._eos], max_tokens=1, temperature=0.0,
                                      logprobs=WANTED_LOGPROBS)
        except BackendRequestError as e:
            found = LIMIT_MESSAGE.search(str(e))
            return min(WANTED_LOGPROBS, int(found.group(1))) if found else SERVER_MAX_LOGPROBS
        return WANTED_LOGPROBS

    def _stream_logprobs(self, params: SamplingParams) -> int:
        """Likeliest tokens to ask for with each generated token: enough for the top-k (or for top-p, as many as
        allowed), where the server allows, so that "after your settings" can be worked out; at least STREAM_LOGPROBS."""
        needed = params.top_k or (self.max_alternatives if params.top_p < 1 else 0)  # top-p alone: all there are
        return min(self.max_alternatives, max(STREAM_LOGPROBS, needed))

    def probe(self) -> str | None:
        """The server's problem now: while one is recorded, ask again (at most every PROBE_EVERY_S) whether it is
        back. None when the last call worked."""
        if self.problem is None or time.monotonic() - self._probed < PROBE_EVERY_S:
            return self.problem
        self._probed = time.monotonic()
        try:
            if not self._connected:
                self._connect_failure = 0.0, None  # asking now, whatever the last failure
                self.connect()  # clears the problem once the server and the model's tokenizer are there
            else:
                with self._tracked():
                    self._client.models()
        except (ModelUnavailableError, ValueError):
            pass  # still there: the message says what
        return self.problem

    # connect() sets these, or raises
    @property
    def tokenizer(self) -> Tokenizer:
        tokenizer = self.connect()._tokenizer
        assert tokenizer is not None
        return tokenizer

    @property
    def context_length(self) -> int:
        context = self.connect()._context
        assert context is not None
        return context

    @property
    def eos_token_id(self) -> int:
        eos = self.connect()._eos
        assert eos is not None
        return eos

    @property
    def max_candidates(self) -> int:
        return self.connect().max_alternatives

    @property
    def max_scored_tokens(self) -> int:
        return self.context_length - 1  # and one new token: a completion request asks for at least one

    def describe(self) -> ModelDescription:
        """What is known without asking the server (the panel redraws often; a down server must not slow it)."""
        return ModelDescription(self.name, where=self._client.shown, precision=None, parameters=self._parameters,
                                memory_bytes=None, context=self._context, max_alternatives=self.max_alternatives,
                                remote=True, unavailable=dict(REMOTE_UNAVAILABLE), problem=self.problem)

    # ---- generation ---------------------------------------------------------------------------------------------
    def _arguments(self, ids: list[int], params: SamplingParams, *, max_tokens: int,
                   vllm: dict[str, object] | None = None, **openai_arguments: object) -> dict[str, Any]:
        """completions.create()'s arguments: OpenAI's parameters, and vLLM's extensions in `extra_body`."""
        # top_k and repetition_penalty are sent even when off (top-k 0): else the model's generation_config.json
        # could set them on the server's side
        extra = dict(top_k=params.top_k, repetition_penalty=params.repetition_penalty, **(vllm or {}))
        return dict(model=self.name, prompt=ids, max_tokens=max_tokens, temperature=params.temperature,
                    top_p=params.top_p, **openai_arguments, extra_body=extra)

    def submit(self, request: TokenRequest) -> RemoteRequest:
        return RemoteRequest(self, request)

    def failure(self, error: Exception, request: TokenRequest) -> Exception:
        return fresh(error)

    # ---- probabilities ------------------------------------------------------------------------------------------
    def next_tokens(self, ids: list[int]) -> NextTokens:
        """The server's N likeliest next tokens after `ids` (N: its logprobs limit)."""
        arguments = self._arguments(ids, GREEDY, max_tokens=1, logprobs=self.max_alternatives,
                                    vllm=dict(return_tokens_as_token_ids=True))
        with self._tracked():
            response = self._client.complete(**arguments)
        (top,) = response["choices"][0]["logprobs"]["top_logprobs"]
        return NextTokens(top_tokens(top, self.tokenizer.encode))

    def prompt_logprobs(self, ids: list[int], *, top: int) -> ScoredIds:
        """One request with vLLM's prompt_logprobs, which reports each token's log-probability and rank."""
        arguments = self._arguments(ids, GREEDY, max_tokens=1, vllm=dict(prompt_logprobs=top))
        with self._tracked():
            response = self._client.complete(**arguments)
        entries = response["choices"][0].get("prompt_logprobs")
        if entries is None:
            raise BackendRequestError(f"{self._client.shown} does not score text (prompt_logprobs): "
                                      "a vLLM server does")
        logprobs, ranks, top_ids, top_logprobs = [], [], [], []
        for token, entry in zip(ids[1:], entries[1:], strict=True):
            entry = {int(t): v for t, v in entry.items()}
            logprobs.append(entry[token]["logprob"])
            ranks.append(int(entry[token]["rank"]))
            best = sorted(entry.items(), key=lambda item: item[1]["rank"])[:top]
            top_ids.append([i for i, _ in best])
            top_logprobs.append([v["logprob"] for _, v in best])
        n = len(ids) - 1
        return ScoredIds(torch.tensor(logprobs, dtype=torch.float64), torch.tensor(ranks, dtype=torch.long),
                         torch.tensor(top_ids, dtype=torch.long).reshape(n, top),
                         torch.tensor(top_logprobs, dtype=torch.float64).reshape(n, top))

    def attention(self, ids: list[int]) -> torch.Tensor:
        raise FeatureUnavailableError(f"Attention maps are not available in remote mode: {REMOTE_UNAVAILABLE[ATTENTION]}")

    def logit_lens(self, ids: list[int], *, top: int, target: int | None) -> LensIds:
        raise FeatureUnavailableError(f"The logit lens is not available in remote mode: {REMOTE_UNAVAILABLE[LENS]}")

    def close(self) -> None:
        self._client.close()


def fresh(error: Exception) -> Exception:
    """A new exception for each caller, of a kind the page shows as it is (these messages are written for people);
    anything else stays a RuntimeError, which the page reports as a generic failure (and the log in full)."""
    for kind in (BackendAuthError, BackendUnavailableError, BackendRequestError, ModelUnavailableError, ValueError):
        if isinstance(error, kind):
            return kind(str(error))
    return RuntimeError(str(error))


class _Tracked:
    """Records on the model whether its last call reached the server (the model panel shows it)."""

    def __init__(self, model: ServerBackend, ignore: Callable[[], bool] | None = None):
        self.model = model
        self.ignore = ignore  # True when a failure is this side's doing (it closed the stream)

    def __enter__(self) -> _Tracked:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> Literal[False]:
        if error is None or (self.ignore is not None and self.ignore()):
            self.model.problem = None
        elif isinstance(error, BackendUnavailableError):
            self.model.problem = str(error)
        return False


class RemoteRequest:
    """A generation on the server: one streaming request per sample, each read by a task on the client's event loop
    into `events` (the same TokenEvent lists as the local engine's Request). `cancel()` and `stop_sample(i)` cancel
    the tasks, and the deadline ends them from within; either way the stream closes and the server aborts."""

    def __init__(self, model: ServerBackend, request: TokenRequest):
        self.model = model
        self.request = request
        self.reported = model._stream_logprobs(request.params)  # likeliest tokens the server reports per token
        self.encode = model.tokenizer.encode  # read here: the loop must not wait on connect()
        self.events: queue.Queue[StreamItem] = queue.Queue()
        self._lock = threading.Lock()
        self._ended: dict[int, str] = {}  # sample -> why this side ended it ("cancelled", "stop", "timeout")
        self._tasks = [model._client.start(self._read(i, seed)) for i, seed in enumerate(request.seeds)]

    def cancel(self) -> None:
        for i, task in enumerate(self._tasks):
            if not task.done():  # a sample that ended by itself is over
                self._end(i, "cancelled")
                task.cancel()

    def stop_sample(self, index: int) -> None:
        self._end(index, "stop")
        self._tasks[index].cancel()

    def _end(self, index: int, why: str) -> None:
        """Sample `index` ended on this side: the caller hears it now (unless it stopped the sample itself)."""
        with self._lock:
            if index in self._ended:
                return  # over already
            self._ended[index] = why
        if why != "stop":
            self.events.put([TokenEvent(index, None, 0.0, why)])

    async def _read(self, index: int, seed: int) -> None:
        """Task body: stream sample `index` into `events` until it ends, its deadline passes, or it is cancelled."""
        r, m = self.request, self.model
        arguments = m._arguments(r.prompt_ids, r.params, max_tokens=r.max_new_tokens, seed=seed,
                                 logprobs=self.reported, vllm=dict(return_tokens_as_token_ids=True))
        try:
            # A read that ends because this side ended the sample says nothing about the server
            with m._tracked(ignore=lambda: index in self._ended):
                finished = await asyncio.wait_for(self._stream(index, arguments),
                                                  timeout=r.deadline - time.monotonic())
        except asyncio.TimeoutError:  # the deadline: the stream is closed already
            self._end(index, "timeout")
            return
        except asyncio.CancelledError:  # by cancel() or stop_sample(), which told the caller, or the client closing
            self._end(index, "cancelled")
            raise
        except Exception as e:  # noqa: BLE001 - every failure reaches the caller, as the engine's do
            if index not in self._ended:
                self.events.put(e)
            return
        if not finished and index not in self._ended:
            self.events.put(BackendUnavailableError(f"{m._client.shown} ended a text without saying why (no "
                                                    "finish_reason)"))

    async def _stream(self, index: int, arguments: dict[str, Any]) -> bool:
        """Put sample `index`'s tokens in `events` as they come; True once the server said why the text ended."""
        finished = False
        async with aclosing(self.model._client.stream(**arguments)) as chunks:
            async for chunk in chunks:
                for event in self._events(index, chunk):
                    finished = event.finish_reason is not None
                    self.events.put([event])
        return finished

    def _events(self, index: int, chunk: dict[str, Any]) -> list[TokenEvent]:
        """The TokenEvents in one streamed chunk (usually one token; the last one carries the finish reason)."""
        choice = chunk["choices"][0]
        finish = choice.get("finish_reason")
        finish = None if finish is None else FINISH_REASONS.get(finish, finish)
        logprobs = choice.get("logprobs") or {}
        tokens = logprobs.get("tokens") or []
        n, encode = self.reported, self.encode
        events = []
        for j, token in enumerate(tokens):
            top = top_tokens(logprobs["top_logprobs"][j] or {}, encode)
            chosen = token_id(token, encode)
            after = reported_sampling_probs(top[:n], self.request.params)
            alternatives = tuple((i, math.exp(lp), q) for (i, lp), q in
                                 zip(top[:self.request.alternatives], after, strict=False))
            last = j == len(tokens) - 1
            events.append(TokenEvent(index, chosen, probability(logprobs["token_logprobs"][j]),
                                     finish if last else None, rank_in(top, chosen, n), alternatives))
        if not tokens and finish is not None:
            events.append(TokenEvent(index, None, 0.0, finish))
        return events

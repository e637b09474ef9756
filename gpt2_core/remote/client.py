"""A client of an OpenAI-compatible completions server (tested against vLLM), over the `openai` package.

    client = CompletionsClient("http://localhost:8000")
    client.models()                                              # [{"id": "gpt2", "max_model_len": 1024, ...}]
    client.complete(model="gpt2", prompt=[50256], max_tokens=1, extra_body=dict(top_k=0))  # the answer as a dict
    client.start(coroutine)                                      # run it on the client's event loop

Every request runs on one asyncio event loop, in one thread per client: a streamed completion is read by a task there
(`stream`), and cancelling the task (Stop, a stop string, a deadline) closes its connection, which is how a request
is cancelled: vLLM aborts a request whose client disconnects. Arguments are completions.create()'s, vLLM's extensions
(top_k, prompt_logprobs, ...) in `extra_body`; answers are the server's JSON as dicts (vLLM's extra fields included).

Every failure becomes one of two exceptions with a message meant for the person at the page:
BackendUnavailableError (the server cannot be reached, stopped answering, or failed) and BackendRequestError (the
server refused this request, quoting its reason). Requests that change nothing and have not reached the server are
retried once on a failed connection (`models`, `complete`); a stream never is, since a retry could write a different
text for a caller who already saw the start of one (openai's own retries are off: they would resend anything).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable, Coroutine
from typing import Any, Protocol, TypeVar

import httpx
import openai

from gpt2_core.checkpoint import ModelUnavailableError, first_line

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 60.0  # between two bytes of an answer: a busy server queues a request, then streams steadily
RETRY_AFTER_S = 0.5
MAX_CONNECTIONS = 512  # one per streamed sample: 16 generations at once x 4 samples, for each page event kind
# openai reads these from OPENAI_ORG_ID / OPENAI_PROJECT_ID; they are OpenAI's business, not this server's
NO_OPENAI_HEADERS = {"OpenAI-Organization": openai.omit, "OpenAI-Project": openai.omit}
T = TypeVar("T")


class BackendUnavailableError(ModelUnavailableError):
    """The model server cannot be reached, went away in the middle of an answer, or failed on its side."""


class BackendRequestError(ValueError):
    """The model server refused the request (its reason is quoted)."""


class BackendAuthError(BackendUnavailableError):
    """The model server refused the app's key: a setup problem, for the host to fix (GPT2_BACKEND_API_KEY)."""


class CompletionsClient:
    def __init__(self, base_url: str, *, api_key: str | None = None, read_timeout_s: float = READ_TIMEOUT_S,
                 transport: httpx.AsyncBaseTransport | None = None, show_address: bool = True):
        self.base_url = base_url.rstrip("/").removesuffix("/v1")
        # How messages name the server: its address for the host's own page, not for a public one's visitors
        self.shown = f"the model server at {self.base_url}" if show_address else "the model server"
        http = httpx.AsyncClient(transport=transport, timeout=httpx.Timeout(read_timeout_s, connect=CONNECT_TIMEOUT_S),
                                 limits=httpx.Limits(max_connections=MAX_CONNECTIONS, max_keepalive_connections=32))
        # The key is always given, so openai never falls back to OPENAI_API_KEY (a key for OpenAI, not this server);
        # "EMPTY" is what vLLM's documentation passes to a server started without --api-key
        # (openai's hints name its own httpx2 fork and str header values; it takes httpx's client and `omit`, which
        # drops a default header, as its documentation shows: the recorded-answer tests run through both)
        self._api = openai.AsyncOpenAI(base_url=f"{self.base_url}/v1", api_key=api_key or "EMPTY", max_retries=0,
                                       default_headers=NO_OPENAI_HEADERS,  # type: ignore[arg-type]
                                       http_client=http)  # type: ignore[arg-type]
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=_run, args=(self.loop, self._api), name="remote-client", daemon=True)
        self._thread.start()
        # close(), or once the client is dropped: the loop stops, and its thread closes the connections and ends
        self._finalizer = weakref.finalize(self, self.loop.call_soon_threadsafe, self.loop.stop)

    def start(self, coroutine: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Run `coroutine` on this client's loop; the future's `cancel()` (from any thread) cancels it there."""
        if not self._finalizer.alive:
            coroutine.close()
            raise RuntimeError(f"the client of {self.shown} is closed")
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    def _wait(self, coroutine: Coroutine[Any, Any, T]) -> T:
        assert threading.current_thread() is not self._thread, "a blocking call on the loop it waits for"
        return self.start(coroutine).result()

    def models(self) -> list[dict[str, Any]]:
        """The server's models (/v1/models), each a dict with at least `id` (vLLM adds `max_model_len`)."""
        # The plain JSON (not models.list()), so that a server that is not OpenAI-compatible gets a clear message
        answer = self._wait(self._retried(lambda: self._api.get("/models", cast_to=object)))
        models: list[dict[str, Any]] = _json(answer, self.shown, "/v1/models").get("data", [])
        return models

    def complete(self, **arguments: Any) -> dict[str, Any]:
        """One non-streaming completion: completions.create(**arguments)'s answer as a dict."""
        answer = self._wait(self._retried(lambda: self._api.completions.create(**arguments)))
        return _json(answer, self.shown, "/v1/completions")

    async def stream(self, **arguments: Any) -> AsyncGenerator[dict[str, Any], None]:
        """A streaming completion's chunks, as dicts (on this client's loop). However the reading ends (the last
        chunk, an error, the reading task cancelled) the connection closes, and with it the request on the server."""
        try:
            chunks = await self._api.completions.create(**arguments, stream=True)
        except openai.APIError as e:
            raise self._error(e) from e
        async with chunks:
            try:
                async for chunk in chunks:
                    yield chunk.to_dict()
            except openai.APIConnectionError as e:  # the connection broke or timed out
                raise BackendUnavailableError(
                    f"{self.shown} stopped answering in the middle of the text ({_describe(e.__cause__ or e)}); "
                    "the text so far stays, and you can try again when it is back") from e
            except openai.APIError as e:  # an error after the stream began is sent as one more event
                raise BackendUnavailableError(f"{self.shown} failed in the middle of the answer: {e.message}") from e
            except ValueError as e:  # json.JSONDecodeError: its `doc` is the event's data
                raise BackendUnavailableError(f"{self.shown} sent something that is not JSON in the middle of the "
                                              f"answer: {getattr(e, 'doc', '')[:80]!r}") from e

    async def _retried(self, call: Callable[[], Awaitable[T]]) -> T:
        """call(), and once more if it could not connect (it never reached the server, so a retry repeats nothing)."""
        try:
            try:
                return await call()
            except openai.APIConnectionError as e:
                if not isinstance(e.__cause__, httpx.ConnectError):
                    raise
                log.info("cannot connect to %s (%s); trying once more", self.base_url, _describe(e.__cause__))
                await asyncio.sleep(RETRY_AFTER_S)
                return await call()
        except openai.APIError as e:
            raise self._error(e) from e

    def _error(self, error: openai.APIError) -> Exception:
        if isinstance(error, openai.APIStatusError):
            return _refusal(error.response, self.shown)
        if isinstance(error, openai.APITimeoutError):
            what = "did not answer in time"
        elif isinstance(error.__cause__, httpx.ConnectError):
            what = "cannot be reached"
        else:
            what = "failed"
        return BackendUnavailableError(f"{self.shown} {what} ({_describe(error.__cause__ or error)}); the page "
                                       "keeps working, and you can try again in a moment")

    def close(self) -> None:
        """Stop the loop: its thread cancels what still runs there, closes the connections and ends (not waited for)."""
        self._finalizer()


def _run(loop: asyncio.AbstractEventLoop, api: openai.AsyncOpenAI) -> None:
    """The client's thread: its loop, until close() stops it; then asyncio.run's clean-up (cancel what is left,
    finish async generators) and the connections closed."""
    asyncio.set_event_loop(loop)
    loop.run_forever()
    try:
        tasks = asyncio.all_tasks(loop)
        for task in tasks:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        loop.run_until_complete(api.close())
        loop.run_until_complete(loop.shutdown_asyncgens())
    finally:
        loop.close()


def _json(answer: object, shown: str, path: str) -> dict[str, Any]:
    """An answer as a dict; openai hands over a text that is not JSON as a str."""
    if isinstance(answer, openai.BaseModel):
        return answer.to_dict()
    if isinstance(answer, dict):
        return answer
    raise BackendUnavailableError(f"{shown} answered {path} with something that is not JSON: is this an "
                                  "OpenAI-compatible server?")


class _Answer(Protocol):
    """What _refusal reads of an HTTP response (httpx's, or openai's httpx2 fork's)."""

    @property
    def status_code(self) -> int: ...

    @property
    def text(self) -> str: ...

    @property
    def reason_phrase(self) -> str: ...

    def json(self) -> Any: ...


def _refusal(response: _Answer, shown: str) -> Exception:
    """The exception for an answer with an error status (4xx, 5xx), quoting the server's reason."""
    try:
        reason = _reason(response.json())
    except ValueError:
        lines = response.text.strip().splitlines()
        reason = lines[0] if lines else response.reason_phrase
    if response.status_code in (401, 403):
        return BackendAuthError(f"{shown} refused the app's key ({response.status_code}: {reason}); the host sets it "
                                "with the environment variable GPT2_BACKEND_API_KEY, the key the server was started "
                                "with (vLLM: --api-key)")
    if response.status_code in (400, 404, 422):
        return BackendRequestError(f"{shown} refused the request: {reason}")
    return BackendUnavailableError(f"{shown} answered {response.status_code} ({reason}); try again in a moment")


def _reason(body: object) -> str:
    error = body.get("error", body) if isinstance(body, dict) else body
    if isinstance(error, dict):
        return str(error.get("message") or error.get("detail") or error)
    return str(error)


def _describe(error: BaseException) -> str:
    return first_line(error) or type(error).__name__

"""A small client of an OpenAI-compatible completions server (tested against vLLM), over httpx.

Every failure becomes one of two exceptions with a message meant for the person at the page:
BackendUnavailableError (the server cannot be reached, stopped answering, or failed) and BackendRequestError (the
server refused this request, quoting its reason). Requests that change nothing and have not reached the server are
retried once on a failed connection (`models`, `complete`); a stream never is, since a retry could write a different
text for a caller who already saw the start of one.
"""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from gpt2_core.checkpoint import ModelUnavailableError, first_line

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 60.0  # between two bytes of an answer: a busy server queues a request, then streams steadily
RETRY_AFTER_S = 0.5
MAX_CONNECTIONS = 512  # one per streamed sample: 16 generations at once x 4 samples, for each page event kind


class BackendUnavailableError(ModelUnavailableError):
    """The model server cannot be reached, went away in the middle of an answer, or failed on its side."""


class BackendRequestError(ValueError):
    """The model server refused the request (its reason is quoted)."""


class BackendAuthError(BackendUnavailableError):
    """The model server refused the app's key: a setup problem, for the host to fix (GPT2_BACKEND_API_KEY)."""


class CompletionsClient:
    def __init__(self, base_url: str, *, api_key: str | None = None, read_timeout_s: float = READ_TIMEOUT_S,
                 transport: httpx.BaseTransport | None = None, show_address: bool = True):
        self.base_url = base_url.rstrip("/").removesuffix("/v1")
        # How messages name the server: its address for the host's own page, not for a public one's visitors
        self.shown = f"the model server at {self.base_url}" if show_address else "the model server"
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=self.base_url, headers=headers, transport=transport,
                                  timeout=httpx.Timeout(read_timeout_s, connect=CONNECT_TIMEOUT_S),
                                  limits=httpx.Limits(max_connections=MAX_CONNECTIONS, max_keepalive_connections=32))

    def models(self) -> list[dict]:
        """The server's models (/v1/models), each a dict with at least `id` (vLLM adds `max_model_len`)."""
        return self._send("GET", "/v1/models", retry=True).get("data", [])

    def complete(self, body: dict) -> dict:
        """One non-streaming completion (/v1/completions): the response as a dict."""
        return self._send("POST", "/v1/completions", json=body, retry=True)

    @contextmanager
    def stream(self, body: dict) -> Iterator[ChunkStream]:
        """A streaming completion: yields the server's chunks as a ChunkStream. Leaving the block (or the stream's
        `close()`, from any thread) closes the connection, which is how a request is cancelled: vLLM aborts a
        request whose client disconnects."""
        request = self._http.build_request("POST", "/v1/completions", json={**body, "stream": True})
        try:
            response = self._http.send(request, stream=True)
        except httpx.HTTPError as e:
            raise self._unavailable(e) from e
        try:
            _check(response, self.shown, streamed=True)
            yield ChunkStream(response, self.shown)
        finally:
            response.close()

    def _send(self, method: str, path: str, *, retry: bool, **kwargs) -> dict:
        for attempt in (1, 2):
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.ConnectError as e:
                if retry and attempt == 1:
                    log.info("cannot connect to %s (%s); trying once more", self.base_url, _describe(e))
                    time.sleep(RETRY_AFTER_S)
                    continue
                raise self._unavailable(e) from e
            except httpx.HTTPError as e:
                raise self._unavailable(e) from e
            _check(response, self.shown, streamed=False)
            try:
                return response.json()
            except ValueError as e:
                raise BackendUnavailableError(f"{self.shown} answered {path} with something "
                                              "that is not JSON: is this an OpenAI-compatible server?") from e
        raise AssertionError("unreachable")

    def _unavailable(self, error: httpx.HTTPError) -> BackendUnavailableError:
        if isinstance(error, httpx.TimeoutException):
            what = "did not answer in time"
        elif isinstance(error, httpx.ConnectError):
            what = "cannot be reached"
        else:
            what = "failed"
        return BackendUnavailableError(f"{self.shown} {what} ({_describe(error)}); the page "
                                       "keeps working, and you can try again in a moment")

    def close(self) -> None:
        self._http.close()


class ChunkStream:
    """The chunks of one streamed completion, as dicts; `close()` ends it (and the request on the server)."""

    def __init__(self, response: httpx.Response, shown: str):
        self._response = response
        self.shown = shown

    def close(self) -> None:
        """End the stream from any thread: shutting the socket down wakes a read blocked on it (closing alone
        would not until the server sent more) and tells the server at once."""
        stream = self._response.extensions.get("network_stream")
        sock = stream.get_extra_info("socket") if stream is not None else None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # closed already
        self._response.close()

    def __iter__(self) -> Iterator[dict]:
        try:
            for line in self._response.iter_lines():
                if not line.startswith("data:"):
                    continue  # blank separators, comments
                data = line[len("data:"):].strip()
                if data == "[DONE]":
                    return
                try:
                    chunk = json.loads(data)
                except ValueError as e:
                    raise BackendUnavailableError(f"{self.shown} sent something that is not JSON in the middle of the "
                                                  f"answer: {data[:80]!r}") from e
                if "error" in chunk:  # an error after the stream began is sent as one more event
                    raise BackendUnavailableError(f"{self.shown} failed in the middle of the "
                                                  f"answer: {_reason(chunk)}")
                yield chunk
        except httpx.HTTPError as e:
            raise BackendUnavailableError(
                f"{self.shown} stopped answering in the middle of the text ({_describe(e)}); "
                "the text so far stays, and you can try again when it is back") from e


def _check(response: httpx.Response, shown: str, *, streamed: bool) -> None:
    if response.status_code < 400:
        return
    if streamed:
        response.read()
    try:
        reason = _reason(response.json())
    except ValueError:
        reason = first_line(response.text) or response.reason_phrase
    if response.status_code in (401, 403):
        raise BackendAuthError(f"{shown} refused the app's key ({response.status_code}: {reason}); the host sets it "
                               "with the environment variable GPT2_BACKEND_API_KEY, the key the server was started "
                               "with (vLLM: --api-key)")
    if response.status_code in (400, 404, 422):
        raise BackendRequestError(f"{shown} refused the request: {reason}")
    raise BackendUnavailableError(f"{shown} answered {response.status_code} ({reason}); try again in a moment")


def _reason(body) -> str:
    error = body.get("error", body) if isinstance(body, dict) else body
    if isinstance(error, dict):
        return str(error.get("message") or error.get("detail") or error)
    return str(error)


def _describe(error: Exception) -> str:
    return first_line(error) or type(error).__name__

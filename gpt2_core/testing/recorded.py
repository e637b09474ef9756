"""Record a real model server's HTTP answers once, replay them in tests (httpx transports, for the client's async
httpx client; ReplayTransport answers a sync one too).

    transport = RecordingTransport()                       # around a real connection
    client = CompletionsClient(url, transport=transport)   # ... drive it ...
    transport.save(path)                                   # one JSON object per exchange
    client = CompletionsClient(url, transport=ReplayTransport.load(path))

An exchange is matched by method, path and JSON body, so a test gets exactly the answer the real server gave to the
very same request, streamed ones included (kept as the raw server-sent events). A request that was never recorded
fails the test with the body it sent, rather than getting an invented answer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx


def _key(method: str, path: str, body: bytes) -> str:
    parsed = json.loads(body) if body else None
    return json.dumps([method, path, parsed], sort_keys=True)


class RecordingTransport(httpx.AsyncBaseTransport):
    def __init__(self, inner: httpx.AsyncBaseTransport | None = None):
        self.inner = inner or httpx.AsyncHTTPTransport()
        self.exchanges: list[dict[str, Any]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        response = await self.inner.handle_async_request(request)
        content = await response.aread()  # a stream is recorded whole
        self.exchanges.append(dict(method=request.method, path=request.url.path,
                                   body=json.loads(body) if body else None, status=response.status_code,
                                   content_type=response.headers.get("content-type", ""),
                                   text=content.decode()))
        return httpx.Response(response.status_code, headers=response.headers, content=content, request=request)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(e, sort_keys=True) + "\n" for e in self.exchanges))


class ReplayTransport(httpx.BaseTransport, httpx.AsyncBaseTransport):
    def __init__(self, exchanges: list[dict[str, Any]]):
        self.answers: dict[str, dict[str, Any]] = {}
        for e in exchanges:
            body = json.dumps(e["body"]).encode() if e["body"] is not None else b""
            self.answers[_key(e["method"], e["path"], body)] = e
        self.requests: list[dict[str, Any]] = []  # what the client sent, in order

    @classmethod
    def load(cls, path: Path) -> ReplayTransport:
        return cls([json.loads(line) for line in path.read_text().splitlines() if line.strip()])

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = request.read()
        self.requests.append(dict(method=request.method, path=request.url.path,
                                  body=json.loads(body) if body else None))
        answer = self.answers.get(_key(request.method, request.url.path, body))
        if answer is None:
            raise AssertionError(f"no recorded answer for {request.method} {request.url.path} {body.decode()}")
        return httpx.Response(answer["status"], headers={"content-type": answer["content_type"]},
                              content=answer["text"].encode(), request=request)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        return self.handle_request(request)

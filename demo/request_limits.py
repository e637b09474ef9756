"""What one request may send the server, and how many visitors' sessions it remembers.

Gradio keeps, for every session it has seen, a copy of the page's settings (about 0.5 MB for this page) with the last
value of each input, up to `state_session_capacity` sessions (10,000 by default: some 5 GB here). Every raw API call
is a session of its own, so a script sending 100 MB prompts would add 100 MB a call, kept for good, until the server
ran out of memory and ended for everyone. So:

- a request body larger than the page ever sends is refused before Gradio reads it (413, with a message the page's
  toast shows), uploads included (Gradio's `max_file_size` says the same for its upload route);
- Gradio remembers the last SESSIONS sessions (under 1 GB with their inputs), the least recently used going first.

The page's largest input is a prompt or text to score of 20,000 characters (longer ones are cut, or refused, by the
tabs), 80 KB as UTF-8 at most; where training is on, a training text of MAX_TEXT_CHARS characters.
"""

from __future__ import annotations

from urllib.parse import parse_qs

import orjson

from demo.i18n import choose_language, number, speaking, tr
from demo.train_tab import MAX_TEXT_CHARS

KiB, MiB = 1 << 10, 1 << 20
BODY_BYTES = 256 * KiB  # three times a 20,000-character prompt at UTF-8's 4 bytes a character, with the settings
TRAINING_BODY_BYTES = 4 * MAX_TEXT_CHARS + MiB  # a training text at 4 bytes a character (UTF-8's most), and the rest
SESSIONS = 1000  # a class is 30; a public Space's visitor who was idle while 1000 others came gets a fresh session
TOO_LARGE = ("This request is {size} KB, and this demo takes at most {limit} KB at once. A prompt keeps its last "  # i18n: key
             "20,000 characters anyway: send a shorter text.")  # i18n: key


def body_limit(training: bool) -> int:
    """The most bytes a request may send: the training text's size where training is on, else BODY_BYTES."""
    return TRAINING_BODY_BYTES if training else BODY_BYTES


class BodyLimit:
    """ASGI middleware: a request whose body is over `max_bytes` gets 413 before the app reads it. A body sent without
    a Content-Length (chunked) is counted as it comes: past the limit the app is told the client left, and whatever it
    answers to that is replaced by the 413."""

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers", [])).get(b"content-length", b"").decode("latin-1")
        if length.isdigit() and int(length) > self.max_bytes:
            return await self._refuse(scope, send, int(length))
        received, over, started = 0, False, False

        async def counted():
            nonlocal received, over
            if over:
                return {"type": "http.disconnect"}
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes and not started:
                over = True
                return {"type": "http.disconnect"}
            return message

        async def watched(message):
            nonlocal started
            if over:
                return  # the app's answer to a body it never got whole
            started = started or message["type"] == "http.response.start"
            await send(message)

        await self.app(scope, counted, watched)
        if over:
            await self._refuse(scope, send, received)

    async def _refuse(self, scope, send, size: int) -> None:
        query = {k: v[0] for k, v in parse_qs(scope.get("query_string", b"").decode("latin-1")).items()}
        accept = dict(scope.get("headers", [])).get(b"accept-language", b"").decode("latin-1")
        with speaking(choose_language(query, accept)):
            message = tr(TOO_LARGE, size=number(size / KiB, ",.0f"), limit=number(self.max_bytes / KiB, ",.0f"))
        # Gradio's page shows `detail` in its error toast; `error` is what its API answers carry
        body = orjson.dumps({"detail": message, "error": message})
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

"""The page's update budget: how often a streaming run (Generate's and /generate's, the Scale tab's) sends an update.

An update of the page costs the server about 10 ms of CPU, most of it in its one event loop (Gradio postprocesses
each of Generate's 19 outputs): a class of 30 on one server, each page updated 20 times a second, left that loop too
busy to pass the engine's tokens on, and a student waited 26 s for 150 tokens that the API gave in 10 (gpt2's shape,
2 cores; benchmarks/bench_class.py). So each run sends its updates at most every STREAM_INTERVAL_S alone, and all the
runs of the process together no more than UPDATES_PER_SECOND a second.

An update costs the page more: the browser redraws every token it shows (Gradio rebuilds each coloured text whole).
Four samples of 512 tokens, updated 20 times a second, kept chromium's main thread busy for 14.8 s of a 17.0 s run on
2 cores, and Stop could not be pressed (a new user's report; benchmarks/bench_page.py --samples 4). So a run showing
many tokens is also updated no more often than TOKENS_REDRAWN_PER_SECOND allows: 1.5 times a second at 2048 tokens,
12 at 250, and 20 up to 150.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

STREAM_INTERVAL_S = 0.05  # one run alone: an update at most this often (every token would flood slow links)
UPDATES_PER_SECOND = 20  # all the runs streaming at once, together
TOKENS_REDRAWN_PER_SECOND = 3000  # one page: the tokens its updates redraw in a second (a third of a slow CPU)

Update = TypeVar("Update")


class Streams:
    """How many runs are streaming now, in this process."""

    def __init__(self):
        self.count = 0
        self._lock = threading.Lock()  # each run streams from a worker thread of its own

    @contextmanager
    def streaming(self) -> Iterator[None]:
        with self._lock:
            self.count += 1
        try:
            yield
        finally:
            with self._lock:
                self.count -= 1


STREAMS = Streams()


def update_interval(streaming: int, alone: float | None = None, shown: int = 0) -> float:
    """Seconds between one run's updates while `streaming` runs stream at once and its page shows `shown` tokens:
    `alone` (STREAM_INTERVAL_S) for one alone, no more than UPDATES_PER_SECOND updates a second in all, and no more
    than TOKENS_REDRAWN_PER_SECOND tokens redrawn a second. With the 16 generations the Generate tab runs at once,
    each page still gets its new words every 0.8 s."""
    return max(STREAM_INTERVAL_S if alone is None else alone, streaming / UPDATES_PER_SECOND,
               shown / TOKENS_REDRAWN_PER_SECOND)


def paced(updates: Iterable[Update], last: Callable[[Update], bool], *, alone: float | None = None,
          shown: Callable[[Update], int] = lambda update: 0) -> Iterator[Update]:
    """The updates of one run, counted in STREAMS while it streams: the first, then at most one each
    `update_interval` (`shown`: the tokens the page shows with an update), and the `last` (each update holds the
    whole text so far, so a skipped one loses nothing). Closing this closes `updates` at once (a Stop ends the
    engine's work on it)."""
    source = iter(updates)
    try:
        with STREAMS.streaming():
            sent = -float("inf")
            for update in source:
                now = time.monotonic()
                if last(update) or now - sent >= update_interval(STREAMS.count, alone, shown(update)):
                    sent = now
                    yield update
    finally:
        close = getattr(source, "close", None)
        if close is not None:
            close()

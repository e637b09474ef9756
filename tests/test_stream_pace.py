"""How often a run sends its updates (demo/streams.py, for Generate and /generate in demo/generate_tab.py and the Scale
tab): every STREAM_INTERVAL_S alone, no more than UPDATES_PER_SECOND in all while many stream at once (a class on
one server: benchmarks/bench_class.py), and less often while a page shows many tokens (the browser redraws them all)."""

from __future__ import annotations

import math
import threading
import time
from contextlib import ExitStack

import pytest
from ui_helpers import slow_down

from demo.generate_tab import GENERATE_CONCURRENCY, stream_samples
from demo.models import AppModels, LazyFillMask, ModelHolder
from demo.streams import (
    STREAM_INTERVAL_S,
    STREAMS,
    TOKENS_REDRAWN_PER_SECOND,
    UPDATES_PER_SECOND,
    Streams,
    paced,
    update_interval,
)
from gpt2_core import Sample, SamplingParams

STEP_S = 0.02  # each decode step of the slowed model: 40 tokens take 0.8 s or more


def test_one_generation_alone_updates_every_interval_and_many_share_a_budget():
    assert update_interval(1) == STREAM_INTERVAL_S
    intervals = [update_interval(n) for n in range(1, GENERATE_CONCURRENCY + 1)]
    assert intervals == sorted(intervals) and min(intervals) >= STREAM_INTERVAL_S
    for n, interval in enumerate(intervals, start=1):  # the updates of all n together, per second
        assert n / interval <= max(UPDATES_PER_SECOND, 1 / STREAM_INTERVAL_S) * (1 + 1e-9)
    assert update_interval(GENERATE_CONCURRENCY) == pytest.approx(GENERATE_CONCURRENCY / UPDATES_PER_SECOND)
    assert update_interval(1, alone=0.1) == 0.1 and update_interval(GENERATE_CONCURRENCY, alone=0.1) == pytest.approx(
        GENERATE_CONCURRENCY / UPDATES_PER_SECOND), "a run that updates less often alone keeps to the shared budget"


def test_a_page_showing_many_tokens_is_updated_less_often():
    """Four samples of 512 tokens once kept the browser redrawing for 10.5 s of a 12 s run: Stop could not be pressed."""
    assert update_interval(1, shown=150) == STREAM_INTERVAL_S, "a sample of the default length: updated as before"
    assert update_interval(1, shown=4 * 520) == pytest.approx(4 * 520 / TOKENS_REDRAWN_PER_SECOND)
    assert 1 / update_interval(1, shown=4 * 520) <= 2, "four long samples: at most twice a second"
    shown = [0, 10, 100, 400, 1000, 2080]
    assert all(update_interval(1, shown=n) * TOKENS_REDRAWN_PER_SECOND >= n for n in shown)
    assert [update_interval(1, shown=n) for n in shown] == sorted(update_interval(1, shown=n) for n in shown)
    assert update_interval(GENERATE_CONCURRENCY, shown=100) == update_interval(GENERATE_CONCURRENCY), "the larger wait"


def test_paced_asks_each_update_how_many_tokens_it_shows():
    clock = iter(range(1000))  # a second passes for each update
    shown = {n: 1000 * n for n in range(8)}  # 1000 tokens more each second: the wait grows past a second
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("demo.streams.time.monotonic", lambda: float(next(clock)))
        sent = list(paced(range(8), last=lambda n: n == 7, shown=shown.get))
    assert sent[0] == 0 and sent[-1] == 7 and len(sent) < 8, sent  # some skipped: their pages would be too long
    waits = [b - a for a, b in zip(sent, sent[1:-1])]
    assert all(wait * TOKENS_REDRAWN_PER_SECOND >= shown[b] for wait, b in zip(waits, sent[1:-1])), sent


def test_paced_sends_the_first_and_the_last_update_and_closes_its_source_when_closed():
    closed = []

    def source():
        try:
            yield from range(1000)
        finally:
            closed.append(True)

    sent = list(paced(source(), last=lambda n: n == 999, alone=math.inf))
    assert sent == [0, 999] and closed == [True] and STREAMS.count == 0
    run = paced(source(), last=lambda n: False, alone=0.0)
    assert next(run) == 0 and STREAMS.count == 1, "a run streaming counts in the budget"
    run.close()  # as Gradio closes a stopped generation
    assert closed == [True, True] and STREAMS.count == 0


def test_streams_are_counted_from_many_threads_and_let_go_after_an_error():
    streams = Streams()
    most = []
    start = threading.Barrier(8)

    def stream():
        start.wait()
        for _ in range(500):
            with streams.streaming():
                most.append(streams.count)

    threads = [threading.Thread(target=stream) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert streams.count == 0 and 1 <= max(most) <= 8
    with pytest.raises(RuntimeError), streams.streaming():
        assert streams.count == 1
        raise RuntimeError("a generation failed")
    assert streams.count == 0


@pytest.fixture(scope="module")
def models(tiny_checkpoint):
    from gpt2_core import load_model

    lm = slow_down(load_model(tiny_checkpoint, device="cpu", dtype="fp32"), STEP_S)  # its own: the slowing stays
    yield AppModels(ModelHolder(lambda s: lm, "tiny"), LazyFillMask(lambda s: None, "bert"), choices=[])
    lm.close()


def updates(models) -> tuple[list[list[Sample]], float]:
    """(each update's samples, seconds) of a 40-token generation, as the page and /generate stream it."""
    start = time.monotonic()
    params = SamplingParams(max_new_tokens=40, temperature=0.8, top_k=40, seed=7)
    sent = [samples for _, samples in stream_samples(models, None, "Once upon a time", params, deadline_s=60)]
    return sent, time.monotonic() - start


def test_a_generation_updates_less_often_while_a_full_house_streams(models):
    """Alone, 40 tokens at 20 ms or more each send an update every STREAM_INTERVAL_S; with GENERATE_CONCURRENCY - 1
    others streaming (held open here), every update_interval(GENERATE_CONCURRENCY). Either way the first update
    comes with the first token and the last with the whole text."""
    alone, seconds = updates(models)
    assert len(alone) >= 5 and len(alone) <= 2 + seconds / STREAM_INTERVAL_S, (len(alone), seconds)
    with ExitStack() as others:
        for _ in range(GENERATE_CONCURRENCY - 1):
            others.enter_context(STREAMS.streaming())
        crowded, seconds = updates(models)
    interval = GENERATE_CONCURRENCY / UPDATES_PER_SECOND  # 0.8 s
    # the first update, one each interval after it, the last
    assert len(crowded) <= 2 + math.floor(seconds / interval), (len(crowded), seconds, interval)
    assert len(crowded) < len(alone)
    for sent in (alone, crowded):
        assert len(sent[0][0].token_ids) == 1  # at the first token
        assert len(sent[-1][0].token_ids) == 40 and sent[-1][0].finish_reason == "length"
    assert STREAMS.count == 0

"""Abandoned work ends: Stop, a dropped client and the deadline stop a generation within a step or two, counted in
engine steps (lm.engine.steps counts decode steps), and the freed capacity goes to the next request at once.

A closed browser tab is the dropped client seen from a browser; it is tested in test_browser_limits.py.
"""

from __future__ import annotations

import re
import threading
import time

import httpx
import pytest
from gradio_client import Client
from gradio_client.utils import Status
from ui_helpers import slow_down, wait_until

from demo.generate_tab import GENERATE_CONCURRENCY
from demo.streams import STREAMS
from gpt2_core import load_model

pytest_plugins = ["fixtures_ui"]

STEPS_AFTER_CANCEL = 2  # the step running when the cancel came, and at most one more
STEPS_AFTER_DROP = 10  # plus Gradio noticing the closed connection (at its next message, every ~50 ms here)


def connect(url: str) -> Client:
    return Client(url, verbose=False, analytics_enabled=False, download_files=False)


def tokens_generated(stats: str) -> int:
    return int(re.search(r"Tokens generated\*\* (\d+)", stats).group(1))


def test_a_cancelled_request_hands_its_row_to_the_waiting_one_within_a_step(tiny_checkpoint):
    lm = slow_down(load_model(tiny_checkpoint, device="cpu", dtype="fp32", max_batch=1), 0.01)  # one row: the next must wait
    steps_at_prefill: list[int] = []
    prefill = lm.model.prefill
    lm.model.prefill = lambda *a, **k: steps_at_prefill.append(lm.engine.steps) or prefill(*a, **k)
    try:
        first = lm.stream("First", max_new_tokens=1000, seed=1)
        next(first)
        second = threading.Thread(target=lm.generate, args=("Second",), kwargs=dict(max_new_tokens=3, seed=1))
        second.start()
        wait_until(lambda: lm.engine.waiting == 1, message="the second request to be submitted")
        steps = lm.engine.steps
        wait_until(lambda: lm.engine.steps >= steps + 3, message="three more steps of the first request")
        assert len(steps_at_prefill) == 1, "the second request should wait while the only row is taken"
        steps_at_cancel = lm.engine.steps
        first.close()  # what Stop, a closed tab and a dropped client come down to
        second.join(timeout=10)
        assert len(steps_at_prefill) == 2 and steps_at_prefill[1] - steps_at_cancel <= STEPS_AFTER_CANCEL
        assert lm.engine.running == 0
    finally:
        lm.close()


def test_stop_over_the_api_ends_the_work_within_a_step_or_two(app):
    client = connect(app.url)
    engine = app.models.gpt2.current.engine
    job = client.submit("Stop me", max_new_tokens=1000, seed=1, api_name="/generate")
    wait_until(lambda: len(job.outputs()) >= 2, message="streaming to start")
    steps_at_cancel = engine.steps
    job.cancel()
    wait_until(lambda: app.models.gpt2.in_flight() == 0 and engine.running == 0, timeout=5,
               message="the engine to drop the stopped request")
    assert engine.steps - steps_at_cancel <= STEPS_AFTER_DROP
    wait_until(lambda: STREAMS.count == 0, timeout=5, message="the stopped stream to leave the update budget")


def test_a_dropped_client_ends_the_work_within_a_few_steps(app):
    """A raw client that joins the queue, reads a few streamed updates and hangs up, as a closed laptop does."""
    engine = app.models.gpt2.current.engine
    config = httpx.get(app.url.rstrip("/") + "/config").json()
    fn_index = next(d["id"] for d in config["dependencies"] if d.get("api_name") == "generate")
    api = app.url.rstrip("/") + "/gradio_api/queue"
    session = "dropped-client"
    httpx.post(f"{api}/join", json={"data": ["Hang up", 1000, 0.8, 40, 1.0, 1.0, 1, 1], "fn_index": fn_index,
                                    "session_hash": session}).raise_for_status()
    with httpx.stream("GET", f"{api}/data", params={"session_hash": session}, timeout=30) as stream:
        updates = 0
        for line in stream.iter_lines():
            updates += '"process_generating"' in line
            if updates >= 3:
                break
        steps_at_drop = engine.steps
    wait_until(lambda: app.models.gpt2.in_flight() == 0 and engine.running == 0, timeout=5,
               message="the engine to drop the abandoned request")
    assert engine.steps - steps_at_drop <= STEPS_AFTER_DROP
    wait_until(lambda: STREAMS.count == 0, timeout=5, message="the abandoned stream to leave the update budget")


@pytest.mark.slow
def test_stopping_one_of_a_full_house_lets_the_waiting_request_in(app):
    crowd = [connect(app.url) for _ in range(GENERATE_CONCURRENCY + 1)]
    long_jobs = [c.submit("Long", max_new_tokens=1000, seed=i, api_name="/generate")
                 for i, c in enumerate(crowd[:-1])]  # 1000 tokens at 20 ms: 20 s each
    try:
        wait_until(lambda: app.models.gpt2.in_flight() == GENERATE_CONCURRENCY, timeout=20,
                   message="every generation slot to be taken")
        waiting = crowd[-1].submit("Short", max_new_tokens=4, seed=1, api_name="/generate")
        wait_until(lambda: waiting.status().code == Status.IN_QUEUE, message="the last request to wait")
        stopped_at = time.monotonic()
        long_jobs[0].cancel()
        result = waiting.result(timeout=10)
        assert "done" in result[4] and time.monotonic() - stopped_at < 5  # long before any long job ends
        assert not any(job.done() for job in long_jobs[1:])
    finally:
        for job in long_jobs:
            job.cancel()
    wait_until(lambda: app.models.gpt2.in_flight() == 0, timeout=10, message="the long jobs to be stopped")


def test_a_generation_past_the_apps_deadline_is_stopped_and_says_so(limits_app):
    deadline = 2.0  # fixtures_ui.LIMITS
    start = time.monotonic()
    result = connect(limits_app.url).predict("Go on and on", max_new_tokens=1000, seed=1, api_name="/generate")
    elapsed = time.monotonic() - start
    assert "done: took too long and was stopped" in result[4]
    assert 0 < tokens_generated(result[4]) < 500  # all 1000 tokens at 20 ms would take 20 s
    assert deadline <= elapsed < deadline + 3


@pytest.mark.slow
def test_a_script_that_leaves_a_stream_early_exits_cleanly():
    """Python's exit went on while the engine thread was inside a torch kernel, and the process aborted ("terminate
    called without an active exception", exit code 134) in 2 of 3 runs of this script: its samples were still
    being written when it reached its last line."""
    import subprocess
    import sys

    script = ("from gpt2_core import load_model\n"
              "lm = load_model('mini-gpt2')\n"
              "for i, update in enumerate(lm.stream('KING.', max_new_tokens=1000, num_samples=4)):\n"
              "    if i == 5:\n"
              "        break\n"
              "print('done')\n")
    for _ in range(4):
        run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
        assert (run.returncode, run.stdout) == (0, "done\n"), run.stderr[-500:]

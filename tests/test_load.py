"""A classroom at once, through gradio_client on 127.0.0.1: every client answered, the same seed gives the same text
under load, a full queue tells the next client the demo is busy, and a model switch mid-load breaks no request.

The `limits_app` (fixtures_ui.py) has a queue of 2 and a `gate` that holds its engine inside a decode step, so the
test can fill all 16 generation slots and the queue deterministically. Gradio counts a request as queued from its
arrival until a slot takes it, so a burst of simultaneous clicks needs a queue as large as the burst (the app's
default, 64, covers a class of 30 pressing Generate together). benchmarks/load.py measures the same at scale.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from gradio_client import Client
from gradio_client.utils import QueueError, Status
from ui_helpers import wait_until

from demo.generate_tab import GENERATE_CONCURRENCY

pytest_plugins = ["fixtures_ui"]

DONE = "\u00b7 done: reached the token limit"


def clients(url: str, n: int) -> list[Client]:
    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(lambda _: Client(url, verbose=False, analytics_enabled=False, download_files=False),
                             range(n)))


@pytest.mark.heavy
def test_thirty_clients_at_once_all_get_the_same_complete_answer_for_one_seed(app):
    crowd = clients(app.url, 30)
    with ThreadPoolExecutor(len(crowd)) as pool:
        results = list(pool.map(lambda c: c.predict("The whole class asks", max_new_tokens=16, seed=7,
                                                    api_name="/generate"), crowd))
    assert all(f"**Tokens generated** 16 {DONE}" in r[4] for r in results)
    assert len({r[0] for r in results}) == 1, "one seed, one text, however busy the engine"
    with app.models.gpt2.use() as lm:
        assert results[0][0] == lm.generate("The whole class asks", max_new_tokens=16, seed=7)[0].text


def test_beyond_the_queue_a_client_is_told_the_demo_is_busy_and_the_others_finish(limits_app, gate):
    queue_size = 2  # fixtures_ui.LIMITS
    crowd = clients(limits_app.url, GENERATE_CONCURRENCY + queue_size + 1)
    gate.close()
    try:
        running = []
        for i, c in enumerate(crowd[:GENERATE_CONCURRENCY]):  # one by one: the queue holds a burst's arrivals too
            running.append(c.submit("Busy", max_new_tokens=4, seed=1, api_name="/generate"))
            wait_until(lambda i=i: limits_app.models.gpt2.in_flight() == i + 1, timeout=10,
                       message=f"generation slot {i + 1} to be taken")
        waiting = [c.submit("Busy", max_new_tokens=4, seed=1, api_name="/generate") for c in crowd[-3:-1]]
        wait_until(lambda: all(j.status().code == Status.IN_QUEUE for j in waiting), timeout=10,
                   message="two requests to wait in the queue")
        with pytest.raises(QueueError, match="Queue is full"):
            crowd[-1].predict("One too many", max_new_tokens=4, api_name="/generate")
    finally:
        gate.open()
    results = [job.result(timeout=60) for job in running + waiting]
    assert all("\u00b7 done" in r[4] for r in results)  # finished (or stopped by the deadline), never an error
    assert crowd[-1].predict("Now there is room", max_new_tokens=4, api_name="/generate")[0]


def test_switching_the_model_under_load_breaks_no_request(app, tmp_path, tiny_checkpoint):
    from conftest import random_hf_model, save_layout

    other = save_layout(random_hf_model(seed=1), tmp_path / "other", "hub")
    holder = app.models.gpt2
    before = holder.current
    crowd = clients(app.url, 10)
    try:
        with ThreadPoolExecutor(len(crowd)) as pool:
            jobs = [pool.submit(c.predict, "Switch now", max_new_tokens=30, seed=1, api_name="/generate")
                    for c in crowd]
            wait_until(lambda: holder.in_flight() >= 5, timeout=20, message="requests to be running")
            holder.switch(str(other))
            results = [job.result(timeout=60) for job in jobs]
        assert holder.current is not before
        assert all(f"**Tokens generated** 30 {DONE}" in r[4] for r in results)
        with holder.use() as new:
            assert crowd[0].predict("After", max_new_tokens=4, seed=2, api_name="/generate")[0] == \
                new.generate("After", max_new_tokens=4, seed=2)[0].text
    finally:
        holder.switch(str(tiny_checkpoint))  # the shared app serves the other tests with its own model again

"""An idle CPU engine ends its thread (engine.IDLE_S), and with it the OpenMP worker pool the thread kept; the next
request starts another. A model that is open but not generating (a visitor's own model, kept for their page) must not
slow the one that is (README, Performance)."""

import os
import random
import subprocess
import sys
import threading
import time

import pytest
import torch
from ui_helpers import wait_until

import gpt2_core.generate.engine as engine_module
from gpt2_core import load_model


@pytest.fixture
def open_model(tiny_checkpoint, monkeypatch):
    """A tiny fp32 model whose engine threads end after `idle_s` idle (read when each thread starts)."""
    opened = []

    def open_(idle_s: float):
        monkeypatch.setattr(engine_module, "IDLE_S", idle_s)
        opened.append(load_model(tiny_checkpoint, device="cpu", dtype="fp32"))
        return opened[-1]

    yield open_
    for lm in opened:
        lm.close()


def test_an_idle_engine_ends_its_thread_and_the_next_request_starts_one_with_the_same_numbers(open_model):
    lm = open_model(1.0)
    (first,) = lm.generate("Hello there", max_new_tokens=6, seed=3)
    thread = lm.engine._thread
    assert thread is not None and thread.is_alive(), "the engine thread ended before its idle time"
    wait_until(lambda: not thread.is_alive(), timeout=10, message="the idle engine's thread to end")
    assert lm.engine._thread is None
    (again,) = lm.generate("Hello there", max_new_tokens=6, seed=3)
    assert lm.engine._thread not in (None, thread), "the next request did not start a thread of its own"
    assert again.token_ids == first.token_ids
    torch.testing.assert_close(torch.tensor(again.token_probs), torch.tensor(first.token_probs), rtol=1e-5, atol=1e-7)


def test_requests_that_come_as_the_thread_ends_are_all_served(open_model):
    """The thread ends only if nothing came while its wait timed out: requests at about the idle time all finish."""
    lm = open_model(0.003)
    done: list[int] = []

    def requests() -> None:
        pause = random.Random(0)
        for seed in range(25):
            lm.generate("Hi", max_new_tokens=2, seed=seed)
            done.append(seed)
            time.sleep(pause.uniform(0.0, 0.006))

    worker = threading.Thread(target=requests, daemon=True)
    worker.start()
    worker.join(timeout=120)
    assert len(done) == 25, f"a request was left waiting after {len(done)} were served"


POOL_PROBE = """
import os, sys, time
import gpt2_core.generate.engine as engine_module
engine_module.IDLE_S = float(sys.argv[2])
from gpt2_core import load_model
threads = lambda: len(os.listdir("/proc/self/task"))
def settled():
    counts = [threads()]
    while len(counts) < 5 or len(set(counts[-5:])) > 1:  # exited threads leave the list late
        time.sleep(0.05)
        counts.append(threads())
    return counts[-1]
lm = load_model(sys.argv[1], device="cpu", dtype="fp32")
lm.prepare_prompt("Hello there", room=1)  # the tokenizer's own worker threads (Rust), which stay, start now
before = settled()
lm.generate("Hello there", max_new_tokens=4, seed=0)
time.sleep(engine_module.IDLE_S + 0.5 if engine_module.IDLE_S < 60 else 0.5)
print(settled() - before)
lm.close()
"""


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir("/proc/self/task") or torch.get_num_threads() < 2
                    or "OpenMP" not in torch.__config__.parallel_info(),
                    reason="needs Linux's /proc, 2 or more PyTorch threads and its OpenMP build to count pool threads")
def test_an_open_model_that_is_not_generating_keeps_no_threads(tiny_checkpoint):
    """Probed in a fresh interpreter: after a request and the idle time, the process has the threads it had before it
    (the engine's thread and its OpenMP pool gone); an engine that never ends its thread, as before, kept both (the
    thread and its pool's workers: PyTorch's thread count in all)."""
    def left(idle_s: float) -> int:
        out = subprocess.run([sys.executable, "-c", POOL_PROBE, str(tiny_checkpoint), str(idle_s)],
                             capture_output=True, text=True, timeout=300, check=True).stdout.split()
        return int(out[-1])

    assert left(0.2) == 0, "the idle engine left threads behind"
    assert left(1e9) >= torch.get_num_threads(), "the probe cannot tell: a live engine thread should keep its pool"

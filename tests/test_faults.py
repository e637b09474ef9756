"""Faults stay inside the request they hit: an out-of-memory error (simulated: the model's prefill or decode raises
torch.OutOfMemoryError once) ends that request with a friendly message, frees its rows, and the model serves on.
"""

from __future__ import annotations

import pytest
import torch
from gradio_client import Client
from gradio_client.exceptions import AppError
from ui_helpers import slow_down

from demo.errors import GENERIC_MESSAGE
from gpt2_core import load_model
from gpt2_core.lm import DeviceOutOfMemoryError

pytest_plugins = ["fixtures_ui"]


def fail_once(lm, step: str, *, when=lambda *args: True):
    """Make `lm`'s "prefill" (its model's) or "decode" step (its engine's) raise torch.OutOfMemoryError on its first
    call for which `when(*args)` holds."""
    original = lm.model.prefill if step == "prefill" else lm.engine.decode
    state = {"failed": False}

    def flaky(*args, **kwargs):
        if not state["failed"] and when(*args):
            state["failed"] = True
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (simulated)")
        return original(*args, **kwargs)

    if step == "prefill":
        lm.model.prefill = flaky
    else:
        lm.engine.use(flaky, lm.engine.decoding)
    return state


@pytest.fixture
def slow_lm(tiny_checkpoint):
    lm = slow_down(load_model(tiny_checkpoint, device="cpu", dtype="fp32"), 0.005)  # others are still running when one fails
    yield lm
    lm.close()


def test_out_of_memory_in_one_prefill_ends_only_that_request(slow_lm):
    running = slow_lm.stream("I was here first", max_new_tokens=60, seed=1)
    next(running)
    state = fail_once(slow_lm, "prefill")
    with pytest.raises(DeviceOutOfMemoryError, match=r"ran out of memory for this request .*try fewer samples"):
        slow_lm.generate("I ask for too much", max_new_tokens=20, num_samples=3)
    assert state["failed"]
    rest = list(running)
    assert rest[-1][0].finish_reason == "length" and len(rest[-1][0].token_ids) == 60
    assert slow_lm.engine.running == 0
    assert slow_lm.generate("And then", max_new_tokens=3, seed=1)[0].token_ids


def test_out_of_memory_in_a_decode_step_ends_that_batch_and_serving_goes_on(slow_lm):
    fail_once(slow_lm, "decode")
    with pytest.raises(DeviceOutOfMemoryError):
        slow_lm.generate("Unlucky", max_new_tokens=20)
    assert slow_lm.engine.running == 0  # its rows were freed
    (sample,) = slow_lm.generate("Lucky", max_new_tokens=20, seed=1)
    assert sample.finish_reason == "length" and len(sample.token_ids) == 20


def test_out_of_memory_in_a_shared_decode_step_spares_the_requests_already_running(slow_lm):
    running = slow_lm.stream("I was here first", max_new_tokens=60, seed=1)
    next(running)
    fail_once(slow_lm, "decode", when=lambda idx, *rest: idx.shape[0] > 1)  # the step the newcomer joined
    with pytest.raises(DeviceOutOfMemoryError):
        slow_lm.generate("I joined and the step ran out of memory", max_new_tokens=20)
    rest = list(running)
    assert rest[-1][0].finish_reason == "length" and len(rest[-1][0].token_ids) == 60


def test_out_of_memory_reaches_the_page_as_a_friendly_message(app, monkeypatch):
    client = Client(app.url, verbose=False, analytics_enabled=False, download_files=False)
    lm = app.models.gpt2.current
    monkeypatch.setattr(lm.model, "prefill", lm.model.prefill)  # so that monkeypatch puts the real one back after
    state = fail_once(lm, "prefill")
    with pytest.raises(AppError) as error:
        client.predict("Hello", max_new_tokens=4, api_name="/generate")
    message = str(error.value)
    assert state["failed"] and "short of memory" in message and "try fewer samples or tokens" in message
    assert GENERIC_MESSAGE not in message and "Traceback" not in message and "20.00 GiB" not in message
    assert lm.engine.running == 0
    assert client.predict("Hello", max_new_tokens=4, seed=1, api_name="/generate")[0]

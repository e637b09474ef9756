"""Fixtures for the app's tests: a tiny BERT checkpoint and the demo served on tiny checkpoints.

Test modules use them with `pytest_plugins = ["fixtures_ui"]`. The GPT-2 checkpoint is conftest's `tiny_checkpoint`
(random weights, the genuine GPT-2 tokenizer); the helpers behind these fixtures are in ui_helpers.py.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from ui_helpers import RunningApp, launched_app, save_tiny_bert, slow_down

STREAM_DELAY_S = 0.02  # the shared app's GPT-2 waits this long per token, so streaming and Stop can be watched


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    return save_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def app(tiny_checkpoint, tiny_bert) -> Iterator[RunningApp]:
    """One served app for the API and browser tests. With UPDATE_SCREENSHOTS=1 it serves the bundled mini model, so
    that the README's screenshots show words from a trained model (the tests themselves hold for either)."""
    gpt2 = "mini-gpt2" if os.environ.get("UPDATE_SCREENSHOTS") == "1" else tiny_checkpoint  # named as users see it
    with launched_app(gpt2, tiny_bert, delay=STREAM_DELAY_S) as running:
        yield running


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test item, so a browser fixture can save a screenshot when its test failed."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


LIMITS = dict(queue_size=2, deadline_s=2.0)  # the limits app: a tiny queue and a short deadline, to be reached in tests


class Gate:
    """Holds the engine inside its next decode step while closed, so tests can fill every slot and the queue."""

    def __init__(self):
        self._open = threading.Event()
        self._open.set()

    def close(self) -> None:
        self._open.clear()

    def open(self) -> None:
        self._open.set()

    def wrap(self, lm):
        decode = lm.engine.decode

        def gated_decode(*args, **kwargs):
            self._open.wait()
            return decode(*args, **kwargs)

        lm.engine.use(gated_decode, lm.engine.decoding)
        return lm


@pytest.fixture(scope="session")
def gate() -> Gate:
    return Gate()


@pytest.fixture(scope="session")
def limits_app(tiny_checkpoint, tiny_bert, gate) -> Iterator[RunningApp]:
    """The demo with LIMITS, a GPT-2 slowed like `app`'s and held by `gate` when a test closes it."""
    from gpt2_core import load_model

    def load_gated(source, **kwargs):
        return gate.wrap(slow_down(load_model(source, **kwargs), STREAM_DELAY_S))

    with launched_app(tiny_checkpoint, tiny_bert, load_gpt2=load_gated, **LIMITS) as running:
        try:
            yield running
        finally:
            gate.open()  # an engine held in its step would keep the app from closing

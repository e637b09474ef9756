"""Fixtures for the app's tests: a tiny BERT checkpoint and the demo served on tiny checkpoints.

Test modules use them with `pytest_plugins = ["fixtures_ui"]`. The GPT-2 checkpoint is conftest's `tiny_checkpoint`
(random weights, the genuine GPT-2 tokenizer); the helpers behind these fixtures are in ui_helpers.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from ui_helpers import RunningApp, launched_app, save_tiny_bert

STREAM_DELAY_S = 0.02  # the shared app's GPT-2 waits this long per token, so streaming and Stop can be watched


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    return save_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def app(tiny_checkpoint, tiny_bert) -> Iterator[RunningApp]:
    """One served app for the API and browser tests."""
    with launched_app(tiny_checkpoint, tiny_bert, delay=STREAM_DELAY_S) as running:
        yield running


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test item, so a browser fixture can save a screenshot when its test failed."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report

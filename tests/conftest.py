"""Shared fixtures: GPT-2 checkpoints with random weights built in tmp_path in the real file layouts (gpt2_core.testing).

The Hub is out of reach in CI, so the tests build their own checkpoints, with the genuine GPT-2 tokenizer files.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

# What the suite must leave as it found it: the temp directory. The caches that libraries keep there by default
# (Gradio's uploads and downloads, Inductor's compiled kernels) go into one folder of the session's instead, set
# before gradio or torch read these variables (they read them at import), and removed at the end; what pytest keeps
# of tmp_path (pytest-of-<user>, its own retention policy) is pytest's and not counted.
TEMP_DIR = Path(tempfile.gettempdir())
TEMP_BEFORE = {p.name for p in TEMP_DIR.iterdir()}
SESSION_CACHES = Path(tempfile.mkdtemp(prefix="gpt2-playground-tests-caches-"))
os.environ.setdefault("GRADIO_TEMP_DIR", str(SESSION_CACHES / "gradio"))
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(SESSION_CACHES / "inductor"))

from gpt2_core import testing  # noqa: E402 (after the cache variables above)
from gpt2_core.testing import add_tokenizer, gpt2_tokenizer_files, save_layout  # noqa: E402, F401 (shared with test modules)

# Real vocabulary and context, a small trunk; a large init so that greedy paths vary.
TINY = dict(n_layer=2, n_head=4, n_embd=64, initializer_range=0.3)


def random_hf_model(seed: int = 0, **sizes):
    return testing.random_hf_model(seed, **{**TINY, **sizes})


@pytest.fixture(scope="session")
def hf_model():
    return random_hf_model()


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, hf_model) -> Path:
    return save_layout(hf_model, tmp_path_factory.mktemp("tiny-gpt2"), "hub")


@pytest.fixture(scope="session")
def lm(tiny_checkpoint):
    from gpt2_core import load_model

    model = load_model(tiny_checkpoint, device="cpu", dtype="fp32")
    yield model
    model.close()


@pytest.fixture(autouse=True)
def shared_lm_left_open(request):
    """The session's `lm` serves every test that asks for it: a test that closed it would fail the tests after it
    (in the order they happen to run), so the test that did is named here instead."""
    yield
    lm = request.node.funcargs.get("lm")  # set up for this test (a failed set-up is reported once, by itself)
    assert lm is None or not lm.engine.closed, "this test closed the suite's shared `lm`"


@pytest.fixture(scope="session", autouse=True)
def temp_directory_left_as_found():
    """Every app, training run and download of the session cleaned up after itself (set up first, so checked last)."""
    yield
    shutil.rmtree(SESSION_CACHES, ignore_errors=True)
    # Some of Inductor's caches ignore TORCHINDUCTOR_CACHE_DIR (torch/_inductor/cache.py uses the default folder,
    # torchinductor_<user>): the suite removes that folder too, if it was not there before
    for inductor in TEMP_DIR.glob("torchinductor_*"):
        if inductor.name not in TEMP_BEFORE:
            shutil.rmtree(inductor, ignore_errors=True)
    left = {p.name for p in TEMP_DIR.iterdir()} - TEMP_BEFORE
    left = {name for name in left if not name.startswith("pytest-of-")}
    assert not left, f"the tests left these in {TEMP_DIR}: {sorted(left)}"


OPT_IN = {
    "vllm": "the live vLLM suite is opt-in: `bash tests/vllm/run` sets vLLM up and runs it (pytest -m vllm)",
    "heavy": "heavy (compiles, training runs, a 30-client load): `python -m pytest -m heavy` runs them (CI does)",
    "other_browsers": "Firefox and WebKit are opt-in: `xvfb-run -a python -m pytest -m other_browsers` (CI runs it)",
    "slow": "slow (the browser suite beyond its smoke tests, real processes, training): `python -m pytest -m slow` "
            "runs them (CI does)",
}
OPTED_OUT = pytest.StashKey[str]()  # why a test is not run this time


def is_smoke(item) -> bool:
    """A browser test marked `smoke`; @pytest.mark.smoke("390x844") marks only the parametrizations whose id holds
    "390x844"."""
    mark = item.get_closest_marker("smoke")
    if mark is None:
        return False
    callspec = getattr(item, "callspec", None)
    return not mark.args or (callspec is not None and mark.args[0] in callspec.id)


@pytest.hookimpl(tryfirst=True)  # before -m selects by marker, so that `-m slow` sees the browser tests made slow here
def pytest_collection_modifyitems(config, items):
    """Tests marked `vllm` (a real vLLM server, minutes on a CPU), `heavy`, `other_browsers` or `slow` run only when
    asked for with -m. The browser tests are slow except the smoke tests (each tab's main path, the offline classroom's
    first click, the page's safety): README's command stays a few minutes and CI runs the rest with -m slow."""
    retaking = os.environ.get("UPDATE_SCREENSHOTS") == "1"
    for item in items:
        carried = [marker for marker in OPT_IN if item.get_closest_marker(marker)]
        if item.get_closest_marker("browser") and not is_smoke(item) and not carried:
            item.add_marker(pytest.mark.slow)
            carried = ["slow"]
        if (why := why_opted_out(carried, config.option.markexpr or "", retaking_screenshots=retaking)) is not None:
            item.stash[OPTED_OUT] = why


def why_opted_out(carried: list[str], asked: str, *, retaking_screenshots: bool = False) -> str | None:
    """Why a test carrying the opt-in markers `carried` does not run under `-m asked`, or None if it runs: when one
    of them is named there (a test marked heavy and slow runs with either). Retaking README's screenshots
    (UPDATE_SCREENSHOTS=1) runs the browser tests that take them, slow or not."""
    asked_for = {marker for marker in carried if marker in asked or (marker == "slow" and retaking_screenshots)}
    return OPT_IN[carried[0]] if carried and not asked_for else None


def pytest_runtest_setup(item):
    """Skip an opted-out test before its fixtures start (from here, not from a skip mark, so that -ra's summary
    counts each reason on one line instead of a line per test)."""
    if OPTED_OUT in item.stash:
        pytest.skip(item.stash[OPTED_OUT])

"""Shared fixtures: GPT-2 checkpoints with random weights built in tmp_path in the real file layouts (gpt2_core.testing).

The Hub is out of reach in CI, so the tests build their own checkpoints, with the genuine GPT-2 tokenizer files.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gpt2_core import testing
from gpt2_core.testing import add_tokenizer, gpt2_tokenizer_files, save_layout  # noqa: F401 (shared with test modules)

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

    model = load_model(tiny_checkpoint, device="cpu")
    yield model
    model.close()



VLLM_OPT_IN = "the live vLLM suite is opt-in: `bash tests/vllm/run` sets vLLM up and runs it (pytest -m vllm)"


def pytest_collection_modifyitems(config, items):
    """Tests marked `vllm` start a real vLLM server (minutes on a CPU): they run only when asked for with -m vllm."""
    if "vllm" in (config.option.markexpr or ""):
        return
    for item in items:
        if "vllm" in item.keywords:
            item.add_marker(pytest.mark.skip(reason=VLLM_OPT_IN))

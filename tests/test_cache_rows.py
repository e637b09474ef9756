"""The engine's KV cache within the memory the machine has: each sample takes a whole-context row (engine.py), so
load_model lets the engine decode only as many samples at once as the memory free holds (precision.cache_rows), the
rest waiting their turn; and an idle engine hands a busy spell's rows back."""

from __future__ import annotations

import threading

import pytest
import torch
from ui_helpers import wait_until

import gpt2_core.generate.engine as engine_module
import gpt2_core.precision as precision
from gpt2_core import load_model
from gpt2_core.checkpoint import read_config
from gpt2_core.config import GPTConfig
from gpt2_core.memory import kv_cache_row_bytes
from gpt2_core.model import KVCache

GPT2_XL = GPTConfig(n_layer=48, n_head=25, n_embd=1600)
CPU = torch.device("cpu")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_a_row_is_what_the_engine_allocates_for_a_sample(dtype):
    config = GPTConfig(vocab_size=64, block_size=32, n_layer=3, n_head=2, n_embd=16)
    cache = KVCache(config, 1, config.block_size, device=CPU, dtype=dtype)
    assert kv_cache_row_bytes(config, dtype.itemsize) == cache.nbytes()


def test_gpt2_xl_rows_on_a_laptop_fit_its_free_memory():
    row = kv_cache_row_bytes(GPT2_XL, 4)
    assert 600e6 < row < 660e6  # 48 layers x 2 x 1024 positions x 1600 x 4 bytes: 629 MB
    free = 5_000_000_000  # an 8 GB laptop with gpt2-xl in int8 loaded
    rows = precision.cache_rows(GPT2_XL, CPU, torch.float32, wanted=16, available_bytes=free)
    assert rows * row + precision.HEADROOM_BYTES <= free < (rows + 1) * row + precision.HEADROOM_BYTES
    assert rows < 16


def test_rows_are_what_was_asked_where_memory_is_plenty_and_one_where_it_is_short():
    assert precision.cache_rows(GPT2_XL, CPU, torch.float32, wanted=16, available_bytes=64 << 30) == 16
    assert precision.cache_rows(GPT2_XL, CPU, torch.float32, wanted=16, available_bytes=1 << 20) == 1


def test_a_compile_to_come_is_reserved_before_rows():
    row = kv_cache_row_bytes(GPT2_XL, 4)
    free = precision.HEADROOM_BYTES + 10 * row
    assert precision.cache_rows(GPT2_XL, CPU, torch.float32, wanted=16, available_bytes=free) == 10
    assert precision.cache_rows(GPT2_XL, CPU, torch.float32, wanted=16, available_bytes=free, reserved=3 * row) == 7


@pytest.fixture
def short_of_memory(tiny_checkpoint, monkeypatch):
    """A tiny fp32 model loaded where the memory free holds two and a half of its cache rows."""
    row = kv_cache_row_bytes(read_config(tiny_checkpoint), 4)
    monkeypatch.setattr(precision, "available_memory_bytes", lambda: precision.HEADROOM_BYTES + 5 * row // 2)
    lm = load_model(tiny_checkpoint, device="cpu", dtype="fp32")
    yield lm
    lm.close()


def test_load_model_lets_the_engine_decode_as_many_samples_as_fit(short_of_memory):
    lm = short_of_memory
    assert lm.engine.max_batch == 2
    with pytest.raises(ValueError, match=r"`num_samples` has to be at most 2 .* but is 3"):
        lm.generate("Hello", max_new_tokens=3, num_samples=3)
    results: list = [None] * 5
    ready = threading.Barrier(5)

    def one(i: int) -> None:
        ready.wait()
        results[i] = lm.generate("Hello", max_new_tokens=4, seed=i)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert all(r is not None and len(r[0].token_ids) == 4 for r in results), "callers beyond the rows should wait"
    assert lm.engine._cache is not None and lm.engine._cache.batch_size <= 2
    (alone,) = lm.generate("Hello", max_new_tokens=4, seed=3)
    assert alone.token_ids == results[3][0].token_ids  # a seeded sample is the same whoever else was generating


def test_an_idle_engine_hands_back_a_busy_spells_rows_and_keeps_a_lone_one(tiny_checkpoint, monkeypatch):
    monkeypatch.setattr(engine_module, "IDLE_S", 0.3)
    lm = load_model(tiny_checkpoint, device="cpu", dtype="fp32")
    try:
        lm.generate("Hello", max_new_tokens=4, num_samples=3, seed=1)
        assert lm.engine._cache.batch_size >= 3
        thread = lm.engine._thread
        wait_until(lambda: not thread.is_alive(), timeout=10, message="the idle engine's thread to end")
        assert lm.engine._cache is None, "the busy spell's rows should go back"
        (lone,) = lm.generate("Hello", max_new_tokens=4, seed=1)
        assert lm.engine._cache.batch_size == 1
        thread = lm.engine._thread
        wait_until(lambda: not thread.is_alive(), timeout=10, message="the idle engine's thread to end")
        assert lm.engine._cache is not None and lm.engine._cache.batch_size == 1, "a lone row should stay"
        (again,) = lm.generate("Hello", max_new_tokens=4, seed=1)
        assert again.token_ids == lone.token_ids
    finally:
        lm.close()

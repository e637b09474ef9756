"""The project's decode attention over an fp16 KV cache (gpt2_core/decode_attention.cpp, built with the int8 kernel by
gpt2_core/int8_kernel.py): its numbers against float64, each row's independence from its batch, and where a model
gets the fp16 cache (CPU int8 where the kernel serves) and where it keeps its activations' dtype."""

from __future__ import annotations

import threading

import pytest
import torch

import gpt2_core.precision as precision
from gpt2_core import int8_kernel, load_model
from gpt2_core.checkpoint import BUNDLED, read_config
from gpt2_core.memory import kv_cache_row_bytes
from gpt2_core.model import KVCache


@pytest.fixture(scope="module")
def kernel():
    if not int8_kernel.usable():
        pytest.skip(f"the project's CPU kernels do not serve here: {int8_kernel._unsupported() or 'see the log'}")
    return torch.ops.gpt2_core


def caches(rows: int, heads: int, size: int, positions: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(rows, heads, positions, size, generator=generator).half() for _ in range(2))


def within_fp32_rounding(y: torch.Tensor, expected: torch.Tensor, v: torch.Tensor) -> None:
    """fp32 sums of up to a thousand terms and a polynomial exp: a few hundred units of fp32's roundoff (6e-8) of
    the values' largest magnitude. A wrong position, row or head is off by about the values' size."""
    error = (y.double() - expected).abs().max().item()
    assert error <= 1e-5 * v.abs().max().item(), error


@pytest.mark.parametrize("size", int8_kernel.HEAD_SIZES)
@pytest.mark.parametrize("positions", [[0], [7], [8, 9], [0, 15, 16, 17], [1023, 500, 3]],
                         ids=["one position", "a tail", "8 and a tail", "mixed", "a whole context"])
def test_each_row_attends_over_its_own_positions_as_float64_does(kernel, size, positions):
    """Rows of different lengths (no mask: each its own positions), in a cache with more rows and positions than
    used, every head size the kernel takes, lengths across its 8-key steps and their tail."""
    k, v = caches(len(positions) + 2, 3, size, 1024, seed=size + len(positions))
    qkv = torch.randn(len(positions), 1, 3 * 3 * size, generator=torch.Generator().manual_seed(1)) * 2
    q = qkv[..., : 3 * size].view(len(positions), 1, 3, size).transpose(1, 2)  # strided, as the model's q
    last = torch.tensor(positions)
    y = kernel.decode_attention(q, k, v, last, size**-0.5)
    assert y.shape == q.shape and y.dtype == torch.float32
    within_fp32_rounding(y, int8_kernel.reference_attention(q, k, v, last, size**-0.5), v)


def test_a_peaked_softmax_neither_overflows_nor_loses_its_largest_term(kernel):
    """Scores hundreds apart (a head that looks at one position): exp of the others underflows to 0, the largest is
    1, and the output is that position's value."""
    k, v = caches(1, 2, 64, 40, seed=3)
    q = torch.zeros(1, 2, 1, 64)
    q[0, :, 0, :] = k[0, :, 21, :].float() * 100  # position 21 scores far above the rest
    y = kernel.decode_attention(q, k, v, torch.tensor([39]), 1.0)
    torch.testing.assert_close(y[0, :, 0], v[0, :, 21].float(), rtol=1e-6, atol=1e-6)
    assert bool(torch.isfinite(y).all())


@pytest.mark.parametrize("where", ["key", "query"])
def test_a_nan_reaches_the_output_of_its_own_row_and_head_only(kernel, where):
    """As ATen's attention: a NaN key or query is not averaged away (a clamp or fmax would hide it)."""
    k, v = caches(3, 2, 64, 40, seed=7)
    q = torch.randn(3, 2, 1, 64, generator=torch.Generator().manual_seed(8))
    if where == "key":
        k[1, 0, 5, 3] = float("nan")
    else:
        q[1, 0, 0, 3] = float("nan")
    y = kernel.decode_attention(q, k, v, torch.tensor([39, 39, 39]), 0.125)
    assert bool(y[1, 0].isnan().all())
    y[1, 0] = 0
    assert bool(torch.isfinite(y).all())


def test_a_row_gets_the_same_bits_alone_and_in_any_batch_on_any_threads(kernel):
    k, v = caches(9, 12, 64, 300, seed=4)
    q = torch.randn(9, 12, 1, 64, generator=torch.Generator().manual_seed(5))
    last = torch.tensor([299, 3, 150, 8, 77, 200, 0, 16, 31])
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        alone = [kernel.decode_attention(q[r : r + 1], k[r : r + 1], v[r : r + 1], last[r : r + 1], 0.125)
                 for r in range(9)]
        for threads in (1, 2):
            torch.set_num_threads(threads)
            for size in (2, 5, 9):
                together = kernel.decode_attention(q[:size], k, v, last[:size], 0.125)
                for r in range(size):
                    assert torch.equal(together[r : r + 1], alone[r]), (threads, size, r)
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("bad, message", [
    (dict(size=48), "head sizes 32, 64 or 128, not 48"),
    (dict(last=40), "position 40 is outside the cache's 40"),
    (dict(dtype=torch.float32), "fp16 CPU caches"),
    (dict(v_positions=20), "k and v have to be the same shape"),
])
def test_inputs_it_does_not_take_are_refused_with_what_it_takes(kernel, bad, message):
    size = bad.get("size", 64)
    k, v = (t.to(bad.get("dtype", torch.float16)) for t in caches(1, 2, size, 40, seed=6))
    v = v[:, :, : bad.get("v_positions", 40)]
    with pytest.raises(RuntimeError, match=message):
        kernel.decode_attention(torch.zeros(1, 2, 1, size), k, v, torch.tensor([bad.get("last", 5)]), 0.125)


def test_the_check_finds_an_attention_that_reads_a_wrong_position(kernel, monkeypatch):
    real = kernel.decode_attention

    def off_by_one(q, k, v, positions, scale):
        return real(q, k, v, (positions - 1).clamp(min=0), scale)

    monkeypatch.setattr(torch.ops.gpt2_core, "decode_attention", off_by_one)
    assert "decode attention with heads of 32 differs from float64" in int8_kernel._check()
    monkeypatch.undo()
    assert int8_kernel._check() == ""


@pytest.fixture(scope="module")
def mini_int8(kernel):
    lm = load_model(BUNDLED["mini-gpt2"], device="cpu")  # the CPU default: int8
    yield lm
    lm.close()


def test_cpu_int8_caches_keys_and_values_in_fp16_and_exact_fp32_does_not(mini_int8, tiny_checkpoint):
    assert mini_int8.precision == "int8" and mini_int8.model.cache_dtype == torch.float16
    mini_int8.generate("Thou", max_new_tokens=3, seed=1)
    assert mini_int8.engine._cache.k[0].dtype == torch.float16
    exact = load_model(BUNDLED["mini-gpt2"], device="cpu", dtype="fp32")
    odd = load_model(tiny_checkpoint, device="cpu")  # int8, but heads of 16: the kernel does not take them
    try:
        assert exact.model.cache_dtype is None and odd.model.cache_dtype is None
        exact.generate("Thou", max_new_tokens=3, seed=1)
        assert exact.engine._cache.k[0].dtype == torch.float32
    finally:
        exact.close()
        odd.close()


def test_decoding_through_an_fp16_cache_is_decoding_through_an_fp32_one_within_fp16_rounding(kernel):
    """The exact fp32 model, the same tokens, two caches: fp16 (the kernel) and fp32 (ATen's attention). fp16 rounds
    each key and value by up to 2**-11 of itself, so the logits move by about that share of their scale, layer upon
    layer: within 1e-3 of it. (On int8 the difference is larger and no measure of the attention: a small change can
    tip an activation's 8-bit rounding. There tests/test_quantize.py measures the step against fp32's next words.)"""
    lm = load_model(BUNDLED["mini-gpt2"], device="cpu", dtype="fp32")
    try:
        model = lm.model
        ids = lm.tokenizer.encode("So foul and fair a day I have not seen. Speak, I charge you, what are you?")
        T = model.config.block_size
        full = model.new_cache(2, T, device=torch.device("cpu"), dtype=torch.float32)
        model.cache_dtype = torch.float16
        half = model.new_cache(2, T, device=torch.device("cpu"), dtype=torch.float32)
        assert (half.k[0].dtype, full.k[0].dtype) == (torch.float16, torch.float32)
        with torch.inference_mode():
            for cache in (half, full):
                model.prefill(torch.tensor([ids[:5]]), cache, 0)
                model.prefill(torch.tensor([ids[:9]]), cache, 1)
            for step in range(12):  # two rows of different lengths, one step each
                positions = [5 + step, 9 + step]
                idx = torch.tensor([[ids[p % len(ids)]] for p in positions])
                a, b = model.decode(idx, half, positions), model.decode(idx, full, positions)
                assert (a - b).abs().max().item() <= 1e-3 * b.abs().max().item(), step
    finally:
        lm.close()


def test_a_rows_unwritten_positions_are_never_read_so_its_fp16_cache_is_not_zeroed(kernel):
    """The fp16 cache is made without zeros (KVCache zeroed=False: 8 gpt2 rows' zeros took up to 220 ms before the
    first tokens). Every position no prefill or step wrote is NaN here, and prompts of three lengths (padded in one
    prefill) then decode ragged, crossing the kernel's 8-key steps: the same bits as through a zeroed cache. ATen's
    attention, which masks a ragged batch's unwritten positions but still multiplies them by 0, keeps zeros."""
    lm = load_model(BUNDLED["mini-gpt2"], device="cpu")  # int8, where the kernel serves: an fp16 cache
    try:
        model, cpu = lm.model, torch.device("cpu")
        assert model.cache_dtype == torch.float16
        ids = lm.tokenizer.encode("So foul and fair a day I have not seen. Speak, I charge you, what are you?")
        lengths = [5, 9, 2]
        garbage = model.new_cache(3, 64, device=cpu, dtype=torch.float32)
        zeroed = KVCache(model.config, 3, 64, device=cpu, dtype=torch.float16)
        for tensor in garbage.k + garbage.v:
            tensor.fill_(float("nan"))
        with torch.inference_mode():
            padded = torch.tensor([ids[:n] + [0] * (max(lengths) - n) for n in lengths])
            for cache in (garbage, zeroed):
                model.prefill(padded, cache, [0, 1, 2], lengths)
            for step in range(20):
                positions = [n + step for n in lengths]
                idx = torch.tensor([[ids[p % len(ids)]] for p in positions])
                a, b = model.decode(idx, garbage, positions), model.decode(idx, zeroed, positions)
                assert torch.equal(a, b) and bool(a.isfinite().all()), step
        model.cache_dtype = None  # the activations' own dtype: ATen's attention reads it
        assert not any(bool(t.any()) for t in model.new_cache(2, 64, device=cpu, dtype=torch.float32).k)
    finally:
        lm.close()


def test_the_engine_reads_no_position_it_did_not_write(kernel, monkeypatch):
    """The engine's own paths over fp16 caches whose every position starts as NaN (what torch.empty may hand back): a
    request decoding alone, a second joining it (the cache grows and the running row is copied over; another prompt
    length, so the rows are ragged), that prompt's row copied for its second sample, then the first request ending
    (the batch compacted: the others' rows move down). Greedy, so each row's tokens are its own whenever the second
    joins: the same tokens and probabilities as over caches of zeros."""

    def run(fill: float) -> list[tuple[list[int], list[float]]]:
        lm = load_model(BUNDLED["mini-gpt2"], device="cpu")  # int8 where the kernel serves: fp16 caches
        made = lm.model.new_cache

        def new_cache(*args, **kwargs):
            cache = made(*args, **kwargs)
            for tensor in cache.k + cache.v:
                tensor.fill_(fill)
            return cache

        monkeypatch.setattr(lm.model, "new_cache", new_cache)
        try:
            running, first = threading.Event(), []

            def alone() -> None:
                for update in lm.stream("Thou art", max_new_tokens=12, temperature=0):
                    if len(update[0].token_ids) == 3:
                        running.set()
                first.extend(update)

            thread = threading.Thread(target=alone)
            thread.start()
            assert running.wait(timeout=60)
            joined = lm.generate("So foul and fair a day I have not seen", max_new_tokens=24, temperature=0,
                                 num_samples=2)
            thread.join(timeout=60)
            assert lm.engine._cache is not None and lm.engine._cache.k[0].dtype == torch.float16
            return [(s.token_ids, s.token_probs) for s in first + joined]
        finally:
            lm.close()

    garbage, zeros = run(float("nan")), run(0.0)
    assert [len(ids) for ids, _ in zeros] == [12, 24, 24]
    assert garbage == zeros


def test_memory_counts_the_fp16_rows(kernel, monkeypatch):
    """The engine's rows are counted at their own size: where the memory free holds two and a half fp32 rows, an
    fp16 cache holds five."""
    config = read_config(BUNDLED["mini-gpt2"])
    row = kv_cache_row_bytes(config, 4)
    monkeypatch.setattr(precision, "available_memory_bytes", lambda: precision.HEADROOM_BYTES + 5 * row // 2)
    lm = load_model(BUNDLED["mini-gpt2"], device="cpu")
    try:
        assert lm.engine.max_batch == 5
    finally:
        lm.close()

"""The project's int8-by-int8 kernel (gpt2_core/int8_rows.cpp, built by gpt2_core/int8_kernel.py): its numbers against
exact integer arithmetic, each row's independence from its batch, and the way back to PyTorch's kernel wherever the
kernel does not serve."""

from __future__ import annotations

import logging
import subprocess

import pytest
import torch

from gpt2_core import int8_kernel
from gpt2_core.quantize import Int8Linear, Int8RowsLinear, int8_linear, quantize_rows

# float32's unit roundoff: the kernel's int32 sum becomes a float (one rounding past 2**24), then one product for the
# scales, one for the value and one for the bias: four roundings of the terms' size at most
EPS = 2.0 ** -24


@pytest.fixture(scope="module")
def kernel():
    if not int8_kernel.usable():
        pytest.skip(f"the int8-by-int8 kernel does not serve here: {int8_kernel._unsupported() or 'see the log'}")
    return torch.ops.gpt2_core


def run(ops, x, weight, scales, bias=None):
    return ops.int8_rows_linear(x, ops.int8_rows_pack(weight), scales, bias)


def within_rounding(y: torch.Tensor, x, weight, scales, bias) -> None:
    exact = int8_kernel.reference(x, weight, scales, None)
    size = exact.abs() + (0 if bias is None else bias.double().abs())
    expected = exact if bias is None else exact + bias.double()
    error = (y.double() - expected).abs()
    assert bool((error <= 5 * EPS * size + 1e-30).all()), float((error / size.clamp(min=1e-30)).max())


@pytest.mark.parametrize("rows, channels, depth", [(1, 768, 768), (1, 50, 64), (3, 17, 30), (4, 16, 96), (5, 43, 96),
                                                   (8, 2304, 768), (9, 24, 3072), (2, 8, 2), (33, 100, 64)])
def test_products_are_exact_int8_sums_scaled_back(kernel, rows, channels, depth):
    """Every kind of tile (1-4 rows; 1, 2 or 4 blocks of 8 channels; a block cut short), every depth the kernel
    takes: the int8 rows' sums by the int8 weights are exact, so the outputs are the reference's within the float
    roundings of scaling them back."""
    generator = torch.Generator().manual_seed(rows * 1000 + channels)
    x = torch.randn(rows, depth, generator=generator) * 3
    weight = torch.randint(-127, 128, (channels, depth), dtype=torch.int8, generator=generator)
    scales, bias = torch.rand(channels, generator=generator) / 100, torch.randn(channels, generator=generator)
    within_rounding(run(kernel, x, weight, scales, bias), x, weight, scales, bias)
    within_rounding(run(kernel, x, weight, scales), x, weight, scales, None)


def test_the_largest_sums_do_not_saturate(kernel):
    """The extremes: every activation and weight at +-127 over GPT-2's widest depth (3072), where AVX2 kernels that
    add int8 pairs in 16 bits (torch._int_mm's oneDNN without VNNI) saturate."""
    x = torch.full((2, 3072), 5.0)
    x[1] = -5.0
    weight = torch.full((16, 3072), 127, dtype=torch.int8)
    weight[8:] = -127
    y = run(kernel, x, weight, torch.ones(16))
    expected = 3072 * 127 * 127 * 5.0 / 127  # each row's scale is 5 / 127
    assert torch.allclose(y, torch.tensor([expected, -expected]).repeat_interleave(8)[None] * torch.tensor([[1], [-1]]),
                          rtol=4 * EPS)


@pytest.mark.parametrize("threads", [1, 2])
def test_a_row_gets_the_same_bits_alone_and_in_any_batch(kernel, threads):
    """What keeps a seed's story the same for a lone student and for a class: a row's outputs do not depend on the
    other rows (its own activation scale, exact sums) nor on how the threads split the work."""
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(9, 768, generator=generator)
    x[3] *= 40  # a row with much larger activations must not change its neighbours' rounding
    weight = torch.randint(-127, 128, (300, 768), dtype=torch.int8, generator=generator)
    scales, bias = torch.rand(300, generator=generator) / 100, torch.randn(300, generator=generator)
    packed = kernel.int8_rows_pack(weight)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        alone = [kernel.int8_rows_linear(x[r : r + 1], packed, scales, bias) for r in range(9)]
        for size in (2, 3, 4, 5, 8, 9):
            together = kernel.int8_rows_linear(x[:size], packed, scales, bias)
            for r in range(size):
                assert torch.equal(together[r : r + 1], alone[r]), (size, r)
    finally:
        torch.set_num_threads(before)


def test_a_row_with_a_value_that_is_not_finite_gives_nan_in_that_row_only(kernel):
    x = torch.randn(3, 64)
    x[1, 5] = float("inf")
    y = run(kernel, x, torch.randint(-127, 128, (16, 64), dtype=torch.int8), torch.ones(16))
    assert bool(y[1].isnan().all()) and bool(y[[0, 2]].isfinite().all())


def test_the_layer_keeps_only_the_packed_weights_and_unpacks_them_exactly(kernel):
    linear = torch.nn.Linear(96, 43)
    layer = Int8RowsLinear(linear)
    weight, scales = quantize_rows(linear.weight.detach())
    assert [name for name, _ in layer.named_buffers()] == ["packed", "scales", "bias"]
    assert layer.packed.numel() == 48 * 96  # 43 channels in 6 blocks of 8
    assert torch.equal(layer.weight, weight) and torch.equal(layer.scales, scales)
    ids = torch.tensor([[0, 42], [7, 8]])
    assert torch.equal(layer.rows(ids), weight[ids].float() * scales[ids].unsqueeze(-1))
    x = torch.randn(2, 5, 96)
    y = layer(x)
    assert y.shape == (2, 5, 43)
    within_rounding(y.reshape(10, 43), x.reshape(10, 96), weight, scales, linear.bias.detach())


def test_int8_layers_take_the_kernel_where_it_serves_and_an_odd_depth_stays_on_pytorchs(kernel):
    assert type(int8_linear(torch.nn.Linear(64, 8))) is Int8RowsLinear
    assert type(int8_linear(torch.nn.Linear(63, 8))) is Int8Linear  # the kernel takes activations in pairs


def test_gpt2_int8_kernel_off_keeps_pytorchs_kernel(monkeypatch):
    monkeypatch.setenv(int8_kernel.OFF, "off")
    assert not int8_kernel.usable()
    assert type(int8_linear(torch.nn.Linear(64, 8))) is Int8Linear


@pytest.fixture
def fresh_loader(monkeypatch, tmp_path):
    """The loader as on a first start, building into tmp_path; afterwards, the real one again (from its cache)."""
    monkeypatch.setattr(int8_kernel, "cache_home", lambda: tmp_path)
    int8_kernel._loaded.cache_clear()
    yield tmp_path
    int8_kernel._loaded.cache_clear()


def test_a_failed_build_keeps_pytorchs_kernel_and_says_why(fresh_loader, monkeypatch, caplog):
    if int8_kernel._unsupported():
        pytest.skip(f"the kernel is not for this machine, so no build is tried: {int8_kernel._unsupported()}")

    def failing(command, **kwargs):
        return subprocess.CompletedProcess(command, 1, "", "int8_rows.cpp:1: error: no AVX2 here")

    monkeypatch.setattr(int8_kernel.subprocess, "run", failing)
    monkeypatch.setattr(int8_kernel, "_registered", lambda: False)  # (this process may have loaded it already)
    with caplog.at_level(logging.WARNING, logger="gpt2_core.int8_kernel"):
        assert not int8_kernel.usable()
    assert "did not build or load" in caplog.text and "no AVX2 here" in caplog.text
    assert type(int8_linear(torch.nn.Linear(64, 8))) is Int8Linear
    assert not list(fresh_loader.rglob("*.so"))  # nothing half-built left to load next time


def test_sums_that_are_off_keep_pytorchs_kernel(fresh_loader, monkeypatch, caplog):
    if int8_kernel._unsupported():
        pytest.skip(f"the kernel is not for this machine, so no build is tried: {int8_kernel._unsupported()}")
    monkeypatch.setattr(int8_kernel, "_check", lambda: 512)  # as a kernel whose 16-bit pair sums saturated
    with caplog.at_level(logging.WARNING, logger="gpt2_core.int8_kernel"):
        assert not int8_kernel.usable()
    assert "sums are off by 512" in caplog.text


def test_the_built_kernel_is_kept_for_the_next_start(fresh_loader, monkeypatch):
    if int8_kernel._unsupported():
        pytest.skip(f"the kernel is not for this machine, so no build is tried: {int8_kernel._unsupported()}")
    first = int8_kernel._built()
    assert first.parent.parent == fresh_loader / "kernels" and first.exists()
    assert first.parent.stat().st_mode & 0o077 == 0  # code the app runs: the user's folder alone
    monkeypatch.setattr(int8_kernel.subprocess, "run", lambda *a, **k: pytest.fail("built again"))
    assert int8_kernel._built() == first


@pytest.mark.parametrize("machine, level, expected", [
    ("arm64", "DEFAULT", "for Linux on x86-64"),
    ("x86_64", "AVX512", "best vector level is AVX2, this one's is AVX512"),
])
def test_other_cpus_are_told_why_the_kernel_is_not_theirs(monkeypatch, machine, level, expected):
    monkeypatch.setattr(int8_kernel.platform, "machine", lambda: machine)
    monkeypatch.setattr(int8_kernel.sys, "platform", "linux")
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: level)
    assert expected in int8_kernel._unsupported()


def test_no_compiler_is_a_reason_too(monkeypatch):
    monkeypatch.setattr(int8_kernel.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(int8_kernel.sys, "platform", "linux")
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    monkeypatch.setattr(int8_kernel, "_compiler", lambda: None)
    assert int8_kernel._unsupported() == "no C++ compiler (g++) to build the kernel"

"""benchmarks/bench_int8_kernels.py: that each kernel it times computes the step's products (against fp32, within the
rounding its 8-bit numbers allow), and that its emulation of ONNX Runtime's 8-bit activations rounds as that runtime
does. Nothing timed."""

from __future__ import annotations

import sys
from importlib.util import find_spec
from pathlib import Path
from unittest import mock

import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_int8_kernels as bench  # noqa: E402

from gpt2_core.config import GPTConfig  # noqa: E402
from gpt2_core.quantize import Int8Linear  # noqa: E402

SMALL = GPTConfig(n_layer=2, n_head=2, n_embd=64, vocab_size=300, block_size=32)


@pytest.fixture(scope="module")
def linears():
    return bench.step_linears(SMALL)


def test_the_step_has_four_matrices_per_block_then_the_lm_head(linears):
    C = SMALL.n_embd
    assert [(m.in_features, m.out_features) for m in linears] == \
        [(C, 3 * C), (C, C), (C, 4 * C), (4 * C, C)] * SMALL.n_layer + [(C, SMALL.vocab_size)]
    assert linears[-1].bias is None and all(m.bias is not None for m in linears[:-1])


BF16 = 2.0**-8  # bf16 keeps 8 significant bits: a rounding moves a number by at most this share of it


def products_within_rounding(got, linears, x, x_wide, *, dx, dw, out_rel=0.0):
    """Each kernel output against fp32, within the worst case of its rounding: activations moved by at most dx(x)
    (per element), weights by at most dw(W), the output by out_rel of itself. For one output,
    |error| <= sum_k |W_jk| dx_k + |x_k| dw_jk + dx_k dw_jk (+ out_rel |y_j|), plus fp32 summation (1e-5 of sum |W||x|)."""
    for out, m in zip(got, linears, strict=True):
        xi = x if m.in_features == SMALL.n_embd else x_wide
        W, want = m.weight.detach(), F.linear(xi, m.weight, m.bias).detach()
        ax, aw = dx(xi), dw(W).expand_as(W)
        bound = ax @ W.abs().T + xi.abs() @ aw.T + ax @ aw.T + out_rel * want.abs() + 1e-5 * (xi.abs() @ W.abs().T)
        error = (torch.as_tensor(out) - want).abs()
        assert error.shape == want.shape
        assert (error <= bound + 1e-6).all(), (error - bound).max()


def per_channel_step(W):
    return W.abs().amax(dim=1, keepdim=True) / 127  # (out, 1): int8 per output row


def range_step(levels):
    """The step of 8-bit (255 levels) or 7-bit (127) activations over one call's range, stretched to include 0. A whole
    step, not half: the zero point is rounded to an integer, which can push an end of the range half a step out."""
    return lambda x: torch.full_like(x, (x.max().clamp(min=0) - x.min().clamp(max=0)).item() / levels)


@pytest.mark.parametrize("rows", [1, 5])
def test_every_torch_kernel_computes_the_products(linears, rows):
    x, x_wide = torch.randn(rows, SMALL.n_embd), torch.randn(rows, 4 * SMALL.n_embd)
    C = SMALL.n_embd
    with torch.inference_mode():
        products_within_rounding(bench.Chain(linears, C)(x, x_wide), linears, x, x_wide,
                                 dx=torch.zeros_like, dw=lambda W: torch.zeros(1))
        # int8 weights, one scale per row (kept in bf16); activations and the output rounded to bf16
        products_within_rounding(bench.Chain([Int8Linear(m) for m in linears], C)(x, x_wide), linears, x, x_wide,
                                 dx=lambda x: BF16 * x.abs(), dw=lambda W: per_channel_step(W) / 2 + BF16 * W.abs(),
                                 out_rel=BF16)
        # the same weights (scales exact), activations on 7 bits over the call's range (reduce_range)
        products_within_rounding(bench.fbgemm_dynamic(linears, C)(x, x_wide), linears, x, x_wide,
                                 dx=range_step(127), dw=lambda W: per_channel_step(W) / 2)


@pytest.mark.skipif(find_spec("onnxruntime") is None or find_spec("onnx") is None,
                    reason="ONNX Runtime is a benchmark-only package: pip install -r benchmarks/requirements-peers.txt")
def test_the_onnx_runtime_graph_computes_the_products(linears, tmp_path):
    x, x_wide = torch.randn(3, SMALL.n_embd), torch.randn(3, 4 * SMALL.n_embd)
    run = bench.onnxruntime_int8(linears, SMALL.n_embd, tmp_path, threads=1)
    # quantize_dynamic: int8 weights with one scale per matrix (a step of at most max|W| / 127), 8-bit activations
    products_within_rounding(run(x, x_wide), linears, x, x_wide, dx=range_step(255),
                             dw=lambda W: (W.abs().max() / 127).reshape(1, 1))


def test_eight_bit_activations_round_each_row_to_its_own_256_steps():
    layer = Int8Linear(torch.nn.Linear(4, 3))
    # row 0 spans [-1, 2] (step 3/255), row 1 only positives (the range stretched to 0, as ONNX Runtime does)
    x = torch.tensor([[-1.0, 0.0, 0.7, 2.0], [0.5, 1.5, 3.0, 0.25]])
    weights = layer.weight.float() * layer.scales.float()[:, None]
    got = bench.eight_bit_activations(layer, x)
    for row, step in ((0, 3 / 255), (1, 3 / 255)):
        on_grid = torch.round(x[row] / step) * step  # the zero point is a whole step, so the grid holds 0
        want = F.linear(on_grid, weights) + layer.bias
        torch.testing.assert_close(got[row], want, rtol=0, atol=1e-5)
        assert (on_grid - x[row]).abs().max() <= step / 2 + 1e-7
    # one scale per row: a row's result does not depend on the others in the call
    torch.testing.assert_close(bench.eight_bit_activations(layer, x[1:]), got[1:], rtol=0, atol=0)
    # zero is exactly representable, so a zero input gives the bias alone
    torch.testing.assert_close(bench.eight_bit_activations(layer, torch.zeros(1, 4))[0], layer.bias, rtol=0, atol=0)


def row_step(x):
    """The step of 8-bit symmetric activations, one scale per row: the row's largest magnitude over 127."""
    return (x.abs().amax(-1, keepdim=True) / 127).expand_as(x)


@pytest.mark.skipif(bench.int_mm_exact() != 0, reason="this CPU's `_int_mm` does not sum int8 exactly (oneDNN without "
                    "VNNI saturates 16-bit pair sums): the benchmark reports that instead of these products")
def test_int_mm_rows_compute_the_products_each_row_on_its_own(linears):
    x, x_wide = torch.randn(5, SMALL.n_embd), torch.randn(5, 4 * SMALL.n_embd)
    x[2] *= 100  # a row with large values must not coarsen the others' steps
    layers = [bench.RowInt8Linear(Int8Linear(m)) for m in linears]
    chain = bench.Chain(layers, SMALL.n_embd)
    with torch.inference_mode():
        got = chain(x, x_wide)
        products_within_rounding(got, linears, x, x_wide, dx=lambda x: row_step(x) / 2,
                                 dw=lambda W: per_channel_step(W) / 2 + BF16 * W.abs())
        # int32 sums are exact, so a row's result is the same alone as in its batch, to the bit
        for row in (0, 2, 4):
            alone = chain(x[row : row + 1], x_wide[row : row + 1])
            for a, b in zip(alone, got, strict=True):
                torch.testing.assert_close(a[0], b[row], rtol=0, atol=0)


def test_int_mm_exact_finds_saturating_sums():
    """int_mm_exact reports 0 for exact int32 sums, and the largest error for oneDNN's way without VNNI: the signed
    activations shifted by 128 to unsigned, products of pairs added in 16 bits (saturating), the shift taken off."""
    def exact(a, b):
        return (a.long() @ b.long()).int()

    def pairs_saturating(a, b):
        products = (a.long() + 128)[:, :, None] * b.long()[None]  # (rows, width, out), up to 255 * 127
        pairs = products.view(a.shape[0], -1, 2, b.shape[1]).sum(2).clamp(-32768, 32767)
        return (pairs.sum(1) - 128 * b.long().sum(0)).int()

    with mock.patch.object(torch, "_int_mm", exact):
        assert bench.int_mm_exact() == 0
    with mock.patch.object(torch, "_int_mm", pairs_saturating):
        assert bench.int_mm_exact() > 1000  # two products of up to 255 * 127 overflow 32767 often


def test_symmetric_row_activations_round_each_row_to_its_own_grid():
    layer = Int8Linear(torch.nn.Linear(4, 3))
    x = torch.tensor([[-1.0, 0.0, 0.7, 2.54], [0.5, -300.0, 3.0, 0.25]])
    weights = layer.weight.float() * layer.scales.float()[:, None]
    got = bench.symmetric_row_activations(layer, x)
    for row in range(2):
        step = x[row].abs().max() / 127
        on_grid = torch.round(x[row] / step) * step  # no zero point: the grid is symmetric about 0
        torch.testing.assert_close(got[row], F.linear(on_grid, weights) + layer.bias, rtol=0, atol=1e-4)
    torch.testing.assert_close(bench.symmetric_row_activations(layer, x[:1]), got[:1], rtol=0, atol=0)

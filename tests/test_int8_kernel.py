"""The project's int8-by-int8 kernel (gpt2_core/int8_rows.cpp, built by gpt2_core/int8_kernel.py): its numbers against
exact integer arithmetic, each row's independence from its batch, and the way back to PyTorch's kernel wherever the
kernel does not serve."""

from __future__ import annotations

import logging

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
                                                   (6, 20, 64), (7, 9, 30), (8, 2304, 768), (9, 24, 3072), (2, 8, 2),
                                                   (12, 40, 64), (33, 100, 64)])
def test_products_are_exact_int8_sums_scaled_back(kernel, rows, channels, depth):
    """Every kind of tile (1-8 rows; 1, 2 or 4 blocks of 8 channels; a block cut short), every depth the kernel
    takes: the int8 rows' sums by the int8 weights are exact, so the outputs are the reference's within the float
    roundings of scaling them back."""
    generator = torch.Generator().manual_seed(rows * 1000 + channels)
    x = torch.randn(rows, depth, generator=generator) * 3
    weight = torch.randint(-127, 128, (channels, depth), dtype=torch.int8, generator=generator)
    scales = (torch.rand(channels, generator=generator) / 100).to(torch.bfloat16)
    bias = torch.randn(channels, generator=generator)
    within_rounding(run(kernel, x, weight, scales, bias), x, weight, scales, bias)
    within_rounding(run(kernel, x, weight, scales), x, weight, scales, None)


def test_the_largest_sums_do_not_saturate(kernel):
    """The extremes: every activation and weight at +-127 over GPT-2's widest depth (3072), where AVX2 kernels that
    add int8 pairs in 16 bits (torch._int_mm's oneDNN without VNNI) saturate."""
    x = torch.full((2, 3072), 5.0)
    x[1] = -5.0
    weight = torch.full((16, 3072), 127, dtype=torch.int8)
    weight[8:] = -127
    y = run(kernel, x, weight, torch.ones(16, dtype=torch.bfloat16))
    expected = 3072 * 127 * 127 * 5.0 / 127  # each row's scale is 5 / 127
    assert torch.allclose(y, torch.tensor([expected, -expected]).repeat_interleave(8)[None] * torch.tensor([[1], [-1]]),
                          rtol=4 * EPS)


def test_rounding_is_half_to_even_as_torch_round_and_within_127(kernel):
    """Ties in the 16-column steps and in the tail past them: each row's scale is 1 (its largest magnitude 127), and
    one weight of 1 per channel reads each rounded activation back."""
    ties = [127.0, 0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 3.5, 126.5, -126.5, 4.4999, -4.5001, 0.0, -0.0, 5.5, 6.5]
    x = torch.tensor([ties + ties[1:7], [-127.0] + ties[1:] + ties[1:7]])  # 22 columns: 16, then a tail of 6
    y = run(kernel, x, torch.eye(22, dtype=torch.int8), torch.ones(22, dtype=torch.bfloat16))
    assert torch.equal(y, torch.round(x))
    assert torch.equal(y[0, :4], torch.tensor([127.0, 0.0, 2.0, 2.0]))  # (not 1.0 and 3.0: half to even)


@pytest.mark.parametrize("where", [5, 20], ids=["in a 16-column step", "in the tail"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_a_row_with_a_value_that_is_not_finite_gives_nan_in_that_row_only(kernel, where, value):
    x = torch.randn(3, 30)
    x[1, where] = value
    y = run(kernel, x, torch.randint(-127, 128, (16, 30), dtype=torch.int8), torch.ones(16, dtype=torch.bfloat16))
    assert bool(y[1].isnan().all()) and bool(y[[0, 2]].isfinite().all())


def test_a_row_gets_the_same_bits_alone_and_in_any_batch_on_any_threads(kernel):
    """Batching adds nothing of its own to a row's products (a lone student's and a class's): they do not depend on the
    other rows (its own activation scale, exact sums) nor on how the threads split the work."""
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(12, 110, generator=generator)  # a depth with a tail past the 16-column steps
    x[3] *= 40  # a row with much larger activations must not change its neighbours' rounding
    weight = torch.randint(-127, 128, (300, 110), dtype=torch.int8, generator=generator)
    scales = (torch.rand(300, generator=generator) / 100).to(torch.bfloat16)
    bias = torch.randn(300, generator=generator)
    packed = kernel.int8_rows_pack(weight)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        alone = [kernel.int8_rows_linear(x[r : r + 1], packed, scales, bias) for r in range(12)]
        for threads in (1, 2):
            torch.set_num_threads(threads)
            for size in (1, 2, 3, 4, 5, 6, 7, 8, 9, 12):
                together = kernel.int8_rows_linear(x[:size], packed, scales, bias)
                for r in range(size):
                    assert torch.equal(together[r : r + 1], alone[r]), (threads, size, r)
    finally:
        torch.set_num_threads(before)


def test_the_layer_keeps_only_the_packed_weights_and_unpacks_them_exactly(kernel):
    linear = torch.nn.Linear(96, 43)
    layer = Int8RowsLinear(linear)
    weight, scales = quantize_rows(linear.weight.detach())
    assert [name for name, _ in layer.named_buffers()] == ["packed", "scales", "bias"]
    assert layer.packed.numel() == 48 * 96  # 43 channels in 6 blocks of 8
    assert torch.equal(layer.weight, weight) and torch.equal(layer.scales, scales)
    ids = torch.tensor([[0, 42], [7, 8]])
    assert torch.equal(layer.rows(ids), weight[ids].float() * scales[ids].float().unsqueeze(-1))
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


class FakeCompiler:
    """subprocess.Popen for the kernel's build: writes `written` to the -o path (a half-written library, or a whole
    one), then exits with `code` and `message`."""

    calls = 0

    def __init__(self, written: bytes, code: int, message: str):
        self.written, self.code, self.message = written, code, message

    def __call__(self, command, **kwargs):
        FakeCompiler.calls += 1
        with open(command[command.index("-o") + 1], "wb") as out:
            out.write(self.written)
        self.returncode, self.pid = self.code, -1
        return self

    def communicate(self, timeout=None):
        return self.message.encode(), b""


def needs_a_build():
    if int8_kernel._unsupported():
        pytest.skip(f"the kernel is not for this machine, so no build is tried: {int8_kernel._unsupported()}")


def test_a_failed_build_keeps_pytorchs_kernel_says_why_and_is_not_retried_at_each_start(fresh_loader, monkeypatch,
                                                                                         caplog):
    needs_a_build()
    monkeypatch.setattr(int8_kernel.subprocess, "Popen", FakeCompiler(b"\x7fELF half", 1, "error: no AVX2 here"))
    monkeypatch.setattr(int8_kernel, "_registered", lambda: False)  # (this process may have loaded it already)
    FakeCompiler.calls = 0
    with caplog.at_level(logging.WARNING, logger="gpt2_core.int8_kernel"):
        assert not int8_kernel.usable()
    assert "did not build or load" in caplog.text and "no AVX2 here" in caplog.text
    assert type(int8_linear(torch.nn.Linear(64, 8))) is Int8Linear
    assert not list(fresh_loader.rglob("*.so"))  # the half-written library was never put where a start loads from
    int8_kernel._loaded.cache_clear()  # the next start
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="gpt2_core.int8_kernel"):
        assert not int8_kernel.usable()
    assert FakeCompiler.calls == 1 and "failed to build before" in caplog.text and "no AVX2 here" in caplog.text


def test_outputs_that_are_wrong_keep_pytorchs_kernel(fresh_loader, monkeypatch, caplog):
    needs_a_build()
    monkeypatch.setattr(int8_kernel, "_check", lambda: "2 rows by 43 channels differ from exact sums by up to 512")
    with caplog.at_level(logging.WARNING, logger="gpt2_core.int8_kernel"):
        assert not int8_kernel.usable()
    assert "outputs are wrong here (2 rows by 43 channels" in caplog.text


@pytest.mark.parametrize("broken", ["off by one", "nan", "raises"])
def test_the_check_finds_a_kernel_that_is_off_nan_or_raising(kernel, monkeypatch, caplog, broken):
    real = kernel.int8_rows_linear

    def wrong(x, packed, scales, bias):
        y = real(x, packed, scales, bias)
        if broken == "raises":
            raise ValueError("illegal instruction")
        y[-1, -1] = y[-1, -1] + 1 if broken == "off by one" else float("nan")
        return y

    monkeypatch.setattr(torch.ops.gpt2_core, "int8_rows_linear", wrong)
    int8_kernel._loaded.cache_clear()
    try:
        if broken == "raises":
            with caplog.at_level(logging.WARNING, logger="gpt2_core.int8_kernel"):
                assert not int8_kernel.usable()
            assert "illegal instruction" in caplog.text
        else:
            assert "differ from exact sums" in int8_kernel._check()
    finally:
        monkeypatch.undo()
        int8_kernel._loaded.cache_clear()
    assert int8_kernel._check() == ""


@pytest.mark.slow
def test_the_built_kernel_is_kept_for_the_next_start_and_rebuilt_if_others_can_write_it(fresh_loader, monkeypatch):
    needs_a_build()
    first = int8_kernel._built()
    assert first.parent.parent == fresh_loader / "kernels" and first.exists()
    assert first.parent.stat().st_mode & 0o077 == 0  # code the app runs: the user's folder alone
    monkeypatch.setattr(int8_kernel.subprocess, "Popen", lambda *a, **k: pytest.fail("built again"))
    assert int8_kernel._built() == first
    first.chmod(0o666)  # as if planted by someone else: not loaded, built again
    monkeypatch.setattr(int8_kernel.subprocess, "Popen", FakeCompiler(b"rebuilt", 0, ""))
    assert int8_kernel._built() == first and first.read_bytes() == b"rebuilt"


@pytest.mark.parametrize("machine, level, expected", [
    ("arm64", "DEFAULT", "for Linux on x86-64"),
    ("x86_64", "AVX512", "best vector level is AVX2, this one's is AVX512"),
])
def test_other_cpus_are_told_why_the_kernel_is_not_theirs(monkeypatch, machine, level, expected):
    monkeypatch.setattr(int8_kernel.platform, "machine", lambda: machine)
    monkeypatch.setattr(int8_kernel.sys, "platform", "linux")
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: level)
    assert expected in int8_kernel._unsupported()


def test_another_openmp_runtime_is_a_reason(monkeypatch):
    monkeypatch.setattr(int8_kernel.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(int8_kernel.sys, "platform", "linux")
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    monkeypatch.setattr(int8_kernel, "_compiler", lambda: "/usr/bin/g++")
    monkeypatch.setattr(int8_kernel, "_torch_uses_libgomp", lambda: False)
    assert "another OpenMP runtime" in int8_kernel._unsupported()


def test_no_compiler_is_a_reason_too(monkeypatch):
    monkeypatch.setattr(int8_kernel.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(int8_kernel.sys, "platform", "linux")
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    monkeypatch.setattr(int8_kernel, "_compiler", lambda: None)
    assert int8_kernel._unsupported() == "no C++ compiler (g++) to build the kernel"


def test_describing_the_model_reads_no_unpacked_weights(kernel, tiny_checkpoint, monkeypatch):
    """The model panel and every explanation describe the model; `weight` unpacks a copy (163 MB for gpt2), so the
    memory count must read the stored bytes only."""
    from gpt2_core import load_model

    lm = load_model(tiny_checkpoint, device="cpu", quantize="int8", compile=False)
    try:
        assert type(lm.model.lm_head) is Int8RowsLinear
        stored = sum(t.numel() * t.element_size() for t in [*lm.model.parameters(), *lm.model.buffers()])

        def unpacking(self):
            raise AssertionError("describe() unpacked an int8 weight")

        monkeypatch.setattr(Int8RowsLinear, "weight", property(unpacking))
        assert lm.describe().memory_bytes == stored
        assert torch.equal(lm.model.wte(torch.tensor([-1])), lm.model.wte(torch.tensor([lm.config.vocab_size - 1])))
    finally:
        lm.close()

"""The matrix products of one decode step, kernel by kernel: where ONNX Runtime's int8 lead over gpt2_core comes from.

    python benchmarks/bench_int8_kernels.py                    # gpt2 shape; 1, 8 and 32 rows; PyTorch's kernels
    .venv-peers/bin/python benchmarks/bench_int8_kernels.py    # adds ONNX Runtime's (benchmarks/requirements-peers.txt)

A decode step multiplies its activations by 49 matrices in gpt2 (4 per block and the LM head, 124M weights), and at
one row it has to read them all from memory. `bench_peers.py` times whole engines; this times those 49 products alone,
for 1 row (a lone caller's step), 8 (eight callers' step) and 32 (a 32-token prompt's prefill), through each kernel,
the kernels alternated over rounds in one process:

- gpt2_core int8 by int8: `Int8RowsLinear`, the project's kernel for AVX2 (gpt2_core/int8_kernel.py; where it serves,
  the default path's since it exists): each activation row rounded to int8 with its own scale, int8 by int8 products
  with exact int32 sums. torch.compile calls it as it is, so one row stands for eager and compiled.
- gpt2_core eager int8 on PyTorch's kernel: `Int8Linear` (`_weight_int8pack_mm`: activations rounded to bf16, int8
  weights widened); the default path's where the project's kernel does not serve (GPT2_INT8_KERNEL=off elsewhere).
- gpt2_core compiled int8: the same modules through torch.compile with the decode step's Inductor options
  (`CPU_OPTIONS`: the weights frozen, Inductor's C++ template widening them in registers), as the engine compiles
  them: a graph for one row, and a batch graph (rows symbolic) for more, with the engine's register blocks
  (`int8_blocking`: on AVX2 the lone graph's in 48 columns, on AVX-512 the batch graph's in 4 rows); the row after it
  has Inductor's own blocking, as the engine had before.
- PyTorch dynamic int8 (fbgemm, `quantized::linear_dynamic`): activations quantized per call (one scale per tensor;
  7 bits, `reduce_range`, as PyTorch's dynamic quantization does on x86), products int8 by int8. Deprecated by
  PyTorch in favour of torchao; here as the int8-by-int8 kernel at hand.
- PyTorch `_int_mm` (oneDNN), 8-bit activations per row: what an int8-by-int8 path in gpt2_core would use. Each row of
  activations gets its own scale (symmetric, its largest value to 127), so that rows stay independent and a row's
  int32 sums would not depend on its batch; eager, and compiled as the decode step is (ATen's kernel: Inductor's C++
  template has no int8-by-int8 choice). Whether this CPU's kernel sums exactly is checked too (`int_mm_exact`):
  oneDNN's kernels for CPUs without VNNI add int8 pairs in 16 bits, which saturate.
- ONNX Runtime int8: the products as `bench_peers.py`'s ONNX model has them (`quantize_dynamic`, QInt8 weights, 8-bit
  activations per call), in one session run per step.
- fp32 `F.linear`: the weights in fp32 (4x the bytes), the memory-bound reference.

The weights are random at GPT-2's init scale (speed does not depend on the values). Each cell is the median over
--rounds of the fastest of --passes passes; "GB/s" is the weights' bytes over the 1-row time, the bandwidth the kernel
streams them at.

From products to tokens: a second table follows gpt2_core's default path (int8, compiled) from its products alone to
its whole decode step (the graph: products, attention, LayerNorms, GELU, Dynamo's guards) and to a token as
`lm.generate` delivers it (the step, then sampling top-k 40 at temperature 0.8, the token's probability and rank,
streaming), on a gpt2-shaped random checkpoint, the step timed on the engine's thread as it decodes. The kernels'
rounds come first, on threads that end, and the model is loaded after them: a thread that ran kernels keeps an OpenMP
pool while it lives, and two pools on the cores slow each other's kernels (gpt2_core/threads.py), so kernels timed
beside a live engine read slow.

What the faster kernels' 8-bit activations would cost: a third table, on the bundled model (trained) and held-out
Macbeth as tests/test_quantize.py measures int8, gives top-1 agreement with fp32 for gpt2_core's int8 and for int8
weights with activations rounded to 8 bits as ONNX Runtime rounds them (per call, zero point and scale from the
input's range; at one row per step, one scale per row), emulated in fp32. Prints markdown; --out also writes it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpt2_core import int8_kernel, load_model  # noqa: E402
from gpt2_core.checkpoint import BUNDLED  # noqa: E402
from gpt2_core.config import PRESETS, GPTConfig  # noqa: E402
from gpt2_core.generate.compiled import CPU_OPTIONS, _private_copy, int8_blocking  # noqa: E402
from gpt2_core.quantize import Int8Linear, Int8RowsLinear  # noqa: E402
from gpt2_core.testing import random_checkpoint  # noqa: E402
from gpt2_core.threads import on_a_thread_that_ends  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ROWS = (1, 8, 32)
PROMPT = "In a shocking finding, scientist discovered a herd of unicorns living in a remote, previously unexplored valley"
NEW_TOKENS = 128
Products = Callable[[torch.Tensor, torch.Tensor], Any]  # (x of n_embd, x of 4 n_embd) -> the 49 outputs
ROWS_KERNEL = "gpt2_core int8 by int8 (the project's AVX2 kernel, 8-bit activations per row)"  # the default's, where
COMPILED = "gpt2_core compiled int8 (Inductor's C++ template)"  # it serves; this one elsewhere
OWN_BLOCKING = "gpt2_core compiled int8 in Inductor's own register blocks (before)"
INT_MM = "PyTorch `_int_mm` (oneDNN), 8-bit activations per row"
ONNX_RUNTIME = "ONNX Runtime int8 (quantize_dynamic, 8-bit activations)"


def step_linears(config: GPTConfig) -> list[nn.Linear]:
    """The linear layers a decode step runs, in order: per block c_attn, attn.c_proj, c_fc, mlp.c_proj; then the LM
    head. Random weights at GPT-2's init scale (0.02), biases as the blocks have them."""
    C, generator = config.n_embd, torch.Generator().manual_seed(0)
    shapes = [(C, 3 * C), (C, C), (C, 4 * C), (4 * C, C)] * config.n_layer
    linears = [nn.Linear(i, o) for i, o in shapes] + [nn.Linear(C, config.vocab_size, bias=False)]
    with torch.no_grad():
        for linear in linears:
            linear.weight.normal_(0.0, 0.02, generator=generator)
            if linear.bias is not None:
                linear.bias.normal_(0.0, 0.02, generator=generator)
    return linears


class Chain(nn.Module):
    """The step's products as one module (the graph torch.compile sees): each layer applied to the input of its width."""

    def __init__(self, layers: list[nn.Module], n_embd: int):
        super().__init__()
        self.layers, self.n_embd = nn.ModuleList(layers), n_embd

    def forward(self, x: torch.Tensor, x_wide: torch.Tensor) -> list[torch.Tensor]:
        return [layer(x if layer.in_features == self.n_embd else x_wide) for layer in self.layers]


def compiled_int8(chain: Chain, *, blocking: bool = True, **options: Any) -> Products:
    """The int8 chain compiled as gpt2_core compiles its decode step on a CPU (`options` over CPU_OPTIONS): one graph
    for one row, and one with the row count symbolic for more, the batch graph, each with the engine's register blocks
    (`blocking`; else Inductor's own)."""
    lone, batch = (torch.compile(_private_copy(Chain.forward).__get__(chain), fullgraph=True, dynamic=dynamic)
                   for dynamic in (False, True))

    def run(x: torch.Tensor, x_wide: torch.Tensor) -> Any:
        rows = x.size(0)
        swap = int8_blocking(x.device, "lone" if rows == 1 else "batch") if blocking else contextlib.nullcontext()
        with torch._inductor.config.patch({**CPU_OPTIONS, **options}), swap:
            return (lone if rows == 1 else batch)(x, x_wide)

    return run


class RowInt8Linear(nn.Module):
    """Int8Linear's weights multiplied by its input rounded to 8 bits per row (symmetric), int8 by int8 with int32 sums
    (`torch._int_mm`), then scaled: the row's scale times each output channel's."""

    def __init__(self, q: Int8Linear):
        super().__init__()
        self.register_buffer("weight", q.weight)  # (out, in); `.t()` is the layout oneDNN reads fastest (measured)
        self.register_buffer("scales", q.scales.float())
        self.register_buffer("bias", q.bias)
        self.in_features, self.out_features = q.in_features, q.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features)
        scale = rows.abs().amax(-1, keepdim=True).clamp(min=1e-12) / 127
        quantized = torch.round(rows / scale).clamp(-127, 127).to(torch.int8)
        y = (torch._int_mm(quantized, self.weight.t()).float() * (scale * self.scales)).view(*x.shape[:-1], -1)
        return y if self.bias is None else y + self.bias


def int_mm_exact(rows: int = 8, width: int = 768) -> int:
    """The largest error of `torch._int_mm`'s int32 sums on this CPU against exact ones, on random int8 in [-127, 127]
    (0: exact)."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randint(-127, 128, (rows, width), dtype=torch.int8, generator=generator)
    w = torch.randint(-127, 128, (512, width), dtype=torch.int8, generator=generator)
    return int((torch._int_mm(x, w.t()).long() - x.long() @ w.long().t()).abs().max())


def fbgemm_dynamic(linears: list[nn.Linear], n_embd: int) -> Products:
    """PyTorch's dynamic int8 linear (fbgemm) for each layer, its weights quantized per output channel as gpt2_core's."""
    packed = []
    with warnings.catch_warnings():  # quantized tensors are deprecated in favour of torchao (the module docstring)
        warnings.simplefilter("ignore")
        for linear in linears:
            w = linear.weight.detach()
            scales = (w.abs().amax(dim=1) / 127).double()
            q = torch.quantize_per_channel(w, scales, torch.zeros_like(scales, dtype=torch.long), 0, torch.qint8)
            packed.append((torch.ops.quantized.linear_prepack(q, linear.bias), linear.in_features))

    def run(x: torch.Tensor, x_wide: torch.Tensor) -> Any:
        # reduce_range: 7-bit activations, as PyTorch's dynamic quantization uses on x86 (avoids AVX2 saturation)
        return [torch.ops.quantized.linear_dynamic(x if n == n_embd else x_wide, p, True) for p, n in packed]

    return run


def onnxruntime_int8(linears: list[nn.Linear], n_embd: int, folder: Path, threads: int) -> Products:
    """The layers as one ONNX graph (MatMul + Add each), quantized by quantize_dynamic as bench_peers' model is."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime.quantization import QuantType, quantize_dynamic

    inputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, ["rows", width])
              for name, width in (("x", n_embd), ("x_wide", 4 * n_embd))]
    nodes, weights, outputs = [], [], []
    for i, linear in enumerate(linears):
        source = "x" if linear.in_features == n_embd else "x_wide"
        weights.append(numpy_helper.from_array(linear.weight.detach().T.contiguous().numpy(), f"w{i}"))
        nodes.append(helper.make_node("MatMul", [source, f"w{i}"], [f"mm{i}" if linear.bias is not None else f"y{i}"]))
        if linear.bias is not None:
            weights.append(numpy_helper.from_array(linear.bias.detach().numpy(), f"b{i}"))
            nodes.append(helper.make_node("Add", [f"mm{i}", f"b{i}"], [f"y{i}"]))
        outputs.append(helper.make_tensor_value_info(f"y{i}", TensorProto.FLOAT, ["rows", linear.out_features]))
    graph = helper.make_graph(nodes, "step_products", inputs, outputs, weights)
    fp32, int8 = folder / "products-fp32.onnx", folder / "products-int8.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(fp32))
    quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8)
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(int8), options, providers=["CPUExecutionProvider"])

    def run(x: torch.Tensor, x_wide: torch.Tensor) -> Any:
        return session.run(None, {"x": x.numpy(), "x_wide": x_wide.numpy()})

    return run


QUIET_S = 0.2  # before each kernel's passes: ONNX Runtime's threads spin on after its runs, taking a core, and the
# kernel after it in the rotation (always the project's: the order is cyclic) measured one row at 8-9 ms, not 4-5


def fastest_pass(run: Products, x: torch.Tensor, x_wide: torch.Tensor, passes: int) -> float:
    best = float("inf")
    for _ in range(passes):
        start = time.perf_counter()
        run(x, x_wide)
        best = min(best, time.perf_counter() - start)
    return best


def token_and_step_ms(lm: Any, seed: int) -> tuple[float, float]:
    """ms per token of `lm.generate` after the first (the decode rate bench_peers.py reports, inverted), and the
    median ms of its decode steps, timed where they run: on the engine's thread."""
    steps: list[float] = []
    decode = lm.engine.decode

    def timed(*args: Any) -> Any:
        start = time.perf_counter()
        logits = decode(*args)
        steps.append(time.perf_counter() - start)
        return logits

    lm.engine.decode = timed
    try:
        start = time.perf_counter()
        (sample,) = lm.generate(PROMPT, max_new_tokens=NEW_TOKENS, temperature=0.8, top_k=40, seed=seed, stop=None)
        total = time.perf_counter() - start
    finally:
        lm.engine.decode = decode
    return 1000 * (total - sample.time_to_first_token) / (len(sample.token_ids) - 1), 1000 * statistics.median(steps)


def eight_bit_activations(self: Int8Linear, x: torch.Tensor) -> torch.Tensor:
    """Int8Linear.forward with its input rounded to 8 bits per row as ONNX Runtime's DynamicQuantizeLinear rounds a
    call's input (uint8, a zero point, the range stretched to include 0), then multiplied in fp32 (emulation)."""
    low, high = x.amin(-1, keepdim=True).clamp(max=0), x.amax(-1, keepdim=True).clamp(min=0)
    scale = ((high - low) / 255).clamp(min=1e-12)
    zero = torch.round(-low / scale)
    rounded = (torch.clamp(torch.round(x / scale) + zero, 0, 255) - zero) * scale
    y = F.linear(rounded, self.weight.float() * self.scales.float()[:, None])
    return y if self.bias is None else y + self.bias


def symmetric_row_activations(self: Int8Linear, x: torch.Tensor) -> torch.Tensor:
    """Int8Linear.forward with its input rounded to 8 bits per row as RowInt8Linear rounds it (symmetric, no zero
    point), then multiplied in fp32 (emulation; exact where `_int_mm` sums exactly)."""
    scale = x.abs().amax(-1, keepdim=True).clamp(min=1e-12) / 127
    y = F.linear(torch.round(x / scale).clamp(-127, 127) * scale, self.weight.float() * self.scales.float()[:, None])
    return y if self.bias is None else y + self.bias


def activation_fidelity() -> list[str]:
    """Top-1 agreement with fp32 and mean KL(fp32 || int8) on the bundled model and held-out Macbeth, for gpt2_core's
    int8 on PyTorch's kernel, on the project's int8-by-int8 kernel, and for 8-bit activations emulated (markdown
    rows)."""
    fp32 = load_model(BUNDLED["mini-gpt2"], device="cpu", dtype="fp32")
    os.environ[int8_kernel.OFF] = "off"  # Int8Linear layers, whose forward the emulations replace
    try:
        int8 = load_model(BUNDLED["mini-gpt2"], device="cpu", quantize="int8", compile=False)
    finally:
        del os.environ[int8_kernel.OFF]
    rows_kernel = (load_model(BUNDLED["mini-gpt2"], device="cpu", quantize="int8", compile=False)
                   if int8_kernel.usable() else None)
    try:
        ids = fp32.tokenizer.encode((ROOT / "assets" / "texts" / "macbeth.txt").read_text(encoding="utf-8")[:40_000])
        T = fp32.config.block_size
        windows = torch.tensor([ids[i : i + T] for i in range(0, len(ids) - T, T)][:32])
        rows = []

        def row(name: str, logits: torch.Tensor) -> str:
            agree = (reference.argmax(-1) == logits.argmax(-1)).float().mean().item()
            kl = (reference.exp() * (reference - logits)).sum(-1).mean().item()
            return f"| {name} | {100 * agree:.1f}% | {kl:.4f} |"

        with torch.no_grad():
            reference = fp32.model(windows).log_softmax(-1)
            for name, forward in (("int8 weights, bf16 activations (gpt2_core's int8 on PyTorch's kernel)",
                                   Int8Linear.forward),
                                  ("int8 weights, 8-bit activations (as ONNX Runtime's, emulated)",
                                   eight_bit_activations),
                                  ("int8 weights, 8-bit activations per row, symmetric (as the `_int_mm` row's)",
                                   symmetric_row_activations)):
                with mock.patch.object(Int8Linear, "forward", forward):
                    rows.append(row(name, int8.model(windows).log_softmax(-1)))
            if rows_kernel is not None:
                rows.append(row("int8 weights, 8-bit activations per row (the project's kernel, measured)",
                                rows_kernel.model(windows).log_softmax(-1)))
        return rows
    finally:
        for lm in (fp32, int8, rows_kernel):
            if lm is not None:
                lm.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="gpt2", choices=list(PRESETS))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--passes", type=int, default=5, help="passes per round; the fastest counts")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", default=None, help="also write the table to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = PRESETS[args.shape]
    C = config.n_embd
    skipped: list[str] = []

    def build(tmp: Path) -> tuple[list[nn.Linear], int, dict[str, tuple[Products, int]], dict[int, Any]]:
        linears = step_linears(config)
        int8 = [Int8Linear(linear) for linear in linears]
        row_int8 = [RowInt8Linear(m) for m in int8]
        int8_bytes = sum(m.weight.numel() for m in int8)  # one byte per weight (scales and biases are 0.1%)
        kernels: dict[str, tuple[Products, int]] = {
            "gpt2_core eager int8 (`_weight_int8pack_mm`, bf16 activations)": (Chain(int8, C), int8_bytes),
            COMPILED: (compiled_int8(Chain(int8, C)), int8_bytes),
            OWN_BLOCKING: (compiled_int8(Chain(int8, C), blocking=False), int8_bytes),
            "PyTorch dynamic int8 (fbgemm, 7-bit activations)": (fbgemm_dynamic(linears, C), int8_bytes),
            INT_MM + ", eager": (Chain(row_int8, C), int8_bytes),
            INT_MM + ", compiled": (compiled_int8(Chain(row_int8, C), max_autotune_gemm_backends="ATEN"), int8_bytes),
            "fp32 `F.linear`": (Chain(linears, C), 4 * int8_bytes),
        }
        if int8_kernel.usable():
            kernels = {ROWS_KERNEL: (Chain([Int8RowsLinear(linear) for linear in linears], C), int8_bytes), **kernels}
        else:
            skipped.append("the project's int8-by-int8 kernel: it does not serve on this machine (the log says why)")
        try:
            kernels[ONNX_RUNTIME] = (onnxruntime_int8(linears, C, tmp, args.threads), int8_bytes)
        except ImportError as e:
            skipped.append(f"ONNX Runtime: {e.name} is not installed (pip install -r benchmarks/requirements-peers.txt)")
        inputs = {rows: (torch.randn(rows, C), torch.randn(rows, 4 * C)) for rows in ROWS}
        with torch.inference_mode():
            for run, _ in kernels.values():  # warm-up: compiles (a batch graph at 2 rows first, as the engine's),
                for x, x_wide in (inputs[1], (torch.randn(2, C), torch.randn(2, 4 * C)), *map(inputs.get, ROWS[1:])):
                    run(x, x_wide)  # ONNX Runtime's first runs
        return linears, int8_bytes, kernels, inputs

    # The kernels are timed on threads that end, before the model is loaded, and the model's steps on the engine's
    # thread: a thread that ran kernels keeps an OpenMP pool while it lives, and two pools on the cores slow both
    # threads' kernels (gpt2_core/threads.py). This thread runs none.
    with tempfile.TemporaryDirectory() as tmp:
        linears, int8_bytes, kernels, inputs = on_a_thread_that_ends(build, Path(tmp))
        times: dict[tuple[str, int], list[float]] = {(name, rows): [] for name in kernels for rows in ROWS}
        names = list(kernels)

        def time_round(r: int) -> None:
            with torch.inference_mode():
                for name in names[r % len(names):] + names[: r % len(names)]:  # a rotated order each round
                    time.sleep(QUIET_S)
                    for rows in ROWS:
                        times[name, rows].append(fastest_pass(kernels[name][0], *inputs[rows], args.passes))

        for r in range(args.rounds):
            on_a_thread_that_ends(time_round, r)
        lm = load_model(random_checkpoint(Path(tmp) / args.shape, config), device="cpu", quantize="int8", compile=True)
        assert lm.engine.decoding == "compiled", "the decode step did not compile (see the log)"
        tokens, steps = zip(*(token_and_step_ms(lm, seed=r) for r in range(args.rounds)), strict=True)
        lm.close()
    ms = {key: 1000 * statistics.median(values) for key, values in times.items()}
    lines = [
        f"# The {len(linears)} matrix products of a decode step, kernel by kernel ({args.shape} shape, "
        f"{int8_bytes / 1e6:.0f}M weights)",
        "",
        f"{platform.processor() or platform.machine()}, {args.threads} threads, torch {torch.__version__}; ms per "
        f"step's products, median over {args.rounds} alternated rounds of the fastest of {args.passes} passes",
        "",
        "| kernel | " + " | ".join(f"{rows} row{'s' * (rows > 1)} ms" for rows in ROWS) + " | weights GB/s at 1 row |",
        "|---" + "|---:" * (len(ROWS) + 1) + "|",
    ]
    for name, (_, nbytes) in kernels.items():
        cells = " | ".join(f"{ms[name, rows]:.2f}" for rows in ROWS)
        lines.append(f"| {name} | {cells} | {nbytes / ms[name, 1] / 1e6:.1f} |")
    error = int_mm_exact()
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA", "all this CPU has")
    lines += ["", f"`_int_mm`'s int32 sums on this CPU (oneDNN's instruction sets: {isa}): " + ("exact" if error == 0 else
              f"off by up to {error} on random int8 in [-127, 127] (16-bit pair sums saturating)")]
    lines += [f"\nSkipped: {reason}" for reason in skipped]
    default = ROWS_KERNEL if ROWS_KERNEL in kernels else COMPILED
    parts = [(f"the 49 products ({default.removeprefix('gpt2_core ')})", ms[default, 1]),
             ("the decode step: the graph (products, attention, LayerNorms, GELU, guards)", statistics.median(steps)),
             ("a token from `lm.generate` (the step, sampling, the token's probability and rank, streaming)",
              statistics.median(tokens))]
    if ONNX_RUNTIME in kernels:
        parts.append(("ONNX Runtime's 49 products, for comparison", ms[ONNX_RUNTIME, 1]))
    lines += ["", f"gpt2_core's default path (int8, compiled), one row, from products to tokens (the products above; then "
              f"the step and the token in {args.rounds} generations of {NEW_TOKENS} tokens, medians)", "",
              "| what | ms per token | tok/s |", "|---|---:|---:|"]
    lines += [f"| {name} | {value:.2f} | {1000 / value:.0f} |" for name, value in parts]
    lines += ["", "What 8-bit activations cost: the bundled model (mini-gpt2, trained) on held-out Macbeth, 32 windows of "
              "its context, against fp32", "", "| int8 path | top-1 equal to fp32 | mean KL(fp32 \\|\\| int8), nats |",
              "|---|---:|---:|", *activation_fidelity()]
    table = "\n".join(lines)
    print(table)
    if args.out:
        Path(args.out).write_text(table + "\n")


if __name__ == "__main__":
    main()

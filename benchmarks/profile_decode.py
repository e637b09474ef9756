"""Where a decode step (batch 1, or --batch rows) spends its time on a CPU: matmuls, attention, the LM head, the rest, Python.

    python benchmarks/profile_decode.py                    # gpt2 shape, fp32 eager and int8 eager
    python benchmarks/profile_decode.py --paths fp32 fp32-compiled int8
    python benchmarks/profile_decode.py --paths int8 --batch 8      # 8 rows decoded together (the engine's batches)

Runs 64 greedy decode steps per path (of --batch rows at once, default 1) under torch.profiler and groups the CPU
time of the operators (self time) into: block matmuls (attention and MLP projections), the LM head, attention (scaled
dot-product), LayerNorm, GELU, other ops; "Python and dispatch" is the wall time of the steps minus the operators' time.
Beside it, the memory roofline (the time to stream the weights once at the bandwidth a large matrix-vector product
reaches here). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_decode import roofline_gb_s  # noqa: E402

from gpt2_core import load_model  # noqa: E402
from gpt2_core.config import PRESETS  # noqa: E402
from gpt2_core.testing import random_checkpoint  # noqa: E402

STEPS = 64
GROUPS = [  # (group, substrings of operator names), first match wins
    ("attention", ("scaled_dot_product", "_flash_attention", "attention")),
    ("matmuls", ("addmm", "mm", "linear", "matmul", "_weight_int8pack", "bmm")),
    ("LayerNorm", ("layer_norm",)),
    ("GELU", ("gelu", "tanh")),
]


def group_of(name: str, lm_head_shape: bool) -> str:
    if lm_head_shape:
        return "LM head"
    low = name.lower()
    return next((group for group, keys in GROUPS if any(k in low for k in keys)), "other ops")


def profile_path(lm, label: str, batch: int = 1) -> dict:
    model, config = lm.model, lm.config
    decode = lm.engine.decode
    vocab = config.vocab_size
    with torch.inference_mode():
        cache = lm.backend.model.new_cache(batch, config.block_size, device=lm.device, dtype=lm.dtype)
        for row in range(batch):
            model.prefill(torch.tensor([[464, 3290, 373]]), cache, row)
        idx = torch.tensor([[11]] * batch)  # (B, 1)
        for position in range(3, 8):  # warm-up
            decode(idx, cache, [position] * batch)
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            start = time.perf_counter()
            for position in range(8, 8 + STEPS):
                logits = decode(idx, cache, [position] * batch)
                idx = logits.argmax(-1, keepdim=True)
            wall = time.perf_counter() - start
    totals: dict[str, float] = defaultdict(float)
    for event in prof.key_averages(group_by_input_shape=True):
        shapes = str(event.input_shapes)
        head = str(vocab) in shapes and event.key in ("aten::mm", "aten::addmm", "aten::linear", "aten::matmul",
                                                      "aten::_weight_int8pack_mm")
        totals[group_of(event.key, head)] += event.self_cpu_time_total / 1e6
    ops = sum(totals.values())
    row = {"path": label, "ms per token" if batch == 1 else f"ms per step of {batch}": 1000 * wall / STEPS}
    for group in ("matmuls", "LM head", "attention", "LayerNorm", "GELU", "other ops"):
        row[group] = 1000 * totals.get(group, 0.0) / STEPS
    row["Python and dispatch"] = max(0.0, 1000 * (wall - ops) / STEPS)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="gpt2", choices=list(PRESETS))
    parser.add_argument("--paths", nargs="+", default=["fp32", "int8"], choices=["fp32", "fp32-compiled", "int8"])
    parser.add_argument("--batch", type=int, default=1, help="rows decoded together in each step")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    checkpoint = random_checkpoint(Path(tempfile.gettempdir()) / "gpt2-playground-bench" / args.shape,
                                   PRESETS[args.shape])
    bandwidth = roofline_gb_s()
    rows = []
    for path in args.paths:
        lm = load_model(checkpoint, device="cpu", quantize="int8" if path == "int8" else None,
                        compile=path == "fp32-compiled")
        row = profile_path(lm, path, args.batch)
        row["roofline ms"] = 1000 * lm.memory_bytes() / (bandwidth * 1e9)
        rows.append(row)
        lm.close()
    columns = list(rows[0])
    lines = [f"# Batch-{args.batch} decode step, {args.shape} shape, CPU ({torch.get_num_threads()} threads, torch "
             f"{torch.__version__}); weights streamed at {bandwidth:.1f} GB/s give the roofline", "",
             "| " + " | ".join(columns) + " |", "|---" + "|---:" * (len(columns) - 1) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(str(row[c]) if c == "path" else f"{row[c]:.1f}" for c in columns) + " |")
    table = "\n".join(lines)
    print(table)
    if args.out:
        Path(args.out).write_text(table + "\n")


if __name__ == "__main__":
    main()

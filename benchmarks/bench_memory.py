"""Measured weight memory and speed of one GPT-2 size at each precision (fp32/fp16/bf16, int8, nf4).

    python benchmarks/bench_memory.py --shape gpt2 --device cpu
    python benchmarks/bench_memory.py --shape gpt2-xl --device cuda

Random weights in the real shape. Prints a table beside gpt2_core.memory's estimates and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpt2_core import load_model  # noqa: E402
from gpt2_core.config import PRESETS  # noqa: E402
from gpt2_core.memory import estimate_weight_bytes  # noqa: E402
from gpt2_core.testing import random_checkpoint  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="gpt2", choices=list(PRESETS))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    config = PRESETS[args.shape]
    checkpoint = random_checkpoint(Path(tempfile.gettempdir()) / "gpt2-playground-bench" / args.shape, config)
    half = "fp16" if args.device.startswith("cuda") else "bf16"
    variants = [("fp32", "fp32", None), (half, half, None), ("int8", half if half == "fp16" else "fp32", "int8"),
                ("nf4", half if half == "fp16" else "fp32", "nf4")]
    rows = []
    for name, dtype, quantize in variants:
        if args.device.startswith("cuda"):
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        lm = load_model(checkpoint, device=args.device, dtype=dtype, quantize=quantize)
        prompt = "In a shocking finding,"
        lm.generate(prompt, max_new_tokens=8, seed=0)  # warm up the same shapes (lazy CUDA kernel loading)
        runs = []
        for _ in range(3):
            start = time.perf_counter()
            (s,) = lm.generate(prompt, max_new_tokens=64, seed=0, top_k=40)
            runs.append(len(s.token_ids) / (time.perf_counter() - start))
        tps = sorted(runs)[1]
        peak = torch.cuda.max_memory_allocated() if args.device.startswith("cuda") else None
        estimate = estimate_weight_bytes(config, {"bf16": "fp16"}.get(name, name))
        rows.append({"precision": name, "weights_mib": lm.memory_bytes() / 2**20, "estimate_mib": estimate / 2**20,
                     "peak_gpu_mib": peak / 2**20 if peak else None, "tokens_per_s": tps})
        lm.close()
        del lm
    print(f"{args.shape} on {args.device}\n\n| precision | weights (measured) | estimate | peak GPU memory | tok/s |"
          "\n|---|---:|---:|---:|---:|")
    for r in rows:
        peak = f"{r['peak_gpu_mib']:.0f} MiB" if r["peak_gpu_mib"] else "-"
        print(f"| {r['precision']} | {r['weights_mib']:.0f} MiB | {r['estimate_mib']:.0f} MiB | {peak} "
              f"| {r['tokens_per_s']:.1f} |")
    out = Path(args.out) if args.out else Path(__file__).parent / "results" / f"memory-{args.shape}-{args.device}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"shape": args.shape, "device": args.device, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()

"""What Dynamo's guards on the model's modules cost a compiled CPU decode step, and what skipping them saves.

    python benchmarks/bench_guards.py            # gpt2 shape, CPU default (int8), 1 and 8 rows at about 100 positions

The CPU graphs are frozen: the model's weights and module attributes are constants in them, so the guards on the
modules check nothing a graph could honour (gpt2_core/generate/compiled.py skips them since the change that added
this script). Both variants are compiled in one process on one model (the lone graph and the batch graph each), then
timed alternated over --rounds rounds of --steps steps; the median is reported, with the size of each lone graph's
and the batch graph's guard trees (lines of their printouts: what Dynamo checks before each step). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import gpt2_core.generate.compiled as compiled  # noqa: E402
from gpt2_core import load_model  # noqa: E402
from gpt2_core.config import PRESETS  # noqa: E402
from gpt2_core.testing import random_checkpoint  # noqa: E402

POSITIONS = 100


def compile_with(skip_module_guards: bool):
    """torch.compile as compiled.py calls it, with or without the guard filter."""
    real = torch.compile

    def patched(fn, **kwargs):
        kwargs["options"] = {"guard_filter_fn": torch.compiler.skip_guard_on_all_nn_modules_unsafe} \
            if skip_module_guards else None
        return real(fn, **kwargs)

    return patched


def guard_lines(step: compiled.CompiledDecode, rows: int) -> str:
    """The lines of the guard tree of the graph that serves `rows` rows, as Dynamo prints it (a private API of torch
    2.13: '?' if it moved)."""
    try:
        from torch._C._dynamo.eval_frame import _debug_get_cache_entry_list

        graph = step.lone if rows == 1 else step.batch
        entries = _debug_get_cache_entry_list(graph._torchdynamo_orig_callable.__func__.__code__)
        return " + ".join(str(len(str(entry.guard_manager).splitlines())) for entry in entries)
    except (ImportError, AttributeError):
        return "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=60)
    args = parser.parse_args()
    variants = {"all guards (before)": False, "modules' guards skipped (now)": True}
    with tempfile.TemporaryDirectory() as work:
        lm = load_model(random_checkpoint(Path(work) / "gpt2", PRESETS["gpt2"]), device="cpu", compile=False)
        model, real = lm.backend.model, torch.compile
        steps = {}
        for name, skip in variants.items():
            try:
                torch.compile = compile_with(skip)  # (compiled.py calls it as it builds its two graphs)
                step = compiled.CompiledDecode(model, torch.device("cpu"), batches=True)
            finally:
                torch.compile = real
            step.warm_up(dtype=torch.float32)
            step.warm_up_batches(dtype=torch.float32)
            steps[name] = step
        rows_out = []
        for rows in (1, 8):
            positions = [POSITIONS - r for r in range(rows)]
            times: dict[str, list[float]] = {name: [] for name in steps}
            with torch.inference_mode():  # (the inputs too, as the engine's: else a recompile for their dispatch keys)
                idx = torch.randint(0, model.config.vocab_size, (rows, 1))
                cache = model.new_cache(rows, model.config.block_size, device=torch.device("cpu"), dtype=torch.float32)
                for r in range(rows):
                    model.prefill(torch.randint(0, model.config.vocab_size, (1, positions[r])), cache, r)
                outputs = {name: step(idx, cache, positions) for name, step in steps.items()}
                a, b = outputs.values()
                assert torch.equal(a, b), "the two variants must compute the same logits"
                for _ in range(args.rounds):
                    for name, step in steps.items():
                        start = time.perf_counter()
                        for _ in range(args.steps):
                            step(idx, cache, positions)
                        times[name].append((time.perf_counter() - start) / args.steps * 1e3)
                for name in steps:
                    rows_out.append((rows, name, statistics.median(times[name]), guard_lines(steps[name], rows)))
        lm.close()
    print(f"gpt2 shape, CPU int8 (the default), compiled, {torch.get_num_threads()} threads, about {POSITIONS} "
          f"positions; medians of {args.rounds} alternated rounds of {args.steps} steps\n")
    print("| rows | guards | ms a step | its graph's guard tree, lines |")
    print("|---:|---|---:|---:|")
    for rows, name, ms, lines in rows_out:
        print(f"| {rows} | {name} | {ms:.2f} | {lines} |")


if __name__ == "__main__":
    main()

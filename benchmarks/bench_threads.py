"""Tokens a second after other threads used PyTorch: what an OpenMP pool left on another thread costs the engine.

    python benchmarks/bench_threads.py              # gpt2 shape, int8 compiled (the CPU default once compiled)
    python benchmarks/bench_threads.py --rounds 5

GNU OpenMP keeps a pool of worker threads for every thread that ran a parallel kernel, as long as that thread lives,
and once the pools outnumber the cores it lets idle workers sleep instead of spinning, so each kernel of the engine's
decode step waits for its workers to wake (gpt2_core/threads.py). Each case runs in a fresh process, the cases
alternated over --rounds, and reports ms per token of `lm.generate` (128 new tokens, top-k 40, after the first
token; the best of 3 generations):

- "loaded on the caller's thread": the model loaded by load_model's body on the main thread, as before gpt2_core ran
  the loading on a thread of its own;
- "load_model": as it is now;
- "after an explanation on a live worker": load_model, then Next word and attention on a worker thread that stays
  alive (as a web server's do), run as gpt2_core runs them now;
- "... explained on the worker's own thread": the same explanations with their work on the worker thread itself, as
  before (the explanation methods' bodies, unwrapped);
- "beside another open model that generated": load_model, then a second model (the bundled mini-gpt2 in fp32, as the
  Build your own tab opens a visitor's model) generates a few tokens and stays open, idle. Its engine thread either
  stays, as before, or ends after the engine's idle time (`IDLE_S`), as now.

Prints a markdown table; --out also writes it.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CASES = {
    "loaded on the caller's thread (before)": "caller",
    "load_model (now)": "load_model",
    "after an explanation on a live worker thread, explained on the worker's own thread (before)": "explained-here",
    "after an explanation on a live worker thread (now)": "explained",
    "beside another open model that generated, its engine thread kept (before)": "other-kept",
    "beside another open model that generated, its engine thread ended idle (now)": "other-idle",
}

CASE = r'''
import queue, sys, threading, time
import torch
import gpt2_core.lm as lm_module
from gpt2_core import load_model
case, checkpoint = sys.argv[1], sys.argv[2]
settings = dict(device="cpu", quantize="int8", compile=True)
if case == "caller":
    lm = lm_module.load_model.__wrapped__(checkpoint, **settings)  # the body, on this thread
else:
    lm = load_model(checkpoint, **settings)
prompt = "In a shocking finding, scientist discovered a herd of unicorns living in a remote, previously unexplored valley"
if case.startswith("explained"):
    jobs = queue.Queue()
    def worker():  # a long-lived worker thread, as a web server's: it explains once, then waits for more work
        while (job := jobs.get()) is not None:
            job()
    threading.Thread(target=worker, daemon=True).start()
    done = threading.Event()
    if case == "explained-here":  # the methods' bodies, on the worker's thread itself
        explain = lambda: (type(lm).next_token_distribution.__wrapped__(lm, prompt),
                           type(lm).attention.__wrapped__(lm, prompt))
    else:
        explain = lambda: (lm.next_token_distribution(prompt), lm.attention(prompt))
    jobs.put(lambda: (explain(), done.set()))
    done.wait()
    time.sleep(0.3)
if case.startswith("other"):
    import gpt2_core.generate.engine as engine_module
    from gpt2_core.checkpoint import BUNDLED
    idle_s = engine_module.IDLE_S
    engine_module.IDLE_S = 1e9 if case == "other-kept" else idle_s  # (read as an engine thread starts)
    other = load_model(BUNDLED["mini-gpt2"], device="cpu", dtype="fp32")
    other.generate("To be, or not to be", max_new_tokens=8, seed=0)
    engine_module.IDLE_S = idle_s
    time.sleep(idle_s + 0.5)
times = []
for seed in range(3):
    start = time.perf_counter()
    (sample,) = lm.generate(prompt, max_new_tokens=128, temperature=0.8, top_k=40, seed=seed, stop=None)
    total = time.perf_counter() - start
    times.append(1000 * (total - sample.time_to_first_token) / (len(sample.token_ids) - 1))
print(min(times))
lm.close()
'''


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    import torch

    from gpt2_core.config import PRESETS
    from gpt2_core.testing import random_checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = random_checkpoint(Path(tmp) / "gpt2", PRESETS["gpt2"])
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        env.setdefault("TORCHINDUCTOR_CACHE_DIR", str(Path(tmp) / "inductor"))  # compiled once, then from the cache
        subprocess.run([sys.executable, "-c", CASE, "load_model", str(checkpoint)], env=env, check=True,
                       capture_output=True)  # the warm-up: fills the compile cache
        ms: dict[str, list[float]] = {name: [] for name in CASES}
        for r in range(args.rounds):
            names = list(CASES)
            for name in names[r % len(names):] + names[: r % len(names)]:
                out = subprocess.run([sys.executable, "-c", CASE, CASES[name], str(checkpoint)], env=env, check=True,
                                     capture_output=True, text=True).stdout.split()
                ms[name].append(float(out[-1]))
                print(f"round {r + 1}: {name}: {ms[name][-1]:.2f} ms/token", file=sys.stderr)
    lines = ["# Tokens after other threads used PyTorch (`benchmarks/bench_threads.py`)", "",
             f"gpt2 shape, int8 compiled, CPU ({torch.backends.cpu.get_cpu_capability()}), {torch.get_num_threads()} "
             f"threads, torch {torch.__version__}; ms per token of `lm.generate` (128 new tokens, top-k 40), best of 3 "
             f"in a fresh process, median over {args.rounds} alternated rounds", "",
             "| case | ms per token | tok/s |", "|---|---:|---:|"]
    for name, values in ms.items():
        median = statistics.median(values)
        lines.append(f"| {name} | {median:.2f} | {1000 / median:.0f} |")
    lines += ["", f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
              f"Python {platform.python_version()}. Command: `python benchmarks/bench_threads.py --rounds {args.rounds}`"]
    table = "\n".join(lines)
    print(table)
    if args.out:
        args.out.write_text(table + "\n")


if __name__ == "__main__":
    main()

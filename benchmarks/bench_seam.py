"""Decode speed of this checkout against an earlier commit of it, alternated: did a refactor cost speed?

    python benchmarks/bench_seam.py --before 2868062          # the commit before the backend seam (issue 20)

Both sides load the same gpt2-shaped checkpoint (random weights: speed does not depend on the values) on the CPU in
fp32 eager, and generate 128 tokens after a 32-token prompt (temperature 0.8, top-k 40): one caller alone, then 8
callers at once (the batching engine). The sides alternate, each round in a fresh process of each, and the table
gives the median over rounds with the spread (min..max), so that the difference can be read against the noise.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Runs inside each side's checkout: prints {"one": tok/s, "eight": aggregate tok/s}
MEASURE = r"""
import json, sys, threading, time
import torch
from gpt2_core import load_model
torch.set_num_threads(int(sys.argv[2]))
lm = load_model(sys.argv[1], device="cpu", dtype="fp32")
prompt = " ".join(["the"] * 32)
def once():
    start = time.perf_counter()
    (s,) = lm.generate(prompt, max_new_tokens=128, temperature=0.8, top_k=40, seed=0)
    return len(s.token_ids), time.perf_counter() - start
once()  # warm up
tokens, seconds = zip(*(once() for _ in range(3)))
one = sum(tokens) / sum(seconds)
done = []
def caller(i):
    (s,) = lm.generate(prompt, max_new_tokens=128, temperature=0.8, top_k=40, seed=i)
    done.append(len(s.token_ids))
start = time.perf_counter()
threads = [threading.Thread(target=caller, args=(i,)) for i in range(8)]
for t in threads: t.start()
for t in threads: t.join()
eight = sum(done) / (time.perf_counter() - start)
lm.close()
print(json.dumps(dict(one=one, eight=eight)))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", required=True, help="the earlier commit (any git revision)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        before = Path(tmp) / "before"
        before.mkdir()
        archive = subprocess.run(["git", "archive", args.before], cwd=ROOT, check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(before)], input=archive, check=True)
        checkpoint = Path(tmp) / "gpt2-shape"
        sys.path.insert(0, str(ROOT))
        from gpt2_core.config import PRESETS
        from gpt2_core.testing import random_checkpoint

        random_checkpoint(checkpoint, PRESETS["gpt2"])
        sides = {f"before ({args.before})": before, "after (this checkout)": ROOT}
        results: dict[str, dict[str, list[float]]] = {name: {"one": [], "eight": []} for name in sides}
        for round_ in range(args.rounds):
            for name, where in sides.items():  # alternated: drift on the machine reaches both sides alike
                out = subprocess.run([sys.executable, "-c", MEASURE, str(checkpoint), str(args.threads)], cwd=where,
                                     check=True, capture_output=True, text=True).stdout
                figures = json.loads(out.strip().splitlines()[-1])
                for key, value in figures.items():
                    results[name][key].append(value)
                print(f"round {round_ + 1} {name}: {figures['one']:.1f} tok/s alone, {figures['eight']:.1f} with 8",
                      file=sys.stderr)

    print(f"\ngpt2 shape, CPU fp32 eager, {args.threads} threads, 128 new tokens, median of {args.rounds} alternated "
          "rounds (min..max)\n")
    print("| side | 1 caller, tok/s | 8 callers, aggregate tok/s |\n|---|---|---|")
    for name, figures in results.items():
        cells = [f"{statistics.median(v):.1f} ({min(v):.1f}..{max(v):.1f})" for v in figures.values()]
        print(f"| {name} | {cells[0]} | {cells[1]} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()

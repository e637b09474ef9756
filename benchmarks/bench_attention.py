"""What the attention path costs: decoding with it present (and used between generations) against decoding alone, and
the time of one `lm.attention` call.

    python benchmarks/bench_attention.py                  # gpt2 (124M) shape, random weights, CPU fp32
    python benchmarks/bench_attention.py --rounds 7 --device cuda

`lm.attention` lives beside the model (gpt2_core/explain/attention.py), so decoding runs the same code either way; this
measures that claim. The contenders alternate over rounds in one process ("plain": generate only; "with attention":
an attention map of a 40-token sentence, then the same generation) and the median decode tokens/s is reported,
with greedy ids compared. Prints a markdown table; --out also writes it to a file.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpt2_core import load_model  # noqa: E402
from gpt2_core.config import PRESETS  # noqa: E402
from gpt2_core.testing import random_checkpoint  # noqa: E402

NEW_TOKENS = 64
PROMPT = "In a shocking finding, scientist discovered a herd of unicorns living in a remote, previously unexplored valley"
SENTENCE = ("The animal didn't cross the street because it was too tired, and the driver who had stopped for it "
            "waited patiently until it finally moved on.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="gpt2", choices=list(PRESETS))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", default=None, help="also write the table to this file")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        lm = load_model(random_checkpoint(Path(tmp) / args.shape, PRESETS[args.shape]), device=args.device)
        try:
            lm.generate(PROMPT, max_new_tokens=8, temperature=0)  # warm-up
            rates = {"plain": [], "with attention": []}
            ids = {}
            attention_s = []
            for _ in range(args.rounds):
                for name in rates:
                    if name == "with attention":
                        start = time.perf_counter()
                        tokens, weights = lm.attention(SENTENCE)
                        attention_s.append(time.perf_counter() - start)
                    start = time.perf_counter()
                    (sample,) = lm.generate(PROMPT, max_new_tokens=NEW_TOKENS, temperature=0)
                    rates[name].append(len(sample.token_ids) / (time.perf_counter() - start))
                    ids.setdefault(name, sample.token_ids)
            plain, attended = (statistics.median(rates[n]) for n in rates)
            lines = [
                f"# Attention path: {args.shape} shape, random weights, {lm.device}, {lm.precision}",
                f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}; "
                f"median of {args.rounds} alternated rounds, {NEW_TOKENS} greedy tokens each",
                "",
                "| contender | decode tokens/s | vs plain |",
                "|---|---:|---:|",
                f"| plain (generate only) | {plain:.1f} | 1.00x |",
                f"| with attention (a map, then generate) | {attended:.1f} | {attended / plain:.2f}x |",
                "",
                f"Greedy ids equal: {ids['plain'] == ids['with attention']}. One `lm.attention` call on "
                f"{len(tokens)} tokens ({tuple(weights.shape)}): median {1000 * statistics.median(attention_s):.0f} ms.",
            ]
        finally:
            lm.close()
    table = "\n".join(lines)
    print(table)
    if args.out:
        Path(args.out).write_text(table + "\n")


if __name__ == "__main__":
    main()

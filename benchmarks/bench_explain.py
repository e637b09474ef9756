"""What the explanations cost: decoding with and without alternatives, scoring a text, redrawing the next-word chart.

    python benchmarks/bench_explain.py                # gpt2 (124M) shape, random weights, CPU fp32
    python benchmarks/bench_explain.py --rounds 5 --device cuda

Side by side in one process, alternating the contenders over several rounds and reporting the median:
- decode tokens/s of one sample (and of 4 samples in one request) with alternatives=0 (ranks only, the default), 5
  and 20, for the default settings (top-k 40) and for top-p 0.9 without top-k (the sampler then sorts the vocabulary);
- score_text on 256, 1024 and 4096 tokens (the last in windows of the context);
- next_token_distribution on a 64-token prompt: cold (runs the model) and warm (cached logits, a slider moved).
The target (issue 8): decoding with alternatives=5 within 10% of its speed without. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
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
ENGLISH = ("The history of the printing press begins in the middle of the fifteenth century, when a goldsmith in Mainz "
           "combined movable metal type, oil-based ink and a wooden screw press into a system that could print many "
           "copies of a page quickly and cheaply. ") * 200
SETTINGS = {"top-k 40": dict(temperature=0.8, top_k=40), "top-p 0.9": dict(temperature=0.8, top_k=0, top_p=0.9)}


def decode_rate(lm, prompt: str, *, alternatives: int, num_samples: int, settings: dict) -> float:
    start = time.perf_counter()
    samples = lm.generate(prompt, max_new_tokens=NEW_TOKENS, seed=0, num_samples=num_samples,
                          alternatives=alternatives, **settings)
    tokens = sum(len(s.token_ids) for s in samples)
    return tokens / (time.perf_counter() - start)


def median_of(fn, rounds: int) -> float:
    return statistics.median(fn() for _ in range(rounds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="gpt2", choices=list(PRESETS))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-decode", action="store_true", help="skip the decode table (minutes on a CPU)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "explain-cpu.json"))
    args = parser.parse_args()

    checkpoint = random_checkpoint(Path(tempfile.gettempdir()) / f"gpt2-playground-{args.shape}", PRESETS[args.shape])
    lm = load_model(checkpoint, device=args.device)
    prompt = lm.decode(list(range(1000, 1032)))
    lm.generate(prompt, max_new_tokens=8, alternatives=5)  # warm-up

    results = {"machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
                          f"torch {torch.__version__}", "shape": args.shape, "device": args.device, "decode": []}
    print(f"decode, {args.shape}, {args.device}, {NEW_TOKENS} new tokens, median of {args.rounds} alternating rounds")
    print("| settings | samples | alternatives=0 | alternatives=5 | alternatives=20 | 5 vs 0 |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, settings in ({} if args.no_decode else SETTINGS).items():
        for num_samples in (1, 4):
            rates: dict[int, list[float]] = {0: [], 5: [], 20: []}
            for _ in range(args.rounds):  # alternate, so that a slow moment hits every contender alike
                for n in rates:
                    rates[n].append(decode_rate(lm, prompt, alternatives=n, num_samples=num_samples,
                                                settings=settings))
            med = {n: statistics.median(r) for n, r in rates.items()}
            ratio = med[5] / med[0]
            results["decode"].append(dict(settings=name, num_samples=num_samples, tok_s=med, ratio_5_vs_0=ratio))
            print(f"| {name} | {num_samples} | {med[0]:.1f} tok/s | {med[5]:.1f} tok/s | {med[20]:.1f} tok/s | "
                  f"{ratio:.2f}x |")

    results["score_text"] = {}
    print("\n| score_text | seconds | tokens/s |\n|---:|---:|---:|")
    for n in (256, 1024, 4096):
        text = " ".join(ENGLISH.split()[: int(n / 1.3)])  # plain English: about 1.3 tokens a word
        n_tokens = len(lm.tokenizer.encode(text))
        seconds = median_of(lambda text=text: _timed(lambda: lm.score_text(text, top=5)), max(1, args.rounds // 2))
        results["score_text"][n_tokens] = seconds
        print(f"| {n_tokens} tokens | {seconds:.2f} | {n_tokens / seconds:.0f} |")

    long_prompt = lm.decode(list(range(2000, 2064)))
    cold = _timed(lambda: lm.next_token_distribution(long_prompt, temperature=1.0, k=20))
    warm = median_of(lambda: _timed(lambda: lm.next_token_distribution(long_prompt, temperature=0.5, top_p=0.9,
                                                                        k=20)), args.rounds)
    results["next_token_distribution"] = dict(cold_s=cold, warm_s=warm)
    print(f"\nnext_token_distribution, 64-token prompt: cold {cold * 1000:.0f} ms (runs the model), "
          f"warm {warm * 1000:.1f} ms (cached logits: a slider moved)")
    lm.close()
    Path(args.out).write_text(json.dumps(results, indent=1))
    print(f"\nwrote {args.out}")


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


if __name__ == "__main__":
    main()

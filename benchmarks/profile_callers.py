"""Where concurrent callers' time goes in the engine: decode steps, prefills, and the rest (sampling, streaming).

    python benchmarks/profile_callers.py                       # the CPU default: int8, both graphs compiled first
    python benchmarks/profile_callers.py --callers 8 --rounds 3
    python benchmarks/profile_callers.py --one-prefill-each    # also the callers' prompts prefilled one at a time
    python benchmarks/profile_callers.py --kernels both        # int8 by int8 (the project's kernel) against PyTorch's
    python benchmarks/profile_callers.py --kernels cache       # the project's kernel, its fp16 KV cache against fp32

Loads a gpt2-shaped checkpoint (random weights) the way `load_model(path)` does on a CPU, but compiles before it
measures (compile=True: the lone graph and, for int8, the batch graph), so every step runs compiled. Then, alternated
for --rounds rounds, 1 caller and --callers callers at once each generate 128 tokens from the same 32-token prompt
(top-k 40, temperature 0.8), and the engine's decode step and the model's prefill are timed where the engine calls
them. "other" is the rest of the wall time: sampling, ranks, events and the callers' threads. "steps alone" is the
aggregate if only the decode steps took time: the ceiling that a cheaper loop could reach. --one-prefill-each adds,
alternated in the same rounds, the callers with their prompts prefilled one at a time (the engine before it prefilled
waiting prompts together). --kernels both loads the checkpoint twice, once multiplied int8 by int8 (the project's
kernel, gpt2_core/int8_kernel.py) and once by PyTorch's kernels (GPT2_INT8_KERNEL=off), and alternates them in the
same rounds; each engine ends its thread between runs (a short IDLE_S), so that one's OpenMP pool does not slow the
other's kernels. --kernels cache alternates the project's kernels as they serve (keys and values cached in fp16,
read by gpt2_core/decode_attention.cpp) with the same int8 kernel and an fp32 cache (ATen's attention, as before).
Prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import gpt2_core.generate.engine as engine_module  # noqa: E402
from gpt2_core import int8_kernel, load_model  # noqa: E402
from gpt2_core.config import PRESETS  # noqa: E402
from gpt2_core.testing import random_checkpoint  # noqa: E402

NEW_TOKENS, PROMPT_TOKENS = 128, 32


class Timed:
    """Wraps the engine's decode step and the model's prefill, adding up their wall time."""

    def __init__(self, engine, model):
        self.engine, self.model = engine, model
        self.decode, self.prefill = engine.decode, model.prefill
        engine.decode, model.prefill = self._decode, self._prefill
        self.reset()

    def reset(self) -> None:
        self.decode_s = self.prefill_s = 0.0
        self.steps = self.rows = 0

    def _decode(self, idx, cache, positions):
        start = time.perf_counter()
        out = self.decode(idx, cache, positions)
        self.decode_s += time.perf_counter() - start
        self.steps += 1
        self.rows += len(positions)
        return out

    def _prefill(self, *args, **kwargs):
        start = time.perf_counter()
        out = self.prefill(*args, **kwargs)
        self.prefill_s += time.perf_counter() - start
        return out


def run(lm, timed: Timed, callers: int, prompt: str) -> dict:
    timed.reset()
    made: list[int] = []

    def one(seed: int) -> None:
        (sample,) = lm.generate(prompt, max_new_tokens=NEW_TOKENS, temperature=0.8, top_k=40, seed=seed)
        made.append(len(sample.token_ids))

    threads = [threading.Thread(target=one, args=(seed,)) for seed in range(callers)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    return dict(tok_s=sum(made) / wall, wall=wall, decode=timed.decode_s, prefill=timed.prefill_s,
                other=wall - timed.decode_s - timed.prefill_s, rows=timed.rows / max(1, timed.steps),
                ms_step=1000 * timed.decode_s / max(1, timed.steps), ceiling=sum(made) / max(timed.decode_s, 1e-9))


KERNELS = {"rows": "int8 by int8 (the project's kernel)", "pytorch": "PyTorch's kernels",
           "fp32-cache": "int8 by int8, an fp32 cache (ATen's attention)"}
PAIRS = {"both": ["rows", "pytorch"], "cache": ["rows", "fp32-cache"]}


def load(checkpoint: Path, quantize: str, kernel: str):
    """The checkpoint as `load_model(path)` loads it on a CPU, compiled first, its int8 layers on `kernel` ("default":
    whichever load_model picks here)."""
    if kernel in ("rows", "fp32-cache") and not int8_kernel.usable():
        raise SystemExit("the int8-by-int8 kernel does not serve on this machine (the log says why)")
    if kernel == "pytorch":
        os.environ[int8_kernel.OFF] = "off"
    try:
        if kernel != "fp32-cache":
            return load_model(checkpoint, device="cpu", quantize=None if quantize == "none" else "int8", compile=True)
        lm = load_model(checkpoint, device="cpu", quantize=None if quantize == "none" else "int8", compile=False)
        lm.backend.model.cache_dtype = None  # before the graphs compile: they are traced for the cache they get
        lm.compile()
        return lm
    finally:
        os.environ.pop(int8_kernel.OFF, None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--callers", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--quantize", default="int8", choices=["int8", "none"])
    parser.add_argument("--one-prefill-each", action="store_true")
    parser.add_argument("--kernels", default="default", choices=["default", *PAIRS],
                        help="default: whichever int8 kernel load_model picks here; both: the project's and PyTorch's, "
                             "alternated; cache: the project's, with its fp16 KV cache and with an fp32 one")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    engine_module.IDLE_S = 0.2  # each engine's thread, and its OpenMP pool, ends between its runs
    kernels = PAIRS.get(args.kernels, ["default"])
    together = engine_module.PREFILL_TOKENS
    kinds = [(1, together), (args.callers, together)] + ([(args.callers, 0)] if args.one_prefill_each else [])
    results: dict[tuple[str, int, int], list[dict]] = {(k, c, t): [] for k in kernels for c, t in kinds}
    with tempfile.TemporaryDirectory() as work:
        checkpoint = random_checkpoint(Path(work) / "gpt2", PRESETS["gpt2"])
        lms, ready = {}, {}
        try:
            for kernel in kernels:
                start = time.perf_counter()
                lms[kernel] = load(checkpoint, args.quantize, kernel)
                ready[kernel] = time.perf_counter() - start
            timed = {kernel: Timed(lm.backend.engine, lm.backend.model) for kernel, lm in lms.items()}
            prompt = lms[kernels[0]].tokenizer.decode(list(range(1000, 1000 + PROMPT_TOKENS)))
            for _ in range(args.rounds):
                for kernel in kernels:
                    for callers, prefill_tokens in kinds:
                        engine_module.PREFILL_TOKENS = prefill_tokens  # 0: each prompt alone (the first always goes)
                        time.sleep(engine_module.IDLE_S + 0.3)  # the other engine's thread has ended
                        results[kernel, callers, prefill_tokens].append(run(lms[kernel], timed[kernel], callers, prompt))
                    engine_module.PREFILL_TOKENS = together
        finally:
            for lm in lms.values():
                lm.close()
    readiness = ", ".join(f"{KERNELS.get(k, k)} ready after {s:.0f} s" for k, s in ready.items())
    print(f"gpt2 shape, CPU {args.quantize}, compiled ({readiness}), {torch.get_num_threads()} threads; "
          f"{PROMPT_TOKENS}-token prompt, {NEW_TOKENS} new tokens; medians of {args.rounds} alternated rounds\n")
    print("| int8 kernel | callers | prompts prefilled | aggregate tok/s | wall s | decode steps s | rows/step | ms/step "
          "| prefills s | other s | steps alone tok/s |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    tok_s = {}
    for (kernel, callers, prefill_tokens), runs in results.items():
        m = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
        tok_s[kernel, callers, prefill_tokens] = m["tok_s"]
        how = "together" if prefill_tokens else "one at a time"
        print(f"| {KERNELS.get(kernel, 'as loaded')} | {callers} | {how} | {m['tok_s']:.1f} | {m['wall']:.2f} | "
              f"{m['decode']:.2f} | {m['rows']:.1f} | {m['ms_step']:.1f} | {m['prefill']:.2f} | {m['other']:.2f} | "
              f"{m['ceiling']:.1f} |")
    print()
    for kernel in kernels:
        one = tok_s[(kernel, *kinds[0])]
        print(f"{KERNELS.get(kernel, 'as loaded')}: " + "; ".join(
            f"{c} callers, prompts prefilled {'together' if t else 'one at a time'}: {tok_s[kernel, c, t] / one:.2f}x "
            "one caller" for c, t in kinds[1:]))
    if len(kernels) == 2:
        first, second = kernels
        for c, t in kinds:
            print(f"{c} caller(s): {KERNELS[first]} {tok_s[first, c, t] / tok_s[second, c, t]:.2f}x {KERNELS[second]}")


if __name__ == "__main__":
    main()

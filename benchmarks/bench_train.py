"""Training speed and memory on this machine: the tiny GPT-2 from scratch, and fine-tuning gpt2 (124M).

    python benchmarks/bench_train.py            # CPU, a minute or two

For each: tokens per second over 30 steps after 5 warm-up steps (batch 16 x 128 tokens for tiny, 4 x 128 for gpt2),
with and without bf16 autocast, and the process's peak memory. gpt2 uses random weights in its real shape (speed does
not depend on the values). Prints a table. Then the peak memory of fine-tuning gpt2 from the command line with the
defaults (the plan's window, micro-batch and accumulation), 3 steps on Macbeth: the child's ru_maxrss beside its plan.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpt2_core import load_model  # noqa: E402
from gpt2_core.config import PRESETS, GPTConfig  # noqa: E402
from gpt2_core.model import GPT  # noqa: E402
from gpt2_core.testing import random_checkpoint  # noqa: E402


def rate(model: GPT, batch: int, context: int, bf16: bool, steps: int = 30, warmup: int = 5) -> float:
    model.train().requires_grad_(True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randint(model.config.vocab_size, (batch, context))
    for i in range(warmup + steps):
        if i == warmup:
            start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model.loss(x, torch.roll(x, -1, 1))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return steps * batch * context / (time.perf_counter() - start)


def main() -> None:
    tiny = GPT(GPTConfig(vocab_size=4096, block_size=128, n_layer=4, n_head=4, n_embd=256))
    tiny.init_weights()
    checkpoint = random_checkpoint(Path(tempfile.gettempdir()) / "gpt2-playground-gpt2", PRESETS["gpt2"])
    gpt2 = load_model(checkpoint, device="cpu", dtype="fp32")
    gpt2.close()
    print(f"CPU training, {torch.get_num_threads()} threads, torch {torch.__version__}\n")
    print("| model | parameters | batch x context | fp32 tokens/s | bf16 autocast tokens/s |")
    print("|---|---:|---|---:|---:|")
    for name, model, batch in (("tiny (from scratch)", tiny, 16), ("gpt2 (fine-tune)", gpt2.model, 4)):
        fp32, bf16 = rate(model, batch, 128, False), rate(model, batch, 128, True)
        print(f"| {name} | {model.num_parameters() / 1e6:.1f}M | {batch} x 128 | {fp32:,.0f} | {bf16:,.0f} |")
    print(f"\npeak memory of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB")
    fine_tune_peak(checkpoint)


def fine_tune_peak(checkpoint: Path) -> None:
    """Fine-tune `checkpoint` from the CLI with the default window and batch for 3 steps; print the plan and the
    child's measured peak RSS (this process's RUSAGE_CHILDREN: the CLI is its only child)."""
    text = Path(__file__).resolve().parents[1] / "assets" / "texts" / "macbeth.txt"
    with tempfile.TemporaryDirectory() as out_dir:
        command = [sys.executable, "-m", "gpt2_core", "train", "--text", str(text), "--out", str(Path(out_dir) / "ft"),
                   "--init", str(checkpoint), "--steps", "3", "--json"]
        out = subprocess.run(command, capture_output=True, text=True, check=True)
    plan = json.loads(out.stdout.splitlines()[0])["plan"]
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    print(f"\nfine-tune gpt2 from the CLI, defaults (`python -m gpt2_core train --text macbeth.txt --out DIR "
          f"--init gpt2 --steps 3`): window {plan['context']}, micro-batch {plan['micro_batch']} x "
          f"{plan['accumulation']}, planned peak {plan['planned_peak_gb']:.2f} GB, measured peak RSS {peak / 1e9:.2f} GB")


if __name__ == "__main__":
    main()

"""A process's memory through a model's life: loading (its peak and what stays), one caller, 8 callers, then idle.

    python benchmarks/bench_load_memory.py                           # gpt2's shape: gpt2_core int8 and fp32, transformers
    python benchmarks/bench_load_memory.py --shape gpt2-medium --before 02f03a0   # and another commit's code beside

Random weights in the real shape (gpt2_core.testing.random_checkpoint). Each contender runs in a fresh process that
reads its own resident memory (RSS, MiB) from /proc (Linux): before loading (the libraries imported), the load's peak
(the peak is reset first, /proc/self/clear_refs), after loading, after one 128-token generation, the peak while 8
callers generate 128 tokens at once, and after the engine has idled (gpt2_core's engine hands a busy spell's KV
cache rows back then). gpt2_core loads with compile=False: the background compile's own memory (about 1 GB) is
precision.py's business, and would blur the rest. --before REV runs the same gpt2_core contenders from another
commit's code (`git archive`), alternated with this one's, so the change is measured side by side in one run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gpt2_core.config import PRESETS  # noqa: E402
from gpt2_core.testing import random_checkpoint  # noqa: E402

NEW_TOKENS = 128
CALLERS = 8
PROMPT = "In a shocking finding, scientist discovered a herd of unicorns living in a remote, previously unexplored " \
         "valley, in the Andes Mountains."

WORKER = """
import json, sys, threading, time
contender, checkpoint, new_tokens, callers, prompt = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]

def mib(field):
    return int(next(line for line in open("/proc/self/status") if line.startswith(field)).split()[1]) / 1024

def reset_peak():
    open("/proc/self/clear_refs", "w").write("5")

out = {}
if contender == "transformers":
    import torch
    from transformers import AutoTokenizer, GPT2LMHeadModel
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    reset_peak(); out["before"] = mib("VmRSS:")
    model = GPT2LMHeadModel.from_pretrained(checkpoint).eval()
    out["load_peak"], out["loaded"] = mib("VmHWM:"), mib("VmRSS:")
    ids = tokenizer(prompt, return_tensors="pt").input_ids
    kw = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=True, top_k=40, pad_token_id=0)
    with torch.no_grad():
        model.generate(ids, **kw)
        out["one"] = mib("VmRSS:")
        reset_peak()
        model.generate(ids.repeat(callers, 1), **kw)  # one call on the batch: how transformers serves many
    out["many_peak"] = mib("VmHWM:")
    out["idle"] = mib("VmRSS:")
else:
    import gpt2_core
    import gpt2_core.generate.engine as engine
    kwargs = {"int8": dict(quantize="int8", compile=False), "fp32": dict(dtype="fp32", quantize=None)}[contender]
    reset_peak(); out["before"] = mib("VmRSS:")
    lm = gpt2_core.load_model(checkpoint, **kwargs)
    out["load_peak"], out["loaded"] = mib("VmHWM:"), mib("VmRSS:")
    lm.generate(prompt, max_new_tokens=new_tokens, seed=0, top_k=40)
    out["one"] = mib("VmRSS:")
    reset_peak()
    threads = [threading.Thread(target=lm.generate, args=(prompt,), kwargs=dict(max_new_tokens=new_tokens, seed=i,
                                                                                top_k=40)) for i in range(callers)]
    [t.start() for t in threads]; [t.join() for t in threads]
    out["many_peak"] = mib("VmHWM:")
    time.sleep(getattr(engine, "IDLE_S", 2.0) + 1.0)
    out["idle"] = mib("VmRSS:")
print(json.dumps(out))
"""

COLUMNS = [("before", "before load"), ("load_peak", "load peak"), ("loaded", "after load"),
           ("one", "after 1 caller"), ("many_peak", f"{CALLERS} callers' peak"), ("idle", "idle after")]


def run_worker(code_root: Path, contender: str, checkpoint: Path, new_tokens: int = NEW_TOKENS) -> dict:
    done = subprocess.run([sys.executable, "-c", WORKER, contender, str(checkpoint), str(new_tokens), str(CALLERS),
                           PROMPT], cwd=code_root, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"{contender} in {code_root} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def code_at(rev: str, into: Path) -> Path:
    """The gpt2_core package (and assets) as commit `rev` had them, unpacked into `into`."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "gpt2_core", "assets"], capture_output=True,
                             check=True).stdout
    into.mkdir(parents=True, exist_ok=True)
    (into / "code.tar").write_bytes(archive)
    with tarfile.open(into / "code.tar") as tar:
        tar.extractall(into, filter="data")
    return into


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="gpt2", choices=list(PRESETS))
    parser.add_argument("--rounds", type=int, default=2, help="alternated rounds; the table gives the median")
    parser.add_argument("--before", default=None, help="a git revision whose gpt2_core runs beside this one's")
    parser.add_argument("--out", default=None, help="write the table (.md) and the figures (.json) here (a stem)")
    args = parser.parse_args()
    checkpoint = random_checkpoint(Path(tempfile.gettempdir()) / "gpt2-playground-bench" / args.shape,
                                   PRESETS[args.shape])
    contenders = [("gpt2_core int8 (this code)", ROOT, "int8"), ("gpt2_core fp32 (this code)", ROOT, "fp32")]
    if args.before:
        old = code_at(args.before, Path(tempfile.mkdtemp(prefix="bench-load-memory-")))
        contenders += [(f"gpt2_core int8 ({args.before})", old, "int8"), (f"gpt2_core fp32 ({args.before})", old, "fp32")]
    contenders.append(("transformers fp32", ROOT, "transformers"))
    runs: dict[str, list[dict]] = {name: [] for name, _, _ in contenders}
    started = time.time()
    for r in range(args.rounds):
        for name, code, contender in contenders[r % len(contenders):] + contenders[:r % len(contenders)]:
            runs[name].append(run_worker(code, contender, checkpoint))
            print(f"round {r + 1}: {name}: {runs[name][-1]}", file=sys.stderr)
    lines = [f"{args.shape} shape (random weights), CPU; process RSS in MiB, median of {args.rounds} alternated "
             f"rounds, each contender in a fresh process; {NEW_TOKENS} new tokens, {CALLERS} callers at once.", "",
             "| contender | " + " | ".join(title for _, title in COLUMNS) + " |",
             "|---|" + "---:|" * len(COLUMNS)]
    table = {}
    for name, _, _ in contenders:
        medians = {key: sorted(run[key] for run in runs[name])[(len(runs[name]) - 1) // 2] for key, _ in COLUMNS}
        table[name] = medians
        lines.append(f"| {name} | " + " | ".join(f"{medians[key]:.0f}" for key, _ in COLUMNS) + " |")
    lines.append(f"\n({time.time() - started:.0f} s)")
    print("\n".join(lines))
    if args.out:
        Path(args.out).with_suffix(".md").write_text("\n".join(lines) + "\n")
        Path(args.out).with_suffix(".json").write_text(json.dumps({"shape": args.shape, "runs": runs,
                                                                   "medians": table}, indent=1) + "\n")


if __name__ == "__main__":
    main()

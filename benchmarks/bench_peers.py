"""gpt2_core beside the CPU engines people pick for GPT-2: transformers, CTranslate2, ONNX Runtime, llama.cpp.

    pip install -r benchmarks/requirements-peers.txt      # in a venv of its own (.venv-peers, README "Performance")
    python benchmarks/bench_peers.py                      # all contenders, 3 rounds, 128 new tokens, 8 callers
    python benchmarks/bench_peers.py --rounds 1 --contenders transformers gpt2_core-fastest ctranslate2

Every contender runs the same gpt2-shaped checkpoint (124M; random weights, gpt2_core.testing.random_checkpoint, as
the other benchmarks: speed does not depend on the values), the same 32-token prompt, the same number of new tokens
(--new-tokens), sampling top-k 40 at temperature 0.8 (bench_decode's settings; every engine here can sample) and
--threads threads (default: every core). The contenders (peer_engines.py has each one's code):

- transformers `GPT2LMHeadModel.generate()` in fp32: the reference, 1.0x.
- gpt2_core default: `load_model(path)` with no precision flag. If it starts a background compile, the worker waits
  until `lm.engine.decoding` is "compiled" (at most --compile-timeout seconds) and "ready" says how long that took.
- gpt2_core fastest: `load_model(path, quantize="int8", compile=True)` (compiles before returning).
- gpt2_core exact: `load_model(path, dtype="fp32", quantize=None)`, eager.
- gpt2_core default and eager on PyTorch's int8 kernel (GPT2_INT8_KERNEL=off): the default as it was before the
  project's int8-by-int8 kernel, and as it is where that kernel does not serve (gpt2_core/int8_kernel.py).
- CTranslate2 int8, ONNX Runtime int8 (quantize_dynamic, a hand-written KV-cache loop), llama.cpp Q8_0.

Each contender runs in a process of its own (a worker, peer_engines.py), kept alive over all rounds. So "peak MiB"
is that contender's own peak resident memory: the interpreter, its libraries, its weights and caches, a compile's
machinery, from load to the last round (one process for all would report only the largest). The workers start one
after another, and each loads, converts nothing (conversions run before, each in its own process, cached in
$TMPDIR/gpt2-playground-bench), compiles if it does, and warms up before the next starts, so no load overlaps a
measurement. Then the rounds alternate the contenders, rotating their order each round, and only one works at a time;
the tables give medians over rounds.

What is measured, per round and contender:
- batch 1: one generation; time to first token (TTFT, from the call to the first new token: prefill and one draw),
  and decode tok/s = (tokens - 1) / (total - TTFT): the rate after the first token. "vs generate()" divides by
  transformers' decode rate.
- --callers callers at once (aggregate tok/s = all their tokens / wall time), each engine the way a server would run
  it: gpt2_core one thread per caller calling lm.generate (its engine batches them); transformers one generate() on a
  batch of the prompts; CTranslate2 one generate_batch(); ONNX Runtime one batch in its loop; llama-cpp-python not
  measured (its Llama decodes one sequence at a time, and its server queues requests).

Writes benchmarks/results/peers-cpu.json and peers-cpu.md (a "## Notes" section already in the .md is kept).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from peer_engines import ENGINES, missing  # noqa: E402

PROMPT = ("In a shocking finding, scientist discovered a herd of unicorns living in a remote, previously unexplored "
          "valley, in the Andes Mountains. Even more surprising to the researchers was the fact that the unicorns "
          "spoke perfect English.")  # OpenAI's GPT-2 prompt; its first 32 tokens are the prompt here
PROMPT_TOKENS = 32
LABELS = {
    "transformers": "transformers generate() fp32",
    "gpt2_core-default": "gpt2_core default `load_model(path)`",
    "gpt2_core-fastest": "gpt2_core fastest `quantize=\"int8\", compile=True`",
    "gpt2_core-eager": "gpt2_core default before its compile `quantize=\"int8\", compile=False`",
    "gpt2_core-exact": "gpt2_core exact `dtype=\"fp32\", quantize=None`",
    "gpt2_core-default-pytorch-kernel": "gpt2_core default on PyTorch's int8 kernel (`GPT2_INT8_KERNEL=off`)",
    "gpt2_core-eager-pytorch-kernel": "gpt2_core default before its compile, on PyTorch's int8 kernel",
    "ctranslate2": "CTranslate2 int8",
    "onnxruntime": "ONNX Runtime int8",
    "llama.cpp": "llama.cpp Q8_0 (llama-cpp-python)",
}
assert list(LABELS) == list(ENGINES)


def parse_contenders(names: Sequence[str] | None) -> list[str]:
    """The contenders named (commas or separate words), in the table's order; all of them for None or empty."""
    wanted = [n for name in names or [] for n in name.split(",") if n]
    unknown = [n for n in wanted if n not in ENGINES]
    if unknown:
        raise ValueError(f"`--contenders` has to name some of {', '.join(ENGINES)}, but has {', '.join(unknown)}")
    return [n for n in ENGINES if n in wanted] if wanted else list(ENGINES)


class Worker:
    """A contender's process (peer_engines.py serve): started, loaded and warmed up by the constructor."""

    def __init__(self, name: str, spec: dict[str, Any], log: Path):
        self.log = log.open("w")
        self.process = subprocess.Popen([sys.executable, str(HERE / "peer_engines.py"), "serve", name, json.dumps(spec)],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True,
                                        cwd=HERE.parent)
        self.ready = self._answer()

    def _answer(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            self.process.wait()
            tail = Path(self.log.name).read_text().strip().splitlines()[-1:] or ["no output"]
            raise RuntimeError(f"worker exited with {self.process.returncode}: {tail[0][:300]}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def ask(self, **request: Any) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        return self._answer()

    def quit(self) -> float:
        peak: float = self.ask(op="quit")["peak_rss_mib"]
        self.process.wait(timeout=60)
        self.log.close()
        return peak


def prepare(name: str, spec: dict[str, Any], log: Path) -> None:
    """Convert the checkpoint for `name` in a process of its own, unless a earlier run did (the folder is there)."""
    artifact = ENGINES[name].artifact
    if artifact is None or (Path(spec["work"]) / artifact).is_dir():
        return
    with log.open("w") as out:
        done = subprocess.run([sys.executable, str(HERE / "peer_engines.py"), "prepare", name, json.dumps(spec)],
                              stdout=out, stderr=subprocess.STDOUT, cwd=HERE.parent)
    if done.returncode != 0:
        shutil.rmtree(Path(spec["work"]) / artifact, ignore_errors=True)  # the next run tries again
        lines = [line for line in log.read_text().splitlines() if line.strip()]
        raise RuntimeError(f"conversion failed ({lines[-1][:300] if lines else done.returncode}); log: {log}")


def decode_rate(run: dict[str, Any]) -> float:
    """Tokens per second after the first token of a batch-1 run."""
    return float((run["tokens"] - 1) / (run["seconds"] - run["ttft_s"]))


def summarize(name: str, ready: dict[str, Any], ones: list[dict[str, Any]], manys: list[dict[str, Any]],
              peak_mib: float) -> dict[str, Any]:
    row = {"contender": name, "label": LABELS[name], "kind": ready["kind"], "serves": ready["serves"],
           "load_s": ready["load_s"], "ready_s": ready["ready_s"], "batches_ready_s": ready.get("batches_ready_s"),
           "versions": ready["versions"], "peak_mib": peak_mib,
           "decode_tok_s": statistics.median(decode_rate(r) for r in ones),
           "end_to_end_tok_s": statistics.median(r["tokens"] / r["seconds"] for r in ones),
           "ttft_ms": 1000 * statistics.median(r["ttft_s"] for r in ones),
           "aggregate_tok_s": statistics.median(r["tokens"] / r["seconds"] for r in manys) if manys else None,
           "runs": {"one": ones, "many": manys}}
    return row


def markdown(results: dict[str, Any]) -> str:
    """The table (and the skipped contenders with why) as Markdown."""
    s, rows = results["settings"], results["rows"]
    base = next((r["decode_tok_s"] for r in rows if r["contender"] == "transformers"), None)
    threads = f"{s['threads']} thread" + ("s" if s["threads"] > 1 else "")
    lines = [f"gpt2 shape (124M, random weights), CPU, {threads}, {s['prompt_tokens']}-token prompt, "
             f"{s['new_tokens']} new tokens, top-k {s['top_k']}, temperature {s['temperature']}, median of "
             f"{s['rounds']} alternated rounds; {s['callers']} callers at once for the aggregate.", "",
             f"| contender | kind | batch-1 decode tok/s | vs generate() fp32 | TTFT ms | {s['callers']}-caller "
             "aggregate tok/s | peak MiB | ready s |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        ratio = f"{r['decode_tok_s'] / base:.2f}x" if base else "-"
        aggregate = f"{r['aggregate_tok_s']:.1f}" if r["aggregate_tok_s"] is not None else "not measured"
        ready = f"{r['ready_s']:.0f}" if r["ready_s"] is not None else "-"
        if r.get("batches_ready_s") is not None:
            ready += f" (batches {r['batches_ready_s']:.0f})"
        lines.append(f"| {r['label']} | {r['kind']} | {r['decode_tok_s']:.1f} | {ratio} | {r['ttft_ms']:.0f} | "
                     f"{aggregate} | {r['peak_mib']:.0f} | {ready} |")
    lines += ["", "How each serves concurrent callers:", ""]
    lines += [f"- {r['label']}: {r['serves']}" for r in rows]
    if results["skipped"]:
        lines += ["", "Skipped:", ""] + [f"- {LABELS[n]}: {why}" for n, why in results["skipped"].items()]
    m = results["machine"]
    lines += ["", f"Machine: {m['cpu']}, {m['cores']} cores, load average {m['load_average']} at the start and "
                  f"{m.get('load_average_end', '?')} at the end (1, 5, 15 min); "
                  f"{m['platform']}; Python {m['python']}. Versions: "
                  + ", ".join(f"{k} {v}" for k, v in sorted(m["versions"].items())) + ".",
              f"Command: `{results['command']}` at commit {results.get('commit') or '?'} "
              f"({results['wall_s'] / 60:.1f} min)."]
    return "\n".join(lines)


def machine(versions: dict[str, str]) -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                    if line.startswith("model name")), cpu)
    for package in ("torch", "transformers"):
        try:
            versions.setdefault(package, version(package))
        except PackageNotFoundError:
            pass
    import torch

    # the instruction set ATen's kernels use here ("AVX2", "AVX512"): two "AMD EPYC"s with and without AVX-512 bf16
    # decode int8 at very different speeds, and the model name does not tell them apart
    cpu += f" (ATen kernels: {torch.backends.cpu.get_cpu_capability()})"
    return {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "load_average": " ".join(f"{x:.1f}" for x in os.getloadavg()), "versions": versions}


def prompt_ids(checkpoint: Path) -> tuple[list[int], str]:
    """The first PROMPT_TOKENS tokens of PROMPT, and their text (which tokenizes back to them)."""
    from gpt2_core.checkpoint import load_tokenizer

    tokenizer = load_tokenizer(checkpoint)
    ids = tokenizer.encode(PROMPT)[:PROMPT_TOKENS]
    text = str(tokenizer.decode(ids))
    assert tokenizer.encode(text) == ids, "the prompt's first tokens have to tokenize back to themselves"
    return ids, text


def keep_notes(path: Path) -> str:
    """The "## Notes" section of an earlier results file, written by hand (empty if none)."""
    if not path.is_file():
        return ""
    text = path.read_text()
    at = text.find("\n## Notes")
    return text[at:] if at >= 0 else ""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contenders", nargs="+", default=None, help=f"a subset of: {' '.join(ENGINES)}")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--callers", type=int, default=8, help="concurrent callers for the aggregate (1: skip it)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--compile-timeout", type=float, default=180, help="seconds to wait for the default's compile")
    parser.add_argument("--note", default="", help="a line put above the table (e.g. how busy the machine was)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "peers-cpu")
    args = parser.parse_args(argv)
    try:
        names = parse_contenders(args.contenders)
    except ValueError as e:
        parser.error(str(e))
    from bench_decode import SAMPLING

    from gpt2_core.config import PRESETS
    from gpt2_core.testing import random_checkpoint

    started = time.perf_counter()
    work = Path(tempfile.gettempdir()) / "gpt2-playground-bench"
    checkpoint = random_checkpoint(work / "gpt2", PRESETS["gpt2"])  # the one bench_decode.py uses
    ids, text = prompt_ids(checkpoint)
    spec = {"checkpoint": str(checkpoint), "work": str(work / "gpt2-peers"), "prompt_ids": ids, "prompt_text": text,
            "sampling": SAMPLING, "threads": args.threads, "callers": args.callers,
            "compile_timeout_s": args.compile_timeout}
    logs = work / "gpt2-peers-logs"
    logs.mkdir(parents=True, exist_ok=True)
    skipped: dict[str, str] = {}
    workers: dict[str, Worker] = {}
    for name in names:
        why = missing(name)
        try:
            if why is None:
                prepare(name, spec, logs / f"{name}-prepare.log")
                print(f"loading {name} ...", file=sys.stderr)
                workers[name] = Worker(name, spec, logs / f"{name}.log")
                print(f"  {workers[name].ready}", file=sys.stderr)
        except RuntimeError as e:
            why = str(e)
        if why is not None:
            skipped[name] = why
            print(f"skipping {name}: {why}", file=sys.stderr)
    ones: dict[str, list[dict[str, Any]]] = {n: [] for n in workers}
    manys: dict[str, list[dict[str, Any]]] = {n: [] for n in workers}
    order = list(workers)
    for r in range(args.rounds):
        for name in order[r % len(order):] + order[: r % len(order)]:  # rotated: drift reaches every contender
            w = workers[name]
            one = w.ask(op="one", new_tokens=args.new_tokens, seed=r + 1)
            ones[name].append(one)
            line = f"round {r + 1} {name}: {decode_rate(one):.1f} tok/s, TTFT {1000 * one['ttft_s']:.0f} ms"
            if args.callers > 1 and w.ready["concurrent"]:
                many = w.ask(op="many", callers=args.callers, new_tokens=args.new_tokens, seed=100 * (r + 1))
                manys[name].append(many)
                line += f", {args.callers} callers {many['tokens'] / many['seconds']:.1f} tok/s"
            print(line, file=sys.stderr)
    load_end = " ".join(f"{x:.1f}" for x in os.getloadavg())
    versions: dict[str, str] = {}
    rows = []
    for name, w in workers.items():
        versions.update(w.ready["versions"])
        rows.append(summarize(name, w.ready, ones[name], manys[name], w.quit()))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True, text=True).stdout
    results = {"command": shlex.join(["python", "benchmarks/bench_peers.py", *(argv or sys.argv[1:])]),
               "commit": commit.strip(), "note": args.note, "machine": {**machine(versions), "load_average_end": load_end},
               "settings": {"prompt_tokens": len(ids), "new_tokens": args.new_tokens, "rounds": args.rounds,
                            "callers": args.callers, "threads": args.threads, **SAMPLING},
               "rows": rows, "skipped": skipped, "wall_s": time.perf_counter() - started}
    table = markdown(results)
    print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    md = args.out.with_suffix(".md")
    notes = keep_notes(md)
    header = "# gpt2_core beside other CPU engines (`benchmarks/bench_peers.py`)\n\n"
    md.write_text(header + (f"**{args.note}**\n\n" if args.note else "") + table + "\n" + notes)
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n")
    print(f"\nwrote {args.out.with_suffix('.json')} and {md}", file=sys.stderr)


if __name__ == "__main__":
    main()

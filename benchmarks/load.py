"""Load test of the demo: many gradio_client clients at once, then memory over many requests.

    python benchmarks/load.py                                  # gpt2-shaped random weights, 10 / 30 / 60 clients
    python benchmarks/load.py --shape tiny --clients 3 --memory-requests 50     # a quick check
    python benchmarks/load.py --backend vllm --clients 30 --memory-requests 0   # local engine, then remote mode on vLLM

It launches `python app.py` itself on 127.0.0.1 (a subprocess, so its memory is the server's alone), on a checkpoint
with random weights (gpt2_core.testing.random_checkpoint): `gpt2` is GPT-2 small's shape (124M parameters, the real
vocabulary and 1024 context), `tiny` a 2-layer, 64-wide one. Random weights cost what trained ones cost per token.
Each client sends --requests-per-client requests one after another, all clients at once; a refused request (queue
full) counts as failed with its reason. Then --memory-requests requests (8 at a time) with the server's RSS sampled
every tenth of the way, to show it stays flat. Prints markdown tables; writes JSON to benchmarks/results/.
Traffic goes to 127.0.0.1 only, bounded by the counts above and --timeout per request.

With --backend vllm the same crowds then run against the app in remote mode (`app.py --backend URL`), with a CPU
vLLM serving the same checkpoint on this machine (started from .venv-vllm, which `bash tests/vllm/run` sets up), and
the tables put both side by side. vLLM is started only after the local rounds, so each has the machine to itself.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gpt2_core.config import GPTConfig  # noqa: E402
from gpt2_core.testing import random_checkpoint  # noqa: E402
from gpt2_core.testing.vllm_server import VLLMServer, vllm_python  # noqa: E402

SHAPES = {"gpt2": GPTConfig(n_layer=12, n_head=12, n_embd=768), "tiny": GPTConfig(n_layer=2, n_head=4, n_embd=64)}
PROMPT = "In a shocking finding, scientist discovered a herd of unicorns living in a remote valley."


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid: int) -> float:
    """Resident memory of a process (Linux /proc), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def launch(checkpoint: Path | str, port: int, queue_size: int, backend: str | None = None) -> subprocess.Popen:
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"}
    remote = ["--backend", backend] if backend else []  # remote mode: --model is the name vLLM serves it under
    process = subprocess.Popen([sys.executable, "app.py", "--model", str(checkpoint), "--device", "cpu", *remote,
                                "--port", str(port), "--queue-size", str(queue_size)], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/config", timeout=2).close()
            return process
        except OSError:
            if process.poll() is not None:
                raise RuntimeError(f"app.py exited with {process.returncode}") from None
            time.sleep(0.5)
    process.kill()
    raise RuntimeError("app.py did not serve within 180 s")


def connect(url: str):
    from gradio_client import Client

    return Client(url, verbose=False, analytics_enabled=False, download_files=False)


def one_request(client, tokens: int, seed: int, timeout: float) -> tuple[float, int, str | None]:
    """(seconds, tokens generated, None or why it failed)."""
    start = time.perf_counter()
    try:
        job = client.submit(PROMPT, max_new_tokens=tokens, seed=seed, api_name="/generate")
        stats = job.result(timeout=timeout)[4]
    except Exception as e:  # a failed request is counted with its reason, not raised
        return time.perf_counter() - start, 0, f"{type(e).__name__}: {str(e)[:80]}"
    generated = int(re.search(r"Tokens generated\*\* (\d+)", stats).group(1))
    return time.perf_counter() - start, generated, None


def crowd(url: str, clients: int, requests_per_client: int, tokens: int, timeout: float) -> dict:
    """`clients` clients at once, each sending its requests one after another."""
    with ThreadPoolExecutor(8) as pool:
        sessions = list(pool.map(lambda _: connect(url), range(clients)))

    def client_run(i: int) -> list[tuple[float, int, str | None]]:
        return [one_request(sessions[i], tokens, seed=i, timeout=timeout) for _ in range(requests_per_client)]

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = [r for rs in pool.map(client_run, range(clients)) for r in rs]
    wall = time.perf_counter() - start
    ok = [r for r in results if r[2] is None]
    latencies = sorted(r[0] for r in ok)
    failures: dict[str, int] = {}
    for r in results:
        if r[2] is not None:
            failures[r[2]] = failures.get(r[2], 0) + 1
    return {"clients": clients, "requests": len(results), "completed": len(ok), "failed": len(results) - len(ok),
            "failures": failures, "p50_s": percentile(latencies, 50), "p95_s": percentile(latencies, 95),
            "wall_s": wall, "requests_per_s": len(ok) / wall, "tokens_per_s": sum(r[1] for r in ok) / wall}


def percentile(values: list[float], q: int) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def memory_run(url: str, pid: int, requests: int, tokens: int, timeout: float) -> dict:
    """`requests` requests, 8 at a time, sampling the server's RSS after every tenth of them."""
    sessions = [connect(url) for _ in range(8)]
    samples = [(0, rss_mib(pid))]
    done = failed = 0
    chunk = max(1, requests // 10)
    with ThreadPoolExecutor(8) as pool:
        while done < requests:
            n = min(chunk, requests - done)
            results = list(pool.map(lambda i: one_request(sessions[i % 8], tokens, seed=i, timeout=timeout),
                                     range(done, done + n)))
            failed += sum(r[2] is not None for r in results)
            done += n
            samples.append((done, rss_mib(pid)))
    warm = samples[1][1]  # after the first tenth: caches, allocator pools and Gradio's state have settled
    return {"requests": requests, "failed": failed, "tokens_per_request": tokens, "rss_mib": samples,
            "growth_after_warmup_mib": samples[-1][1] - warm}


def markdown(load: list[dict], memory: dict | None, shape: str, tokens: int) -> str:
    lines = [f"Load on `{shape}`-shaped random weights, CPU ({os.cpu_count()} cores), {tokens} new tokens per request:",
             "", "| GPT-2 runs | clients | requests | completed | failed | p50 latency | p95 latency | requests/s | "
             "tokens/s | app memory |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in load:
        p50 = f"{r['p50_s']:.2f} s" if r["p50_s"] is not None else "-"
        p95 = f"{r['p95_s']:.2f} s" if r["p95_s"] is not None else "-"
        lines.append(f"| {r['backend']} | {r['clients']} | {r['requests']} | {r['completed']} | {r['failed']} | {p50} "
                     f"| {p95} | {r['requests_per_s']:.2f} | {r['tokens_per_s']:.0f} | {r['app_rss_mib']:.0f} MiB |")
    if memory is None:
        return "\n".join(lines)
    lines += ["", f"Server memory (RSS) over {memory['requests']} requests of {memory['tokens_per_request']} tokens "
                  f"({memory['failed']} failed):", "", "| requests done | RSS |", "|---:|---:|"]
    lines += [f"| {n} | {mib:.0f} MiB |" for n, mib in memory["rss_mib"]]
    lines.append(f"\nGrowth after the first tenth: {memory['growth_after_warmup_mib']:+.1f} MiB")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="gpt2", help="checkpoint shape (random weights)")
    parser.add_argument("--clients", type=int, nargs="+", default=[10, 30, 60])
    parser.add_argument("--requests-per-client", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=32, help="new tokens per request")
    parser.add_argument("--memory-requests", type=int, default=1000)
    parser.add_argument("--memory-tokens", type=int, default=8)
    parser.add_argument("--queue-size", type=int, default=64, help="the app's queue (its default: 64)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds one request may take")
    parser.add_argument("--checkpoint-dir", type=Path, default=Path(tempfile.gettempdir()) / "gpt2-load-checkpoints")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--backend", default="here",
                        help="vllm: after the local rounds, the same against the app in remote mode on a CPU vLLM "
                             "started here; a URL (http://gpu-box:8000): against the app in remote mode on that "
                             "server, whose model is given by --served-model (sizing a real deployment)")
    parser.add_argument("--served-model", default=None, help="with --backend URL: the server's model name")
    args = parser.parse_args(argv)
    if max(args.clients) > 200 or args.memory_requests > 10_000:
        parser.error("at most 200 clients and 10000 memory requests: this is a classroom, not a flood")

    if args.backend not in ("here", "vllm") and not args.backend.startswith(("http://", "https://")):
        parser.error(f"--backend has to be here, vllm or a URL, but is {args.backend!r}")
    if args.backend == "vllm" and vllm_python() is None:
        parser.error("--backend vllm needs vLLM in .venv-vllm: `bash tests/vllm/run` sets it up (or GPT2_VLLM_PYTHON)")

    checkpoint = random_checkpoint(args.checkpoint_dir / args.shape, SHAPES[args.shape])
    load: list[dict] = []
    memory = None
    remote_url = args.backend if args.backend.startswith("http") else None
    rounds = {"here": ["here"], "vllm": ["here", "vLLM"]}.get(args.backend, ["remote"])
    for backend in rounds:
        vllm = None
        if backend == "vLLM":
            args.out.mkdir(parents=True, exist_ok=True)
            log = args.out / "vllm-load-server.log.tmp"
            vllm = VLLMServer(checkpoint, str(checkpoint), free_port(), log, max_model_len=1024).start()
            remote_url = vllm.url
        port = free_port()
        model = args.served_model if backend == "remote" and args.served_model else checkpoint
        server = launch(model, port, args.queue_size, backend=remote_url if backend != "here" else None)
        url = f"http://127.0.0.1:{port}/"
        try:
            one_request(connect(url), args.tokens, seed=0, timeout=args.timeout)  # warm-up
            for clients in args.clients:
                row = crowd(url, clients, args.requests_per_client, args.tokens, args.timeout)
                row |= {"backend": "this machine (gpt2_core)" if backend == "here" else f"{backend} (remote mode)",
                        "app_rss_mib": rss_mib(server.pid)}
                load.append(row)
                print(f"{backend}, {clients} clients: {row['completed']}/{row['requests']} in {row['wall_s']:.1f} s",
                      file=sys.stderr)
            if backend == "here" and args.memory_requests:
                memory = memory_run(url, server.pid, args.memory_requests, args.memory_tokens, args.timeout)
        finally:
            server.terminate()
            server.wait(timeout=30)
            if vllm is not None:
                vllm.stop()
    table = markdown(load, memory, args.shape, args.tokens)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    result = {"shape": args.shape, "device": "cpu", "cpus": os.cpu_count(), "tokens": args.tokens,
              "requests_per_client": args.requests_per_client, "queue_size": args.queue_size, "load": load,
              "memory": memory}
    name = f"load-{args.shape}-cpu" + {"here": "", "vllm": "-vs-vllm"}.get(args.backend, "-remote")
    (args.out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / f"{name}.md").write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

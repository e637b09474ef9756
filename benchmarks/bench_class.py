"""A class on one server: N pages pressing Generate at once, beside N API clients; what each student waits.

    python benchmarks/bench_class.py --before 8d53212                        # gpt2's shape, 1, 8 and 30 at once
    python benchmarks/bench_class.py --model mini --crowds 1 8 30 --before 8d53212

Starts `python app.py` (offline, on the CPU, with a thread for each core, as a public server such as Spaces serves)
for this checkout and, with --before, for that commit of the project. For each crowd size N, each contender serves N
page clients at once and then N API clients at once, with the same prompt (the Unicorns), settings and new tokens,
each its own seed. A page client sends what the browser sends when Generate is pressed (the page's own event, through
Gradio's queue: /gradio_api/queue/join, then its stream of updates) and reads every update, but draws nothing: the
browsers are the students' own machines, so only the server's work is timed. (Left out: the two small unqueued calls
around it that set "Writing..." and free the button; and the clients' threads run on the server's cores.) An API
client calls `/generate` the same raw way. The table gives, for each: the median and slowest wall time of a request
(join to its last update), the tokens per second of all N together (as their stats lines count them), the updates
a request got, their size, and the server's CPU seconds over the crowd. `--model gpt2-shape` (the default) serves
random weights in gpt2's shape (124M), timed once its background compiles are done; `mini` the bundled model.
Traffic goes to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_page import earlier_checkout, serve, served_model, stop  # noqa: E402
from bench_startup import free_port  # noqa: E402

from demo.examples import load_examples  # noqa: E402

TOKENS = re.compile(r"Tokens generated\W+(\d+)")
PAGE_EVENT, API_EVENT = "generate_view", "generate"  # the Generate button's streaming event; the /generate endpoint


def event_ids(url: str) -> dict[str, int]:
    """The page's Generate event and the /generate endpoint: their ids in the app's config (fn_index)."""
    dependencies = httpx.get(url + "/config", timeout=30).json()["dependencies"]
    return {d["api_name"]: d["id"] for d in dependencies if d.get("api_name") in (PAGE_EVENT, API_EVENT)}


def request(url: str, fn_index: int, data: list) -> tuple[float, int, int, int]:
    """One Generate, as the browser (or a raw API client) sends it: (wall seconds to the last update, updates, bytes,
    the tokens its stats line says it wrote)."""
    session = uuid.uuid4().hex[:12]
    start = time.perf_counter()
    updates = size = 0
    with httpx.Client(timeout=600) as client:
        client.post(f"{url}/gradio_api/queue/join", json={"data": data, "fn_index": fn_index, "session_hash": session,
                                                          "event_data": None, "trigger_id": None}).raise_for_status()
        with client.stream("GET", f"{url}/gradio_api/queue/data", params={"session_hash": session}) as stream:
            for line in stream.iter_lines():
                size += len(line)
                updates += '"process_generating"' in line
                if '"process_completed"' in line:
                    if '"success":true' not in line.replace(" ", ""):
                        raise SystemExit(f"a request failed: {line[:500]}")
                    written = TOKENS.search(line)  # the last update's stats line (the page's and the API's alike)
                    if written is None:
                        raise SystemExit(f"no token count in the last update: {line[:500]}")
                    break
            else:
                raise SystemExit("the stream ended before the request completed")
    return time.perf_counter() - start, updates, size, int(written[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime, every thread


def crowd(url: str, fn_index: int, data: list, n: int) -> tuple[float, list[tuple[float, int, int]]]:
    """n requests at once, each with its own seed: (wall seconds for all, each one's (wall, updates, bytes, tokens))."""
    seed = data.index("SEED")
    start = time.perf_counter()
    with ThreadPoolExecutor(n) as pool:
        results = list(pool.map(lambda i: request(url, fn_index, [*data[:seed], i + 1, *data[seed + 1:]]), range(n)))
    return time.perf_counter() - start, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="gpt2-shape",
                        help="gpt2-shape (random weights, 124M), mini (the bundled model), or a checkpoint folder")
    parser.add_argument("--tokens", type=int, default=150)
    parser.add_argument("--crowds", type=int, nargs="+", default=[1, 8, 30])
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="PyTorch's threads (default: a core each)")
    parser.add_argument("--before", metavar="COMMIT", help="also an earlier commit of the project")
    args = parser.parse_args()
    unicorn = load_examples().unicorn
    s = unicorn.settings
    data = [unicorn.prompt, args.tokens, s.temperature, s.top_k, s.top_p, s.repetition_penalty, "SEED", 1]

    with tempfile.TemporaryDirectory() as folder:
        model = served_model(args.model, Path(folder))
        contenders = {"this checkout": ROOT}
        if args.before:
            contenders[args.before] = earlier_checkout(args.before, Path(folder))
        rows = []
        for i, (name, checkout) in enumerate(contenders.items()):  # one server at a time: each has the machine
            port = free_port()
            app = serve(checkout, model, ["--threads", str(args.threads)], port, Path(folder) / f"app-{i}.log")
            url = f"http://127.0.0.1:{port}"
            try:
                ids = event_ids(url)
                for path in ("page", "API"):  # warm-up
                    request(url, ids[PAGE_EVENT if path == "page" else API_EVENT], [*data[:6], 1, 1])
                for n in args.crowds:
                    for path in ("page", "API"):
                        before_cpu = cpu_seconds(app.pid)
                        wall, results = crowd(url, ids[PAGE_EVENT if path == "page" else API_EVENT], data, n)
                        rows.append((n, name, path, wall, results, cpu_seconds(app.pid) - before_cpu))
                        print(f"{name}: {n} {path} clients done", file=sys.stderr)
            finally:
                stop([app])
    print(f"\nA class on one server: N clients press Generate at once, {args.model}, the Unicorns prompt and "
          f"settings, {args.tokens} new tokens each, {os.cpu_count()} cores, {args.threads} PyTorch threads\n")
    print("| clients | contender | path | median s per request | slowest s | tok/s, all together | "
          "updates per request | KB per request | server CPU s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for n, name, path, wall, results, cpu in sorted(rows, key=lambda r: (r[0], r[1] != "this checkout", r[2] != "page")):
        walls, updates, sizes, tokens = zip(*results)
        print(f"| {n} | {name} | {path} | {statistics.median(walls):.2f} | {max(walls):.2f} | "
              f"{sum(tokens) / wall:.0f} | {statistics.median(updates):.0f} | "
              f"{statistics.median(sizes) / 1024:.0f} | {cpu:.1f} |")


if __name__ == "__main__":
    main()

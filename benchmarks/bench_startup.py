"""Start-up time of the app: from `python app.py` to a served page, and to its compiled decode step, with the model
already on disk (a cached gpt2).

    python benchmarks/bench_startup.py            # gpt2 (124M) shape, random weights, 3 runs
    python benchmarks/bench_startup.py --page-only --runs 5

Random weights in the real gpt2 shape stand in for the cached Hub model (the same files and sizes). On a CPU the app
compiles its decode step in the background once the page serves (the default fast path) and keeps the graphs in the
user's cache folder (gpt2_core.generate.compiled.keep_compiled_graphs): here a new, empty one for this benchmark
(XDG_CACHE_HOME, TORCHINDUCTOR_CACHE_DIR unset), so the first run compiles cold, as after a reboot that emptied
Inductor's default folder in /tmp, and the others find the graphs, as every start after the first now does. A run
waits for the app's log line "compiled the decode step" (--page-only: not). Prints a table.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from gpt2_core.config import PRESETS  # noqa: E402
from gpt2_core.testing import random_checkpoint  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def time_to_page(checkpoint: Path, cache_home: Path, *, compiled: bool, timeout: float = 300.0) -> tuple[float, float | None]:
    """Seconds from `python app.py` to a served page, and to its log line saying the decode step is compiled (None
    with compiled=False, or if the app does not compile this model)."""
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "XDG_CACHE_HOME": str(cache_home)}
    env.pop("TORCHINDUCTOR_CACHE_DIR", None)  # the app's own choice of folder, as on a user's machine
    log = cache_home / "app.log"
    start = time.perf_counter()
    with open(log, "w") as log_file:
        proc = subprocess.Popen([sys.executable, "app.py", "--model", str(checkpoint), "--device", "cpu", "--port",
                                 str(port)], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log_file, env=env)
    try:
        page = None
        while time.perf_counter() - start < timeout and proc.poll() is None:
            if page is None:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
                        if response.status == 200:
                            page = time.perf_counter() - start
                except OSError:
                    pass
            text = log.read_text()
            if page is not None and (not compiled or "compiled the decode step" in text):
                return page, (time.perf_counter() - start) if compiled else None
            if page is not None and ("decoding stays eager" in text or "compiling in the background" not in text):
                return page, None  # not compiled (a small model, little memory: the load line says why), or failed
            time.sleep(0.1)
        raise TimeoutError(f"no page and compiled step after {timeout} s: {log.read_text()[-2000:]}")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="gpt2", choices=list(PRESETS))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--page-only", action="store_true", help="do not wait for the compiled decode step")
    args = parser.parse_args()
    checkpoint = random_checkpoint(Path(tempfile.gettempdir()) / "gpt2-playground-bench" / args.shape,
                                   PRESETS[args.shape])
    lines = ["| run | compiled graphs in the cache folder | python app.py -> page served | -> compiled decode step |",
             "|---:|---|---:|---:|"]
    with tempfile.TemporaryDirectory(prefix="gpt2-playground-bench-cache-") as cache_home:
        for run in range(1, args.runs + 1):
            page, compiled = time_to_page(checkpoint, Path(cache_home), compiled=not args.page_only)
            cache = "none (cold: a first start, or after a reboot)" if run == 1 else "found (a restart)"
            ready = f"{compiled:.1f} s" if compiled is not None else "-"
            lines.append(f"| {run} | {cache} | {page:.1f} s | {ready} |")
            print(lines[-1], file=sys.stderr)
    print(f"{args.shape} shape, {os.cpu_count()} CPU cores, torch {torch.__version__}\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

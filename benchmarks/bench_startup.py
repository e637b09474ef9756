"""Start-up time of the app: from `python app.py` to a served page, with the model already on disk (a cached gpt2).

    python benchmarks/bench_startup.py            # gpt2 (124M) shape, random weights, 3 runs

Random weights in the real gpt2 shape stand in for the cached Hub model (the same files and sizes). Prints a table.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gpt2_core.config import PRESETS  # noqa: E402
from gpt2_core.testing import random_checkpoint  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def time_to_page(checkpoint: Path, timeout: float = 180.0) -> float:
    port = free_port()
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "app.py", "--model", str(checkpoint), "--device", "cpu", "--port",
                             str(port)], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    try:
        while time.perf_counter() - start < timeout:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
                    if response.status == 200:
                        return time.perf_counter() - start
            except OSError:
                time.sleep(0.1)
        raise TimeoutError(f"no page after {timeout} s")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="gpt2", choices=list(PRESETS))
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    checkpoint = random_checkpoint(Path(tempfile.gettempdir()) / "gpt2-playground-bench" / args.shape,
                                   PRESETS[args.shape])
    times = [time_to_page(checkpoint) for _ in range(args.runs)]
    print(f"| model | runs | python app.py -> page served (median) | min | max |\n|---|---:|---:|---:|---:|\n"
          f"| {args.shape} | {len(times)} | {statistics.median(times):.1f} s | {min(times):.1f} s | {max(times):.1f} s |")


if __name__ == "__main__":
    main()

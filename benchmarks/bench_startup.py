"""Start-up time of the app: from `python app.py` to a served page, and to its compiled decode step, with the model
already on disk (a cached gpt2).

    python benchmarks/bench_startup.py            # gpt2 (124M) shape, random weights, 3 runs
    python benchmarks/bench_startup.py --page-only --runs 5

Random weights in the real gpt2 shape stand in for the cached Hub model (the same files and sizes). On a CPU the app
compiles its decode step in the background once the page serves (the default fast path), and a run waits for the
app's log line "compiled the decode step" (--page-only: it does not). Where Inductor keeps the compiled graphs decides
that time, so two ways alternate, --runs starts each, every start after a "reboot" (a new, empty temp directory,
TMPDIR, as a tmpfs /tmp after a boot), with the same home folder throughout (a new one for this benchmark):
- "user cache": the app's default since it keeps them in the user's cache folder ($XDG_CACHE_HOME/gpt2-playground,
  gpt2_core.generate.compiled.keep_compiled_graphs): the first start compiles cold, the others find the graphs;
- "temp folder": Inductor's own default folder, in the temp directory (TORCHINDUCTOR_CACHE_DIR set there, as the app
  did before): every start after a reboot compiles cold. (A restart without a reboot finds them in either.)
Prints a table.
"""

from __future__ import annotations

import argparse
import os
import shutil
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


def time_to_page(checkpoint: Path, home: Path, temp: Path, inductor: Path | None, *, compiled: bool,
                 timeout: float = 300.0) -> tuple[float, float | None]:
    """Seconds from `python app.py` to a served page, and to its log line saying the decode step is compiled (None
    with compiled=False, or if the app does not compile this model). home: the user's cache folder (XDG_CACHE_HOME);
    temp: the temp directory; inductor: TORCHINDUCTOR_CACHE_DIR (None: the app's own choice)."""
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "XDG_CACHE_HOME": str(home), "TMPDIR": str(temp)}
    env.pop("TORCHINDUCTOR_CACHE_DIR", None)  # the app's own choice of folder, as on a user's machine
    if inductor is not None:
        env["TORCHINDUCTOR_CACHE_DIR"] = str(inductor)
    log = home / "app.log"
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
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:  # killed, so that it cannot slow the next start down
            proc.kill()
            print(f"app.py did not stop within 30 s of SIGTERM: killed. Its log: {log.read_text()[-1000:]}",
                  file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="gpt2", choices=list(PRESETS))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--page-only", action="store_true", help="do not wait for the compiled decode step")
    parser.add_argument("--out", type=Path, help="also write the table to this file (e.g. benchmarks/results/startup-cpu.md)")
    args = parser.parse_args()
    checkpoint = random_checkpoint(Path(tempfile.gettempdir()) / "gpt2-playground-bench" / args.shape,
                                   PRESETS[args.shape])
    lines = ["| start | Inductor's cache | graphs there at the start | python app.py -> page served | -> compiled decode step |",
             "|---:|---|---|---:|---:|"]
    ways = {"user cache": False, "temp folder": True}
    with tempfile.TemporaryDirectory(prefix="gpt2-playground-bench-startup-") as scratch:
        for run in range(1, args.runs + 1):
            for way, in_temp in ways.items():
                name = way.replace(" ", "-")  # (Inductor cannot compile in a path with a space)
                home, temp = Path(scratch) / name, Path(scratch) / f"tmp-{name}-{run}"  # each start after a "reboot"
                home.mkdir(exist_ok=True)
                temp.mkdir()
                inductor = temp / "torchinductor_bench" if in_temp else None
                graphs = list((inductor or home).glob("**/fxgraph/*/*"))  # (fxgraph/<2 letters>/<graph's key>)
                page, compiled = time_to_page(checkpoint, home, temp, inductor, compiled=not args.page_only)
                shutil.rmtree(temp)
                found = f"yes ({len(graphs)} graph{'s' * (len(graphs) > 1)})" if graphs else "no (cold)"
                ready = f"{compiled:.1f} s" if compiled is not None else "-"
                lines.append(f"| {run} | {way} | {found} | {page:.1f} s | {ready} |")
                print(lines[-1], file=sys.stderr)
    table = "\n".join([f"{args.shape} shape, {os.cpu_count()} CPU cores, torch {torch.__version__}, "
                        f"`python benchmarks/bench_startup.py --runs {args.runs}`", "", *lines])
    print(table)
    if args.out:
        args.out.write_text(table + "\n")


if __name__ == "__main__":
    main()

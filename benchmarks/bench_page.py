"""How fast the Generate page writes, beside the `/generate` API on the same server: what the page costs.

    python benchmarks/bench_page.py                                   # the bundled mini model, 150 and 400 new tokens
    python benchmarks/bench_page.py --model gpt2-shape --tokens 150 --threads default 2 --before 7895303
    python benchmarks/bench_page.py --tokens 512 --samples 4 --before 8ab2124   # the browser's own load

Starts `python app.py` (offline, on the CPU) for each contender and drives Debian's chromium (/usr/bin/chromium, on
this machine, as a student's or a teacher's browser is) through Playwright. The contenders: this checkout with the
app's own choice of threads ("default"), this checkout with `--threads N` for each N given, and with --before, that
commit of the project (its own default). Each round visits every contender in turn, and for each length times the
page (the Unicorns example's prompt and settings, its seed 2019, Generate, wait for "Done") and then an API client
(gradio_client, the same prompt and settings) on the same server. Both read the run's own stats line, so the table
gives, for each: the tokens written, the wall time from the click (or the call) to the last token on screen (or in
hand), tokens per wall second, and the engine's own rate that the stats line shows (its speed while the request ran,
which a busy machine lowers). The page's seed and settings make the same tokens as the API's, so the two write the
same text. `--model gpt2-shape` serves random weights in gpt2's shape (124M), timed once its background compiles are
done. `--samples N` writes N samples at once. For the page, the table also gives the browser's own load while the
run streams: the seconds its main thread spent in long tasks (over 50 ms each; the page redraws the text at each
update), and the longest that a timer due every 50 ms waited (how long a press of Stop could wait to be handled).
Prints a table (median over rounds, min..max).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_startup import free_port  # noqa: E402

from demo.examples import load_examples  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
STATS = re.compile(r"Speed\W+([\d.]+) tokens/s\W+Tokens generated\W+(\d+)")


def serve(checkout: Path, model: str, flags: list[str], port: int, log: Path) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(checkout)}
    env.pop("OMP_NUM_THREADS", None)  # each contender's own choice of threads
    command = [sys.executable, "app.py", "--port", str(port), "--device", "cpu", *flags]
    if model != "mini":
        command += ["--model", model]
    proc = subprocess.Popen(command, cwd=checkout, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the app ended (see {log}):\n{log.read_text()[-2000:]}")
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        raise SystemExit(f"the app did not serve within 300 s (see {log})")
    # A model that compiles its decode steps in the background (gpt2's shape on a CPU) is timed once they are ready
    while not compiled(log.read_text()):
        if time.monotonic() > deadline + 600:
            proc.kill()
            raise SystemExit(f"the app did not finish compiling within 600 s (see {log})")
        time.sleep(1)
    return proc


def served_model(model: str, folder: Path) -> str:
    """What `app.py --model` gets: `gpt2-shape` becomes random weights in gpt2's shape (124M), saved in `folder`."""
    if model != "gpt2-shape":
        return model
    from gpt2_core.config import PRESETS
    from gpt2_core.testing import random_checkpoint
    return str(random_checkpoint(folder / "gpt2", PRESETS["gpt2"]))


def earlier_checkout(commit: str, folder: Path) -> Path:
    """The project at `commit`, extracted into `folder`/before (git archive: no history, no build outputs)."""
    before = folder / "before"
    before.mkdir()
    archive = subprocess.run(["git", "archive", commit], cwd=ROOT, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(before)], input=archive, check=True)
    return before


def stop(apps: list[subprocess.Popen]) -> None:
    for app in apps:
        app.terminate()
    for app in apps:
        try:
            app.wait(30)
        except subprocess.TimeoutExpired:
            app.kill()


def compiled(log: str) -> bool:
    """Whether the app's log says that the model's background compiles are done (or that there are none)."""
    if "not compiled" in log or "torch.compile failed" in log or "compiled the batch decode step" in log:
        return True
    loaded = next((line for line in log.splitlines() if " loaded " in line), "")
    return "compiled the decode step" in log and "int8" not in loaded  # (only CPU int8 compiles batches too)


def parse(stats: str) -> tuple[float, int]:
    match = STATS.search(stats)
    if match is None:
        raise SystemExit(f"no speed and token count in the stats line: {stats!r}")
    return float(match[1]), int(match[2])


# The browser's load while a run streams: time in long tasks (the browser's PerformanceObserver), and the longest a
# timer due every 50 ms was late (an input, such as a press of Stop, waits as long)
WATCH_THE_PAGE = """() => {
  const load = window.benchLoad = {busy: 0, wait: 0};
  new PerformanceObserver((found) => found.getEntries().forEach((task) => { load.busy += task.duration; }))
    .observe({type: 'longtask'});
  let due = performance.now() + 50;
  load.timer = setInterval(() => {
    const now = performance.now();
    load.wait = Math.max(load.wait, now - due);
    due = now + 50;
  }, 50);
}"""
PAGE_LOAD = "() => { clearInterval(window.benchLoad.timer); return [window.benchLoad.busy, window.benchLoad.wait]; }"


def on_page(page, url: str, tokens: int, samples: int = 1) -> tuple[float, float, int, float, float]:
    """(wall seconds from the click to Done, the engine's tok/s shown, tokens generated, the browser's seconds in
    long tasks, its longest wait in ms)."""
    page.goto(url)
    page.locator("#example-unicorn").click()
    for box, value in (("max-new-tokens", tokens), ("num-samples", samples)):
        slider = page.locator(f"#{box} input[type=number]")
        slider.fill(str(value))
        slider.press("Enter")
    page.wait_for_timeout(300)  # the example note and the meter settle before the timed click
    page.evaluate(WATCH_THE_PAGE)
    start = time.perf_counter()
    page.locator("#generate-button").click()
    page.wait_for_function("() => /Done/.test(document.querySelector('#run-state')?.textContent || '')",
                           timeout=600_000, polling=10)  # (textContent: no layout forced on the browser measured)
    wall = time.perf_counter() - start
    busy_ms, wait_ms = page.evaluate(PAGE_LOAD)
    rate, count = parse(page.locator("#stats").inner_text())
    return wall, rate, count, busy_ms / 1000, wait_ms


def by_api(client, prompt: str, settings: dict, tokens: int, samples: int = 1) -> tuple[float, float, int]:
    start = time.perf_counter()
    result = client.predict(prompt, tokens, settings["temperature"], settings["top_k"], settings["top_p"],
                            settings["repetition_penalty"], settings["seed"], samples, api_name="/generate")
    wall = time.perf_counter() - start
    rate, count = parse(result[4])
    return wall, rate, count


def spread(values: list[float], digits: int = 1) -> str:
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}..{max(values):.{digits}f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="mini",
                        help="mini (the bundled model), gpt2-shape (random weights, 124M), or a checkpoint folder")
    parser.add_argument("--tokens", type=int, nargs="+", default=[150, 400])
    parser.add_argument("--samples", type=int, default=1, choices=range(1, 5), help="samples written at once (1-4)")
    parser.add_argument("--threads", nargs="+", default=["default"],
                        help="this checkout's contenders: default (the app's choice) and thread counts (--threads N)")
    parser.add_argument("--before", metavar="COMMIT", help="also an earlier commit of the project, at its default")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if not CHROMIUM.exists():
        raise SystemExit("needs Debian's chromium at /usr/bin/chromium (apt-get install -y chromium)")
    from gradio_client import Client
    from playwright.sync_api import sync_playwright

    unicorn = load_examples().unicorn
    settings = asdict(unicorn.settings)
    with tempfile.TemporaryDirectory() as folder:
        model = served_model(args.model, Path(folder))
        contenders = {(f"this checkout, {t} threads" if t != "default" else "this checkout"):
                      (ROOT, [] if t == "default" else ["--threads", t]) for t in args.threads}
        if args.before:
            contenders[f"{args.before}"] = (earlier_checkout(args.before, Path(folder)), [])
        apps, urls = [], {}
        rows: dict[tuple[str, int, str], list[tuple]] = {}
        try:
            for i, (name, (checkout, flags)) in enumerate(contenders.items()):
                port = free_port()
                apps.append(serve(checkout, model, flags, port, Path(folder) / f"app-{i}.log"))
                urls[name] = f"http://127.0.0.1:{port}/"
            clients = {name: Client(url, verbose=False) for name, url in urls.items()}
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1280, "height": 720})
                page.set_default_timeout(60_000)
                for name, url in urls.items():  # warm-up: each server's first run
                    on_page(page, url, 20)
                    by_api(clients[name], unicorn.prompt, settings, 20)
                for round_ in range(args.rounds):
                    for name, url in urls.items():
                        for tokens in args.tokens:
                            rows.setdefault((name, tokens, "page"), []).append(
                                on_page(page, url, tokens, args.samples))
                            rows.setdefault((name, tokens, "API"), []).append(
                                by_api(clients[name], unicorn.prompt, settings, tokens, args.samples))
                    print(f"round {round_ + 1} of {args.rounds} done", file=sys.stderr)
                browser.close()
        finally:
            stop(apps)
    print(f"\nGenerate on the page against /generate, {args.model}, the Unicorns prompt and settings (seed 2019), "
          f"{args.samples} sample(s), {os.cpu_count()} cores, median of {args.rounds} alternated rounds (min..max)\n")
    print("| new tokens | contender | path | tokens written | wall s (click to last token) | tok/s (wall) | "
          "engine tok/s (stats) | browser busy s | browser's longest wait ms |")
    print("|---|---|---|---|---|---|---|---|---|")
    for tokens in args.tokens:
        for name in contenders:
            for path in ("page", "API"):
                walls, rates, counts, *load = zip(*rows[(name, tokens, path)])
                per_wall = [c / w for w, c in zip(walls, counts)]
                busy, wait = (spread(list(load[0]), 2), spread(list(load[1]), 0)) if load else ("", "")
                print(f"| {tokens} | {name} | {path} | {statistics.median(counts):.0f} | {spread(list(walls), 2)} | "
                      f"{spread(per_wall)} | {spread(list(rates))} | {busy} | {wait} |")


if __name__ == "__main__":
    main()

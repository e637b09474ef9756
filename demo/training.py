"""One training run at a time beside serving: `python -m gpt2_core train --json` in a child process.

A child process keeps training apart from the model that serves the class: its threads are capped (`--threads`), its
memory goes back to the system when it ends, and Stop is a SIGTERM, on which it saves what it has. Its evaluations
arrive one JSON line each and are kept here for the page to draw. A second visitor who asks while it runs is told
whose it is not and how long it has left.

A run's files (the text, the model, its zip) live in one folder of the app's workspace: the text goes when the run
ends, the rest when its visitor's page closes (`forget`), the next run starts, or the app closes (`close`).
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
import threading
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from demo.workspace import Workspace

log = logging.getLogger(__name__)

TRAIN_THREADS = 1  # of a 2-core host's two, so that generation for others keeps going
# The curve's points over a run of any length (fewer where evaluating would take more than a quarter of the time), each
# measured on 1 batch: a 1-minute run on one slow thread draws about 9 points, where every 25 steps it drew 3. The
# bits per character at the end read the first 16,384 held-out tokens (the plays' last tenth has 150,000: 30 s).
EVAL_POINTS, EVAL_BATCHES, BPC_TOKENS = 20, 1, 16_384


BUSY = ("another visitor is training a model right now; it ends in about {seconds:.0f} s. "  # i18n: key
        "Please try again then.")  # i18n: key
EXIT_CODE = "the training process ended with exit code {code}"  # i18n: key


class TrainingBusyError(RuntimeError):
    """Another visitor's training run is using the machine; `seconds` is about what is left of it."""

    def __init__(self, seconds: float):
        super().__init__(BUSY.format(seconds=seconds))
        self.seconds = seconds


@dataclass
class Run:
    owner: str  # the session that started it
    init: str  # "tiny" (from scratch) or the checkpoint it fine-tunes
    minutes: float
    out_dir: Path
    process: subprocess.Popen
    started: float = field(default_factory=time.monotonic)
    evaluations: list[dict] = field(default_factory=list)
    plan: dict | None = None  # the run's memory plan (window, micro-batch, planned peak), its output's first line
    errors: list[str] = field(default_factory=list)
    stop_asked: bool = False  # Stop was pressed: the run measures its loss once more, saves and ends

    @property
    def finished(self) -> bool:
        return self.process.poll() is not None

    @property
    def seconds_left(self) -> float:
        """What is left of the run, as its page shows it (for the visitor who is told to wait)."""
        evaluations = [e for e in self.evaluations if "step" in e]
        elapsed = time.monotonic() - self.started
        if not evaluations:
            return max(0.0, 60 * self.minutes - elapsed)
        return seconds_left(evaluations, self.minutes, elapsed_s=elapsed,
                            since_eval_s=max(0.0, elapsed - evaluations[-1]["elapsed_s"]))


class TrainingJobs:
    def __init__(self, root: Path | Workspace):
        self._root = root
        self._lock = threading.Lock()
        self._run: Run | None = None

    @property
    def root(self) -> Path:
        return self._root.folder("training") if isinstance(self._root, Workspace) else self._root

    def start(self, owner: str, text: str, *, init: str, minutes: float) -> Run:
        with self._lock:
            if self._run is not None and not self._run.finished:
                if self._run.owner == owner:
                    return self._run
                raise TrainingBusyError(self._run.seconds_left)
            if self._run is not None:  # the last run's files go: one model on disk at a time
                shutil.rmtree(self._run.out_dir.parent, ignore_errors=True)
            work = self.root / f"run-{time.time_ns()}"
            work.mkdir()
            (work / "text.txt").write_text(text, encoding="utf-8")
            out_dir = work / "my-gpt2"
            command = [sys.executable, "-m", "gpt2_core", "train", "--text", str(work / "text.txt"), "--out",
                       str(out_dir), "--init", init, "--minutes", str(minutes), "--eval-points", str(EVAL_POINTS),
                       "--eval-batches", str(EVAL_BATCHES), "--bpc-tokens", str(BPC_TOKENS), "--threads",
                       str(TRAIN_THREADS), "--json"]
            process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            self._run = run = Run(owner, init, minutes, out_dir, process)
        threading.Thread(target=self._read, args=(run,), daemon=True, name="training-reader").start()
        return run

    def current(self, owner: str) -> Run | None:
        run = self._run
        return run if run is not None and run.owner == owner else None

    def stop(self, owner: str) -> Run | None:
        """Ask `owner`'s run to stop, if it is still going: the run it asked (which remembers it), or None."""
        run = self.current(owner)
        if run is None or run.finished:
            return None
        run.stop_asked = True
        run.process.terminate()  # the CLI saves what it has, then exits
        return run

    def forget(self, owner: str) -> None:
        """`owner`'s page closed: its run, if any, ends and its files go (a model it adopted is already loaded)."""
        with self._lock:
            run = self._run
            if run is None or run.owner != owner:
                return
            self._run = None
        _end(run)

    def close(self) -> None:
        """The app closes: the running run ends (its child process with it) and every run's files go."""
        with self._lock:
            run, self._run = self._run, None
        if run is not None:
            _end(run)

    @staticmethod
    def _read(run: Run) -> None:
        for line in run.process.stdout:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                log.warning("training printed a line that is not JSON: %s", line.strip())
                continue
            if "plan" in record:
                run.plan = record["plan"]
            else:
                run.evaluations.append(record)
        run.process.wait()
        (run.out_dir.parent / "text.txt").unlink(missing_ok=True)  # read at the start; the model is what stays
        error = run.process.stderr.read().strip()
        if run.process.returncode not in (0, -15):
            run.errors.append(error.splitlines()[-1] if error else EXIT_CODE.format(code=run.process.returncode))
            log.error("training failed: %s", error or run.errors[-1])  # (killed, it writes nothing: its exit code)

    def model_dir(self, owner: str) -> Path | None:
        """The finished model of `owner`'s run (None while it trains, or if it saved nothing)."""
        run = self.current(owner)
        if run is None or not run.finished or not (run.out_dir / "model.safetensors").is_file():
            return None
        return run.out_dir

    def zip(self, owner: str) -> str | None:
        """The trained model as a zip file, for download: what `load_model` reads, and the training record (not the
        optimizer's state kept for --resume, twice the model's size)."""
        out_dir = self.model_dir(owner)
        if out_dir is None:
            return None
        path = out_dir.parent / f"{out_dir.name}.zip"
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
            for file in sorted(out_dir.iterdir()):
                if file.is_file():
                    archive.write(file, file.name)
        return str(path)


def _end(run: Run) -> None:
    if not run.finished:
        run.process.terminate()
        try:
            run.process.wait(timeout=30)  # it saves on SIGTERM; a model save of a small GPT-2 takes a second
        except subprocess.TimeoutExpired:
            run.process.kill()
            run.process.wait()
    shutil.rmtree(run.out_dir.parent, ignore_errors=True)


def seconds_left(evaluations: list[dict], minutes: float, *, elapsed_s: float, since_eval_s: float) -> float:
    """What is left of the run: its remaining steps at the pace of its last evaluations, once it knows its step count;
    before that, what is left of the minutes asked for, counted from the press of Start."""
    last = evaluations[-1]
    total = last.get("total_steps")
    if total and len(evaluations) >= 2 and last["step"] > evaluations[-2]["step"]:
        before = evaluations[-2]
        per_step = (last["elapsed_s"] - before["elapsed_s"]) / (last["step"] - before["step"])  # evaluations included
        return max(0.0, (total - last["step"]) * per_step - since_eval_s)
    return max(0.0, 60 * minutes - elapsed_s)

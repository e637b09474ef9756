"""The Build your own tab: one run at a time beside serving, in a child process; the page shows the curve and samples,
Stop saves, the model downloads. In chromium where it is visible."""

from __future__ import annotations

import math
import re

import pytest
from gradio_client import Client
from PIL import Image
from test_browser import VIEWPORT, browser  # noqa: F401 (fixture)
from test_train import toy_play
from ui_helpers import as_toast, wait_until

from demo import AppConfig
from demo.training import TrainingBusyError, TrainingJobs
from gpt2_core import load_model

pytest_plugins = ["fixtures_ui"]


@pytest.mark.parametrize("argv, env, allowed", [
    ([], {}, True), (["--host", "0.0.0.0"], {}, False), (["--host", "0.0.0.0", "--allow-training"], {}, True),
    ([], {"GPT2_ALLOW_TRAINING": "0"}, False), ([], {"GRADIO_SERVER_NAME": "0.0.0.0", "GPT2_ALLOW_TRAINING": "1"}, True),
])
def test_training_is_on_for_this_machine_and_off_for_a_room(argv, env, allowed):
    assert AppConfig.from_env_and_args(argv, env).training_allowed is allowed


@pytest.mark.heavy
def test_a_second_run_is_told_it_is_busy_and_for_how_long_while_others_generate(tmp_path, app):
    jobs = TrainingJobs(tmp_path)
    run = jobs.start("teacher", toy_play(), init="tiny", minutes=1)
    try:
        with pytest.raises(TrainingBusyError, match=r"another visitor is training a model right now; it ends in about "
                                                    r"\d+ s"):
            jobs.start("student", toy_play(), init="tiny", minutes=1)
        client = Client(app.url, verbose=False, analytics_enabled=False, download_files=False)
        assert client.predict("Meanwhile", 8, 0.8, 40, 1.0, 1.0, 1, 1, api_name="/generate")[0]
        wait_until(lambda: run.evaluations, timeout=60, message="the first evaluation")
    finally:
        jobs.stop("teacher")
    wait_until(lambda: run.finished, timeout=60, message="Stop to end the run")
    assert (run.out_dir / "model.safetensors").is_file(), "Stop saves what it has"
    archive = jobs.zip("teacher")
    assert archive.endswith(".zip") and jobs.zip("student") is None
    import zipfile

    names = zipfile.ZipFile(archive).namelist()
    assert "model.safetensors" in names and "config.json" in names and not any("resume" in n for n in names)
    assert run.plan is not None and run.plan["context"] <= 256 and all("step" in e for e in run.evaluations)


@pytest.mark.heavy
def test_a_half_minute_run_draws_a_curve_of_several_evenly_spaced_points(tmp_path):
    """Every 25 steps, as before, a 30-second run on one slow thread (about a step a second) drew its start and its
    end only. The run spreads EVAL_POINTS over its steps, as often as a quarter of its time allows."""
    from demo.training import EVAL_POINTS
    from gpt2_core.train.loop import TIMING_STEPS

    run = TrainingJobs(tmp_path).start("teacher", toy_play(), init="tiny", minutes=0.5)
    wait_until(lambda: run.finished, timeout=120, message="the run's end")
    steps = [e["step"] for e in run.evaluations if "step" in e]
    total = run.evaluations[-1]["total_steps"]
    assert steps[0] == 0 and steps[-1] == total, steps
    # Between them, from the first steps on (which time the budget): how many depends on the machine's speed (a loaded
    # 2-core machine made 16 steps: [0, 12, 16]), so the first comes in the run's first half (every 25 steps, it
    # came at 25 of 33, or never), and more are evenly spaced to the end
    between = steps[1:-1]
    assert between and between[0] <= TIMING_STEPS + (total - TIMING_STEPS) // 2, f"{len(steps)} points: {steps}"
    if len(between) >= 2:
        interval = between[1] - between[0]
        first = -(-TIMING_STEPS // interval) * interval  # the interval's first multiple once the budget is known
        assert between == list(range(first, total, interval)), f"every {interval} steps to the end: {steps}"
        assert interval >= -(-total // EVAL_POINTS), steps


@pytest.mark.parametrize("train_loss, val_loss", [(8.3164, 8.3115), (4.2, 8.31), (8.31, 8.31)])
def test_the_first_evaluations_plot_spans_both_losses_and_the_second_lets_vega_choose(train_loss, val_loss):
    """With one evaluation Vega's own range around two equal losses labelled its axis "8.3" five times."""
    from demo.train_tab import plotted

    first = {"step": 0, "train_loss": train_loss, "val_loss": val_loss, "elapsed_s": 1.0, "tokens_per_s": 0,
             "total_steps": None, "sample": ""}
    low, high = plotted([first]).y_lim
    assert high - low >= 2 and low <= min(train_loss, val_loss) and max(train_loss, val_loss) <= high
    assert plotted([first, {**first, "step": 12, "val_loss": 7.4}]).y_lim is None
    assert plotted([{**first, "train_loss": float("nan")}]).y_lim == [min(7, math.floor(val_loss)), 9]  # the other
    assert plotted([{**first, "train_loss": float("nan"), "val_loss": float("nan")}]).y_lim is None, "none to range"
    assert plotted([]) is None


@pytest.mark.parametrize("text, length", [(" " * 30_000, 0), (("word" + " " * 10) * 2000, 9_999)])
def test_the_tabs_text_counts_a_run_of_spaces_once(text, length):
    from demo.train_tab import check_text_size

    assert len(text) >= 20_000, "a plain count would take it"
    with pytest.raises(ValueError, match=rf"`text` has to be 20,000 to .* characters long \(a run of spaces counts as "
                                         rf"one\), but has {length:,}$"):
        check_text_size(text)
    check_text_size("\n\n".join(["A line of a play, and its speaker."] * 600))  # 21,000: its line breaks count once


@pytest.mark.parametrize("going", [True, False])
def test_start_pressed_again_while_the_run_goes_says_it_goes_on_as_it_started(monkeypatch, going):
    import time
    from types import SimpleNamespace

    import gradio as gr

    from demo.train_tab import BUNDLED_TEXT, SCRATCH, make_run

    run = SimpleNamespace(finished=False, minutes=1.0, errors=[], evaluations=[], init="tiny", started=time.monotonic(),
                          stop_asked=False)
    jobs = SimpleNamespace(current=lambda owner: run if going else None, start=lambda owner, text, **_: run,
                           model_dir=lambda owner: None)
    said = []
    monkeypatch.setattr(gr, "Info", lambda message, *args, **kwargs: said.append(message))
    updates = make_run(None, jobs)(BUNDLED_TEXT, "", SCRATCH, 10, SimpleNamespace(session_hash="page"))
    status = next(updates)[0]
    updates.close()
    assert "Preparing" in status, "the page follows the run either way"
    assert said == (["Your run is still going, with the text and the 1 minutes it started with. Press **Stop** to save "
                     "it, then **Start training** for another."] if going else [])


class FakeProcess:
    """The training child process as TrainingJobs sees it: running until the test ends it; Stop is its SIGTERM."""

    def __init__(self):
        self.returncode: int | None = None
        self.terminated = False

    def poll(self) -> int | None:
        return self.returncode

    def terminate(self) -> None:
        self.terminated = True


def following(monkeypatch, tmp_path, run):
    """This page's run event following `run` (already going, so Start follows it), with no wait between updates."""
    from types import SimpleNamespace

    import gradio as gr

    from demo import train_tab

    monkeypatch.setattr(train_tab, "POLL_S", 0.0)
    monkeypatch.setattr(gr, "Info", lambda *args, **kwargs: None)
    jobs = TrainingJobs(tmp_path)
    jobs._run = run
    request = SimpleNamespace(session_hash="page")
    updates = train_tab.make_run(None, jobs)(train_tab.BUNDLED_TEXT, "", train_tab.SCRATCH, 1, request)
    return jobs, request, updates


def evaluation(step: int) -> dict:
    return {"step": step, "train_loss": 4.0, "val_loss": 4.25, "elapsed_s": float(step), "tokens_per_s": 3000,
            "total_steps": 100, "sample": "The king"}


def test_after_stop_every_update_says_stopping_until_the_run_ends_then_stopped_and_saved(monkeypatch, tmp_path):
    """A tester pressed Stop: for 18 s the page still said "Training... about 96 s left" with the steps rising, then
    "Done", and the class pressed Stop again."""
    from demo.train_tab import make_stop
    from demo.training import Run

    run = Run("page", "tiny", 1.0, tmp_path / "run" / "my-gpt2", FakeProcess(), evaluations=[evaluation(0)])
    jobs, request, updates = following(monkeypatch, tmp_path, run)
    status, *_, stop = next(updates)
    assert status.startswith("**Training\u2026** validation loss at the start 4.25;") and stop.interactive is True
    assert "tokens/s" not in status, "no step yet, so no speed (it said 0 tokens/s)"

    status, stop = make_stop(jobs)(request)
    assert run.process.terminated and run.stop_asked
    assert status.startswith("**Stopping:** measuring the loss one last time and saving the model as it is\u2026 ")
    assert stop.interactive is False, "pressed once is enough"
    run.evaluations.append(evaluation(36))  # the trainer's last evaluation, where it stopped
    for _ in range(3):  # it measures and saves for a while: the status says so, and Stop stays off
        status, *_, stop = next(updates)
        assert status.startswith("**Stopping:**") and stop.interactive is False, status

    run.out_dir.mkdir(parents=True)
    (run.out_dir / "model.safetensors").write_bytes(b"saved")
    run.process.returncode = 0
    status, _, _, download, use, stop = next(updates)
    assert re.fullmatch(r"\*\*Stopped\*\* after 36 steps and \d+ s, preparation included: validation loss 4\.25\. The "
                        r"model is saved as it was: download it below\.", status), status
    assert "Done" not in status and download.interactive and use.interactive and stop.interactive is False
    with pytest.raises(StopIteration):
        next(updates)


def test_a_run_that_ends_by_itself_says_done_and_turns_stop_off(monkeypatch, tmp_path):
    from demo.training import Run

    run = Run("page", "tiny", 1.0, tmp_path / "run" / "my-gpt2", FakeProcess(), evaluations=[evaluation(0)])
    _, _, updates = following(monkeypatch, tmp_path, run)
    assert next(updates)[-1].interactive is True
    run.evaluations.append(evaluation(100))
    run.process.returncode = 0
    status, *_, stop = next(updates)
    assert status.startswith("**Done** after 100 steps and ") and stop.interactive is False


def test_a_run_stopped_before_its_trainer_caught_the_signal_says_it_saved_nothing(monkeypatch, tmp_path):
    from demo.train_tab import make_stop
    from demo.training import Run

    run = Run("page", "tiny", 1.0, tmp_path / "run" / "my-gpt2", FakeProcess())
    jobs, request, updates = following(monkeypatch, tmp_path, run)
    assert next(updates)[0].startswith("**Preparing:**")
    make_stop(jobs)(request)
    run.process.returncode = -15  # killed while Python was still starting: no evaluation, no model
    status, _, _, download, _, stop = next(updates)
    assert status == "**Stopped** before its first step: there is no model to save."
    assert download.interactive is False and stop.interactive is False


@pytest.mark.parametrize("run_state", ["none", "finished", "another visitor's"])
def test_stop_with_no_run_of_this_page_going_says_nothing_and_stops_nothing(tmp_path, run_state):
    from types import SimpleNamespace

    import gradio as gr

    from demo.train_tab import make_stop
    from demo.training import Run

    jobs = TrainingJobs(tmp_path)
    process = FakeProcess()
    if run_state != "none":
        owner = "page" if run_state == "finished" else "another page"
        jobs._run = Run(owner, "tiny", 1.0, tmp_path / "my-gpt2", process, evaluations=[evaluation(100)])
        process.returncode = 0 if run_state == "finished" else None
    status, stop = make_stop(jobs)(SimpleNamespace(session_hash="page"))
    assert isinstance(status, type(gr.skip())), f"no claim that anything is stopping: {status!r}"
    assert stop.interactive is False and not process.terminated
    assert jobs._run is None or not jobs._run.stop_asked


@pytest.mark.parametrize("minutes, shown", [(30, "30"), (0, "0"), (2.5, "2.5"), ("soon", "'soon'")])
def test_minutes_beyond_the_slider_are_refused_by_name_and_nothing_starts(minutes, shown):
    from types import SimpleNamespace

    import gradio as gr

    from demo.train_tab import BUNDLED_TEXT, SCRATCH, make_run

    started = []
    jobs = SimpleNamespace(current=lambda owner: None, start=lambda *args, **kwargs: started.append(args))
    run = make_run(None, jobs)(BUNDLED_TEXT, "", SCRATCH, minutes, SimpleNamespace(session_hash="page"))
    status, *others = next(run)  # the status line says why, as the toast does
    with pytest.raises(gr.Error) as refused:
        next(run)
    assert refused.value.message == f"`minutes` has to be an integer in [1, 10], but is {shown}"
    unescaped = re.sub(r"\\(.)", r"\1", status)  # (Markdown's escapes: the quoted value is shown as written)
    assert unescaped == f"**Not started.** `minutes` has to be an integer in [1, 10], but is {shown}", status
    assert all(isinstance(other, type(gr.skip())) for other in others) and started == []


@pytest.mark.parametrize("minutes", [None, "", " "])
def test_an_emptied_minutes_box_says_so_by_name(minutes):
    """(It said "but is ''".)"""
    from types import SimpleNamespace

    import gradio as gr

    from demo.train_tab import BUNDLED_TEXT, SCRATCH, make_run

    jobs = SimpleNamespace(current=lambda owner: None, start=lambda *args, **kwargs: pytest.fail("a run started"))
    run = make_run(None, jobs)(BUNDLED_TEXT, "", SCRATCH, minutes, SimpleNamespace(session_hash="page"))
    next(run)
    with pytest.raises(gr.Error) as refused:
        next(run)
    assert refused.value.message == "`minutes` has no number in its box: type one in [1, 10]"


@pytest.mark.smoke
@pytest.mark.browser
def test_minutes_typed_beyond_the_slider_get_the_projects_message_not_a_traceback(browser, app, capfd):  # noqa: F811
    """The browser clamps a typed 30 to the slider's 10 when the box is left: the run would have taken 10 minutes
    without a word, or Gradio's own message and a traceback in the teacher's console."""
    page = browser.new_context(viewport=VIEWPORT).new_page()
    page.set_default_timeout(15_000)
    try:
        page.goto(app.url)
        page.get_by_role("tab", name="Build your own").click()
        capfd.readouterr()
        page.locator("#train-minutes input[type=number]").fill("30")
        page.locator("#train-start").click()
        toast = page.locator("[data-testid=toast-text]")
        wait_until(lambda: toast.count() >= 1, message="the refusal")
        assert toast.first.inner_text() == as_toast("`minutes` has to be an integer in [1, 10], but is 30")
        assert page.locator("#train-status").inner_text() == (
            "Not started. minutes has to be an integer in [1, 10], but is 30"), "said where the eyes are too"
        page.wait_for_timeout(500)
        assert "Traceback" not in capfd.readouterr().err, "the server's log"
    finally:
        page.context.close()


@pytest.mark.heavy
@pytest.mark.browser
def test_the_tab_trains_draws_the_curve_and_samples_and_stop_saves(browser, app):  # noqa: F811
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        page.goto(app.url)
        page.get_by_role("tab", name="Build your own").click()
        page.get_by_label("My own text (paste or upload below)").check()
        page.locator("#train-text textarea").fill(toy_play(1500))
        page.locator("#train-start").click()
        wait_until(lambda: "Training" in page.locator("#train-status").inner_text(), timeout=60, message="training")
        wait_until(lambda: page.locator("#train-samples code, #train-samples pre").count() >= 2, timeout=90,
                   message="two samples")
        assert page.locator("#train-curve canvas, #train-curve svg").count() >= 1
        page.locator("#train-stop").click()
        wait_until(lambda: "Stopped" in page.locator("#train-status").inner_text(), timeout=60, message="saved")
        assert not page.locator("#train-stop").is_enabled(), "the run has ended"
        assert "The model is saved as it was" in page.locator("#train-status").inner_text()
        wait_until(lambda: page.locator("#train-download").is_enabled(), message="the download")
        with page.expect_download() as download:
            page.locator("#train-download").click()
        assert download.value.suggested_filename.endswith(".zip")
        with page.expect_download() as saved:  # the loss curve as a picture for lesson notes
            page.locator("#train-curve-save-png").click()
        assert saved.value.suggested_filename == "gpt2-training-loss.png"
        curve = Image.open(saved.value.path()).convert("RGB")
        assert curve.width > 300 and curve.height > 200, curve.size
        coloured = sum(n for n, rgb in curve.getcolors(curve.width * curve.height) if max(rgb) - min(rgb) > 80)
        assert coloured / (curve.width * curve.height) > 0.002, "the curve's coloured lines"

        # "Use this model": this page's Generate writes with it, another visitor's page keeps the shared model
        page.locator("#train-use").click()
        wait_until(lambda: "on this page only" in page.locator("#train-use-status").inner_text(), message="adopted")
        wait_until(lambda: "your model (from scratch" in page.locator("#model-info").inner_text(), message="panel")
        page.get_by_role("tab", name="Generate").click()
        page.locator("#prompt textarea").fill("ROMEO.")
        page.locator("#generate-button").click()
        wait_until(lambda: "Done" in page.locator("#run-state").inner_text(), timeout=60, message="generated")
        assert "your model (from scratch" in page.locator("#stats").inner_text()
        other = context.browser.new_context(viewport=VIEWPORT).new_page()
        try:
            other.goto(app.url)
            wait_until(lambda: "Model" in other.locator("#model-info").inner_text(), message="the other page")
            assert "your model" not in other.locator("#model-info").inner_text()
        finally:
            other.context.close()
        page.get_by_role("tab", name="Build your own").click()
        page.locator("#train-unuse").click()
        wait_until(lambda: "your model" not in page.locator("#model-info").inner_text(), message="back to shared")
    finally:
        context.close()


def test_own_models_serve_their_page_only_and_the_oldest_goes(tiny_checkpoint, lm):
    from demo.models import AppModels, LazyFillMask, ModelHolder, OwnModels

    loaded = []

    def load(source):
        mine = load_model(source)
        loaded.append(mine)
        return mine

    models = AppModels(ModelHolder(lambda s: lm, "shared"), LazyFillMask(lambda s: None, "bert"), [],
                       OwnModels(load, limit=2))
    directory = tiny_checkpoint  # as the Build your own tab's run leaves it: a directory in GPT-2's layout
    models.own.adopt("a", str(directory), "your model (a)")
    with models.use("a") as first, models.use("b") as other:
        assert first.name == "your model (a)" and other is lm
        models.own.adopt("b", str(directory), "your model (b)")
        models.own.adopt("c", str(directory), "your model (c)")  # a third pushes out the oldest, a's
        with models.use("a") as now:
            assert now is lm
        assert not first.engine.closed, "a request in flight keeps its model until it ends"
    assert first.engine.closed
    with models.use("b") as b_model:
        assert b_model.name == "your model (b)"
    models.own.drop("b")
    assert models.serving("b") is lm and loaded[1].engine.closed and not loaded[2].engine.closed
    models.own.close()  # not models.close(): the shared model is the suite's `lm`, which later tests use
    assert loaded[2].engine.closed and not lm.engine.closed

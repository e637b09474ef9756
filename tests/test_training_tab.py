"""The Build your own tab: one run at a time beside serving, in a child process; the page shows the curve and samples,
Stop saves, the model downloads. In chromium where it is visible."""

from __future__ import annotations

import pytest
from gradio_client import Client
from PIL import Image
from test_browser import VIEWPORT, browser  # noqa: F401 (fixture)
from test_train import toy_play
from ui_helpers import wait_until

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

    run = SimpleNamespace(finished=False, minutes=1.0, errors=[], evaluations=[], init="tiny", started=time.monotonic())
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


@pytest.mark.parametrize("minutes, shown", [(30, "30"), (0, "0"), (2.5, "2.5"), ("soon", "'soon'")])
def test_minutes_beyond_the_slider_are_refused_by_name_and_nothing_starts(minutes, shown):
    from types import SimpleNamespace

    import gradio as gr

    from demo.train_tab import BUNDLED_TEXT, SCRATCH, make_run

    started = []
    jobs = SimpleNamespace(current=lambda owner: None, start=lambda *args, **kwargs: started.append(args))
    with pytest.raises(gr.Error) as refused:
        next(make_run(None, jobs)(BUNDLED_TEXT, "", SCRATCH, minutes, SimpleNamespace(session_hash="page")))
    assert refused.value.message == f"`minutes` has to be an integer in [1, 10], but is {shown}"
    assert started == []


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
        assert toast.first.inner_text() == "`minutes` has to be an integer in [1, 10], but is 30"
        assert "Training" not in page.locator("#train-status").inner_text()
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
        wait_until(lambda: "Done" in page.locator("#train-status").inner_text(), timeout=60, message="saved")
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
    models.close()

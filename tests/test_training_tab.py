"""The Build your own tab: one run at a time beside serving, in a child process; the page shows the curve and samples,
Stop saves, the model downloads. In chromium where it is visible."""

from __future__ import annotations

import pytest
from gradio_client import Client
from test_browser import VIEWPORT, browser  # noqa: F401 (fixture)
from test_train import toy_play
from ui_helpers import wait_until

from demo import AppConfig
from demo.training import TrainingBusyError, TrainingJobs

pytest_plugins = ["fixtures_ui"]


@pytest.mark.parametrize("argv, env, allowed", [
    ([], {}, True), (["--host", "0.0.0.0"], {}, False), (["--host", "0.0.0.0", "--allow-training"], {}, True),
    ([], {"GPT2_ALLOW_TRAINING": "0"}, False), ([], {"GRADIO_SERVER_NAME": "0.0.0.0", "GPT2_ALLOW_TRAINING": "1"}, True),
])
def test_training_is_on_for_this_machine_and_off_for_a_room(argv, env, allowed):
    assert AppConfig.from_env_and_args(argv, env).training_allowed is allowed


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
    assert jobs.zip("teacher").endswith(".zip") and jobs.zip("student") is None


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
    finally:
        context.close()

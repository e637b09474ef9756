"""Build your own's loss curve and status as chromium draws them (issue 18): the line starts at the first evaluation
on numeric axes (an empty first frame once made the losses text labels on the y axis until the window was resized),
the samples show no replacement character and wrap, and the time counts the preparation. Stop is on only while the
run goes; once pressed, the status says the run is stopping until it has saved, then that it was stopped.

The fast tests feed the tab a scripted run (its evaluations arrive on a timer, as the child process would print them);
the heavy one trains the tiny model for real and stops it.
"""

from __future__ import annotations

import io
import re
import time
from pathlib import Path

import pytest
from test_browser import browser  # noqa: F401 (a fixture)
from test_browser_a11y import violations
from test_train import toy_play
from ui_helpers import wait_until

from demo.training import TrainingJobs

pytestmark = pytest.mark.browser
pytest_plugins = ["fixtures_ui"]

VIEWPORTS = {"1280x720": (1280, 720), "390x844": (390, 844)}
LONG_LINE = "ROMEO." + "x" * 240  # one line far wider than a phone, with no space to break at
SAMPLES = ["\ufffd_~\ufffd" + LONG_LINE + "\ufffd", "The king speaks in the hall.", "A lady laughs by the sea.",
           "The fool prays at the gate.", "My lord rides before the throne."]


class ScriptedRun:
    """A training run that has printed its evaluations one every `every_s` seconds, then ends."""

    def __init__(self, evaluations: list[dict], out_dir: Path, *, every_s: float, prepare_s: float):
        self._evaluations = evaluations
        self._every_s = every_s
        self._prepare_s = prepare_s
        self.started = time.monotonic()
        self.init, self.minutes, self.out_dir, self.errors = "tiny", 1.0, out_dir, []
        self.stop_asked = False

    def _printed(self) -> int:
        since_prepared = time.monotonic() - self.started - self._prepare_s
        return 0 if since_prepared < 0 else int(since_prepared / self._every_s) + 1

    @property
    def evaluations(self) -> list[dict]:
        return self._evaluations[:self._printed()]

    @property
    def finished(self) -> bool:
        return self._printed() > len(self._evaluations)


def scripted_evaluations() -> list[dict]:
    losses = [(8.3, 8.3), (5.1, 5.2), (3.4, 3.6), (2.6, 2.9), (2.2, 2.6)]
    return [{"step": 25 * i, "train_loss": train, "val_loss": val, "elapsed_s": 2.0 + 10.0 * i,
             "tokens_per_s": 0 if i == 0 else 3000, "lr": 1e-3, "total_steps": 100, "sample": sample}
            for i, ((train, val), sample) in enumerate(zip(losses, SAMPLES, strict=True))]


@pytest.fixture
def scripted(monkeypatch, tmp_path):
    """The app's training jobs start a ScriptedRun instead of a child process."""
    jobs = []

    def start(self, owner, text, *, init, minutes):
        run = ScriptedRun(scripted_evaluations(), tmp_path / "run" / "my-gpt2", every_s=1.5, prepare_s=2.0)
        run.owner = owner
        self._run = run
        jobs.append(self)
        return run

    monkeypatch.setattr(TrainingJobs, "start", start)
    yield
    for job in jobs:
        job._run = None  # the app's next real run has no scripted one to end


def open_build_your_own(browser, url: str, viewport: str):  # noqa: F811
    width, height = VIEWPORTS[viewport]
    page = browser.new_context(viewport={"width": width, "height": height}).new_page()
    page.set_default_timeout(15_000)
    page.goto(url)
    page.get_by_role("tab", name="Build your own").click()
    page.locator("#train-start").wait_for()
    return page


def drawn_curve(page) -> dict:
    """What Vega drew in the plot's SVG: each line's number of points, and the y axis's description and labels."""
    return page.evaluate("""() => {
        const svg = document.querySelector('#train-curve svg');
        if (!svg) return null;
        const lines = [...svg.querySelectorAll('g.mark-line path')].map(p => p.getAttribute('d') || '');
        const yAxis = [...svg.querySelectorAll('g[aria-label^="Y-axis"]')][0];
        return {
            points: lines.map(d => (d.match(/[ML]/g) || []).length),
            yAxis: yAxis ? yAxis.getAttribute('aria-label') : '',
            yLabels: yAxis ? [...yAxis.querySelectorAll('g.role-axis-label text')]  // top to bottom
                .map(t => [t.getBoundingClientRect().y, t.textContent]).sort((a, b) => a[0] - b[0])
                .map(([, text]) => text) : [],
        };
    }""")


def painted(page) -> dict[str, int]:
    """Pixels of each line's colour (Vega's first two: training, validation) in a picture of the plot: what a person
    sees, which can differ from the page's SVG (a plot once drawn without data kept its lines out of the picture)."""
    from PIL import Image

    picture = Image.open(io.BytesIO(page.locator("#train-curve").screenshot())).convert("RGB")
    colours = {"training": (0x4C, 0x78, 0xA8), "validation": (0xF5, 0x85, 0x18)}
    pixels = list(picture.getdata())
    return {name: sum(all(abs(a - b) <= 24 for a, b in zip(pixel, rgb, strict=True)) for pixel in pixels)
            for name, rgb in colours.items()}


def numeric_labels(labels: list[str]) -> bool:
    return bool(labels) and all(re.fullmatch(r"-?\d+(\.\d+)?", label) for label in labels)


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_the_curve_is_drawn_on_numeric_axes_from_the_first_point(browser, app, scripted, viewport):  # noqa: F811
    page = open_build_your_own(browser, app.url, viewport)
    try:
        stop = page.locator("#train-stop")
        assert stop.is_disabled(), "no run to stop before Start"
        pressed = time.monotonic()
        page.locator("#train-start").click()
        wait_until(lambda: "Preparing" in page.locator("#train-status").inner_text(), message="the preparation")
        wait_until(stop.is_enabled, message="Stop on while the run goes")
        wait_until(lambda: "at the start 8.30" in page.locator("#train-status").inner_text(), message="the first point")
        first = wait_until(lambda: (c := drawn_curve(page)) and c["yLabels"] and c, message="the first point drawn")
        assert "linear scale" in first["yAxis"] and numeric_labels(first["yLabels"]), first
        labels = first["yLabels"]  # one evaluation, two equal losses: a range around them, each label once
        assert len(labels) >= 3 and len(set(labels)) == len(labels) and float(labels[0]) > 8.3 > float(labels[-1]), first
        wait_until(lambda: "Done" in page.locator("#train-status").inner_text(), timeout=20, message="the end")
        took = int(re.search(r"steps and (\d+) s", page.locator("#train-status").inner_text()).group(1))
        assert abs(took - (time.monotonic() - pressed)) <= 3, "from the press of Start, not the run's own 42 s"
        wait_until(stop.is_disabled, message="Stop off once the run has ended")
        curve = wait_until(lambda: (c := drawn_curve(page)) and sorted(c["points"]) == [5, 5] and c,
                           message="two lines of five points")
        assert "linear scale" in curve["yAxis"] and numeric_labels(curve["yLabels"]), curve
        wait_until(lambda: min(painted(page).values()) >= 100, message=f"both lines in the picture: {painted(page)}")
        values = [float(v) for v in curve["yLabels"]]
        assert values == sorted(values, reverse=True) and values[0] >= 8 and values[-1] <= 2.2, values  # all in range

        samples = page.locator("#train-samples")
        text = samples.inner_text()
        assert "\ufffd" not in text and "_~" + LONG_LINE in text, text[:200]
        assert "Step 100" in text and text.index("Step 100") < text.index("Step 0"), "the newest first"
        first_sample = samples.locator("pre").last
        box = first_sample.bounding_box()
        assert box["x"] + box["width"] <= VIEWPORTS[viewport][0], f"a long line overflows the page: {box}"
        assert first_sample.evaluate("e => e.scrollWidth <= e.clientWidth + 1"), "the long line scrolls, not wraps"
        assert violations(page) == []
    finally:
        page.context.close()


@pytest.mark.heavy
def test_a_real_run_counts_its_preparation_and_passes_axe(browser, app):  # noqa: F811
    page = open_build_your_own(browser, app.url, "1280x720")
    try:
        assert page.locator("#train-stop").is_disabled(), "no run to stop before Start"
        page.get_by_label("My own text (paste or upload below)").check()
        page.locator("#train-text textarea").fill(toy_play(1500))
        pressed = time.monotonic()
        page.locator("#train-start").click()
        wait_until(lambda: "Preparing" in page.locator("#train-status").inner_text(), message="the preparation")
        status = wait_until(lambda: "Training" in (s := page.locator("#train-status").inner_text()) and s,
                            timeout=60, message="the first step")
        so_far = int(re.search(r"(\d+) s so far", status).group(1))
        assert so_far >= 0.6 * (time.monotonic() - pressed) - 2, (status, time.monotonic() - pressed)
        wait_until(lambda: (c := drawn_curve(page)) and min(c["points"] or [0]) >= 2, timeout=90,
                   message="a line of two points")
        assert "\ufffd" not in page.locator("#train-samples").inner_text()
        assert page.locator("#train-stop").is_enabled()
        page.locator("#train-stop").click()
        wait_until(lambda: "Stopping:" in page.locator("#train-status").inner_text(), timeout=5, message="stopping")
        assert page.locator("#train-stop").is_disabled(), "pressed once is enough"
        seen = []  # each status the page shows from then until the run has saved (the trainer measures once more)
        wait_until(lambda: seen.append(page.locator("#train-status").inner_text()) or seen[-1].startswith("Stopped"),
                   timeout=60, interval=0.1, message="saved")
        assert all(s.startswith("Stopping:") for s in seen[:-1]), [s for s in seen if not s.startswith("Stopping:")]
        done = seen[-1]
        assert re.fullmatch(r"Stopped after \d+ steps and \d+ s, preparation included: validation loss \d+\.\d\d\. The "
                            r"model is saved as it was: download it below\.", done), done
        took = int(re.search(r"steps and (\d+) s", done).group(1))
        assert abs(took - (time.monotonic() - pressed)) <= 5, (done, time.monotonic() - pressed)
        assert page.locator("#train-stop").is_disabled(), "the run has ended"
        wait_until(lambda: page.locator("#train-download").is_enabled(), message="the download")
        assert violations(page) == []
    finally:
        page.context.close()

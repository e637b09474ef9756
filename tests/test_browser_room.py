"""Running a room, in Debian's chromium (issue 9): numbers typed beyond a slider's range, share links, the run state.

Uses test_browser.py's `browser` fixture (skipped with its reason where chromium is absent).
"""

from __future__ import annotations

import pytest
from test_browser import ARTIFACTS, VIEWPORT, browser  # noqa: F401 (fixture)
from ui_helpers import wait_until

pytestmark = pytest.mark.browser
pytest_plugins = ["fixtures_ui"]


@pytest.fixture
def page(browser, app, request):  # noqa: F811
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.goto(app.url)
    page.locator("#prompt textarea").wait_for()
    yield page
    report = getattr(request.node, "report_call", None)
    if report is None or report.failed:
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
    context.close()


def toasts(page) -> list[str]:
    return page.locator(".toast-body").all_inner_texts()


@pytest.mark.parametrize("elem_id, typed, message", [
    ("max-new-tokens", "5000", "`max_new_tokens` has to be an integer in [1, 512], but is 5000"),
    ("temperature", "5", "`temperature` has to be a finite number in [0, 2], but is 5"),
    ("top-k", "-5", "`top_k` has to be an integer in [0, 200], but is -5"),
    ("top-p", "0", "`top_p` has to be a finite number in (0, 1], but is 0"),
    ("num-samples", "9", "`num_samples` has to be an integer in [1, 4], but is 9"),
])
def test_a_number_typed_beyond_a_slider_is_refused_by_name_and_nothing_runs(page, app, elem_id, typed, message):
    engine = app.models.gpt2.current.engine
    box = page.locator(f"#{elem_id} input[type=number]")
    box.fill(typed)
    box.press("Enter")
    steps = engine.steps
    page.locator("#generate-button").click()
    wait_until(lambda: any(message in t for t in toasts(page)), message=f"the message naming {elem_id}")
    assert all("`" in t for t in toasts(page)), f"a message that names no parameter: {toasts(page)}"
    assert engine.steps == steps and page.locator("#sample-view-1 .token.highlighted").count() == 0

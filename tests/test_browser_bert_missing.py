"""The offline classroom without BERT (issue 18): BERT's folder is not there. BERT vs GPT-2 says so as it opens, in the
page and with BERT's fix, without loading anything; Compare still draws GPT-2's next words, and BERT's chart area says
why; Inside shows the reason in BERT's column and none of BERT's controls. At a laptop's and a phone's size, and with
no serious or critical axe-core violation.
"""

from __future__ import annotations

import pytest
from test_browser import CHROMIUM, browser  # noqa: F401 (a fixture)
from test_browser_a11y import violations
from ui_helpers import launched_app, wait_until

from demo.models import AppModels

pytestmark = pytest.mark.browser
pytest_plugins = ["fixtures_ui"]

VIEWPORTS = {"1280x720": (1280, 720), "390x844": (390, 844)}
BERTS_FIX = "python -m gpt2_core download bert-base-uncased"


@pytest.fixture(scope="module")
def no_bert_app(tmp_path_factory, tiny_checkpoint):
    missing = tmp_path_factory.mktemp("offline") / "bert-not-downloaded"
    with launched_app(tiny_checkpoint, missing) as running:
        running.missing = str(missing)
        yield running


@pytest.fixture(params=list(VIEWPORTS))
def page(request, browser, no_bert_app):  # noqa: F811
    width, height = VIEWPORTS[request.param]
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.goto(no_bert_app.url)
    page.locator("#prompt textarea").wait_for()
    yield page
    context.close()


def rendered(text: str) -> bool:
    """No Markdown left unrendered: no backtick, no escaping backslash, no asterisks."""
    return not any(mark in text for mark in ("`", "\\", "**"))


def open_tab(page, name: str) -> None:
    page.get_by_role("tab", name=name).click()


def test_compare_tab_says_bert_is_missing_as_it_opens_without_loading_it(page, no_bert_app):
    open_tab(page, "BERT vs GPT-2")
    note = page.locator("#compare-bert-missing")
    wait_until(lambda: note.is_visible() and "BERT is missing here" in note.inner_text(), message="the note")
    text = note.inner_text()
    assert no_bert_app.missing in text and BERTS_FIX in text, text
    assert rendered(text), text
    assert note.locator("code", has_text=BERTS_FIX).count() == 1, "the command is drawn as code"
    assert "GPT-2 checkpoint" not in text and "download gpt2" not in text, "BERT's fix, not GPT-2's"
    box = note.bounding_box()
    assert 0 <= box["x"] and box["x"] + box["width"] <= page.viewport_size["width"], box
    assert page.locator("#bert-chart-why").is_visible() and not page.locator("#bert-chart").is_visible()
    models: AppModels = no_bert_app.models
    assert not models.bert.loaded and models.bert.error is None, "the page was told without a load being tried"


@pytest.mark.smoke("1280x720")
def test_compare_draws_gpt2s_chart_and_says_why_in_berts(page):
    open_tab(page, "BERT vs GPT-2")
    page.locator("#compare-button").click()
    wait_until(lambda: page.locator("#gpt2-next-chart .confidence-set").count() >= 3, message="GPT-2's chart")
    why = page.locator("#bert-chart-why")
    wait_until(lambda: "Not available" in why.inner_text(), message="why BERT's chart is empty")
    assert "does not exist" in why.inner_text() and rendered(why.inner_text()), why.inner_text()
    assert not page.locator("#bert-chart").is_visible() and not page.locator("#gpt2-ranking-chart").is_visible()
    assert "needs BERT" in page.locator("#gpt2-ranking-why").inner_text()
    assert "BERT is missing here" in page.locator("#what-each-saw").inner_text()
    assert page.locator(".toast-body").count() == 0, page.locator(".toast-body").all_inner_texts()
    # No Save as PNG under a chart that cannot be drawn (it could only say "Nothing to save yet"); GPT-2's own keeps
    # its size, not stretched to its column's height beside BERT's message
    assert not any(page.locator(f"#{chart}-save-png").is_visible() for chart in ("bert-chart", "gpt2-ranking-chart"))
    save = page.locator("#gpt2-next-chart-save-png")
    assert save.is_visible() and save.bounding_box()["height"] < 60, save.bounding_box()  # a small button's ~30 px
    assert violations(page) == []


def test_inside_shows_why_in_berts_column_and_none_of_its_controls(page):
    open_tab(page, "Inside")
    wait_until(lambda: page.locator("#inside-gpt2-map svg rect").count() > 10, timeout=30, message="GPT-2's map")
    bert_map = page.locator("#inside-bert-map")
    wait_until(lambda: "BERT is not available" in bert_map.inner_text(), message="BERT's reason")
    text = bert_map.inner_text()
    assert BERTS_FIX in text and rendered(text), text
    assert bert_map.locator("code", has_text=BERTS_FIX).count() == 1
    for control in ("#inside-bert-layer", "#inside-bert-head", "#inside-bert-heads"):
        assert not page.locator(control).is_visible(), control
    for control in ("#inside-gpt2-layer", "#inside-gpt2-head", "#inside-gpt2-heads"):
        assert page.locator(control).is_visible(), control
    assert violations(page) == []


def test_compare_tab_passes_axe_before_compare(page):
    open_tab(page, "BERT vs GPT-2")
    wait_until(lambda: page.locator("#compare-bert-missing").is_visible(), message="the note")
    assert violations(page) == []

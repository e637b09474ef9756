"""The Scale tab as a person sees it (demo/scale_tab.py), in chromium: Stop can be pressed only while a run goes on and
says "Stopped" only for a run it cut short; on a phone the figures table's headers break between words, never inside
one, nothing of the table is out of reach and its numbers are written as the page's language writes them; a size
that is not here is explained in the page's language."""

from __future__ import annotations

import re

import pytest
from test_browser import browser  # noqa: F401 (fixture)
from ui_helpers import launched_app, wait_until

from gpt2_core import GPTConfig
from gpt2_core.testing import random_checkpoint

pytestmark = pytest.mark.browser
pytest_plugins = ["fixtures_ui"]

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1366, "height": 900}
TAB = {"en": "Scale", "es": "Escala", "fr": "Échelle"}
DELAY_S = 0.05  # per token: a size writes its 40 tokens in about 2 s, long enough to press Stop in the middle
NOT_HERE = "gpt2-xl"  # one of OpenAI's sizes, not in this machine's cache: listed with the command that fetches it


@pytest.fixture(scope="module")
def scale_app(tiny_checkpoint, tiny_bert, tmp_path_factory):
    root = tmp_path_factory.mktemp("scale-sizes")
    small, medium = (str(random_checkpoint(root / name, GPTConfig(n_layer=2, n_head=2, n_embd=d, block_size=128),
                                           seed=i))
                     for i, (name, d) in enumerate((("small", 64), ("medium", 128))))
    with launched_app(tiny_checkpoint, tiny_bert, delay=DELAY_S, scale_models=(small, medium, NOT_HERE)) as running:
        yield running


def open_scale(browser, url: str, lang: str = "en", viewport: dict = DESKTOP):  # noqa: F811
    page = browser.new_context(viewport=viewport).new_page()
    page.set_default_timeout(30_000)
    page.goto(f"{url}?lang={lang}")
    page.locator("#prompt textarea").wait_for()
    page.get_by_role("tab", name=TAB[lang]).click()
    wait_until(lambda: page.locator("#scale-figures th").count() == 6, message="the figures table's columns")
    return page


def test_stop_can_be_pressed_only_while_a_run_goes_on(browser, scale_app):  # noqa: F811
    page = open_scale(browser, scale_app.url)
    try:
        run, stop, state = page.locator("#scale-run"), page.locator("#scale-stop"), page.locator("#scale-state")
        wait_until(lambda: "Ready" in state.inner_text(), message="the sizes here")
        assert stop.is_disabled(), "nothing runs: nothing to stop"
        focused = "() => document.activeElement && document.activeElement.id"
        run.focus()
        page.keyboard.press("Enter")  # by keyboard: the focus goes with the button that works (app.HAND_FOCUS_ON)
        wait_until(stop.is_enabled, message="Stop, from Run's click")
        assert run.is_disabled(), "one run at a time"
        wait_until(lambda: page.evaluate(focused) == "scale-stop", message="the focus on Stop while Run is off")
        wait_until(lambda: "Done" in state.inner_text(), timeout=60, message="every size")
        wait_until(stop.is_disabled, message="Stop off again once the run ended")
        assert run.is_enabled() and "Stopped" not in state.inner_text()
        wait_until(lambda: page.evaluate(focused) == "scale-run", message="the focus back on Run")
        assert page.locator("#scale-columns .scale-done").count() == 2
    finally:
        page.context.close()


@pytest.mark.smoke
def test_stop_in_the_middle_says_stopped_and_which_sizes_it_cut_short(browser, scale_app):  # noqa: F811
    page = open_scale(browser, scale_app.url)
    try:
        run, stop, state = page.locator("#scale-run"), page.locator("#scale-stop"), page.locator("#scale-state")
        run.click()
        wait_until(lambda: page.locator("#scale-columns .scale-writing").count() == 1, timeout=30,
                   message="the first size writing")
        stop.click()
        wait_until(lambda: "Stopped" in state.inner_text(), message="the state line to say stopped")
        wait_until(lambda: stop.is_disabled() and run.is_enabled(), message="Stop off, Run free again")
        page.wait_for_timeout(1000)  # an update still on its way when Stop was pressed must not undo it
        assert "Stopped" in state.inner_text(), state.inner_text()
        states = page.locator("#scale-columns .scale-card .scale-state").all_inner_texts()
        assert states == ["stopped", "stopped"], states  # the first cut short while writing, the second never began
        assert "stopped" in page.locator("#scale-figures").inner_text()
        assert stop.is_disabled(), "and no second Stop for a run that ended"
    finally:
        page.context.close()


HEADER_WORDS = """() => Array.from(document.querySelectorAll('#scale-figures th .header')).map(span => {
  const node = span.firstChild, text = node ? node.textContent : '';
  const words = [];
  for (const found of text.matchAll(/\\S+/g)) {
    const range = document.createRange();
    range.setStart(node, found.index);
    range.setEnd(node, found.index + found[0].length);
    const lines = new Set(Array.from(range.getClientRects()).map(r => Math.round(r.top)));
    words.push([found[0], lines.size]);
  }
  const th = span.closest('th');
  return {text, words, cut: th.scrollWidth > th.clientWidth + 1 || span.scrollWidth > span.clientWidth + 1};
})"""
SCROLL_TO_THE_END = """() => {
  const box = document.querySelector('#scale-figures .virtual-table-viewport');
  box.scrollLeft = box.scrollWidth;
  const shown = box.getBoundingClientRect();
  const last = Array.from(document.querySelectorAll('#scale-figures th')).pop().getBoundingClientRect();
  return {scrolls: getComputedStyle(box).overflowX, inside: last.left >= shown.left - 1 && last.right <= shown.right + 1};
}"""


def chart_numbers(page) -> dict[str, list[str]]:
    """The numbers on the chart's axes, and in the tooltip of its last point once the mouse is on it."""
    page.locator("#scale-chart svg").scroll_into_view_if_needed()
    axes = page.locator("#scale-chart svg g.role-axis-label text").all_text_contents()
    box = page.locator("#scale-chart svg g.mark-symbol path").last.bounding_box()  # drawn on hover: there, unseen
    values = page.locator("#vg-tooltip-element.visible td.value")
    wait_until(lambda: page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2) or values.count(),
               message="the last point's tooltip")
    return {"axes": axes, "tooltip": values.all_inner_texts()}


def readable_headers(page) -> None:
    headers = page.evaluate(HEADER_WORDS)
    assert len(headers) == 6
    for header in headers:
        broken = [word for word, lines in header["words"] if lines != 1]
        assert not broken and not header["cut"], f"{header['text']!r}: {broken or 'cut'}"
    end = page.evaluate(SCROLL_TO_THE_END)
    assert end["scrolls"] in ("auto", "scroll") and end["inside"], f"the last column cannot be reached: {end}"


@pytest.mark.parametrize("lang", ["en", "es", "fr"])
def test_on_a_phone_the_figures_headers_break_only_between_words_and_the_table_scrolls(browser, scale_app,  # noqa: F811
                                                                                        lang):
    page = open_scale(browser, scale_app.url, lang, viewport=PHONE)
    try:
        readable_headers(page)  # before a run: the sizes waiting
        page.locator("#scale-run").click()
        wait_until(lambda: page.locator("#scale-columns .scale-done").count() == 2, timeout=60, message="every size")
        wait_until(lambda: page.locator("#scale-run").is_enabled(), message="the run's end")
        readable_headers(page)  # after: the figures
        cells = [line.strip() for line in page.locator("#scale-figures").inner_text().splitlines()]
        figures = [c for c in cells if re.fullmatch(r"[0-9][0-9.,\u202f]*", c)]  # parameters, tokens/s, bits per token
        decimal = "." if lang == "en" else ","  # written as the page's language writes numbers
        assert len(figures) == 6 and all(re.search(rf"\{decimal}[0-9]+$", c) for c in figures), cells
        chart = chart_numbers(page)  # and so are the chart's, which Vega draws in English (i18n.DRAWN_NUMBERS)
        other = "," if lang == "en" else "."
        for shown in chart["axes"], chart["tooltip"]:
            assert any(decimal in n for n in shown) and not any(other in n for n in shown), chart
        assert set(chart["tooltip"]) <= set(cells), f"a point's tooltip shows the table's figures: {chart}, {cells}"
    finally:
        page.context.close()


@pytest.mark.parametrize("lang, reads", [
    ("es", "no está en esta máquina: python -m gpt2_core download gpt2-xl lo descarga; ocuparía 1,57 GB de memoria en "
           "int8 (rápido en CPU)"),
    ("fr", "absent de cette machine : python -m gpt2_core download gpt2-xl le télécharge ; il occuperait 1,57 Go de "
           "mémoire en int8 (rapide sur CPU)"),
])
def test_a_size_that_is_not_here_is_explained_in_the_pages_language(browser, scale_app, lang, reads):  # noqa: F811
    page = open_scale(browser, scale_app.url, lang, viewport=PHONE)
    try:
        skipped = page.locator("#scale-columns .scale-skipped")
        wait_until(lambda: NOT_HERE in skipped.inner_text(), message="the size that is not here")
        assert reads in skipped.inner_text(), skipped.inner_text()
        assert "not on this machine" not in skipped.inner_text() and "fetches" not in skipped.inner_text()
    finally:
        page.context.close()

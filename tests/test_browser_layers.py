"""The Layers tab (the logit lens) in Debian's chromium, at a laptop's 1280x720 and a phone's 390x844: the grid drawn
when the tab opens, a clicked cell's 5 likeliest tokens, the watched word's chart, Let GPT-2 continue and the
commitment colouring, a share link, and axe.

Uses test_browser.py's `browser` fixture (skipped with its reason where chromium is absent) and the shared tiny app.
"""

from __future__ import annotations

from urllib.parse import urlencode

import pytest
from test_browser import browser, photograph_if_failed  # noqa: F401 (fixture)
from test_browser_a11y import violations
from ui_helpers import wait_until

from demo.lens_pictures import ordinal, row_name
from gpt2_core.explain.lens import MAX_LENS_TOKENS

pytestmark = pytest.mark.browser
pytest_plugins = ["fixtures_ui"]

VIEWPORTS = {"1280x720": {"width": 1280, "height": 720}, "390x844": {"width": 390, "height": 844}}


@pytest.fixture(params=list(VIEWPORTS))
def layers(browser, app, request):  # noqa: F811
    """A fresh page at each size, on the Layers tab with its first grid drawn (photographed if the test failed)."""
    page = browser.new_context(viewport=VIEWPORTS[request.param]).new_page()
    page.set_default_timeout(30_000)
    page.goto(app.url)
    page.locator("#prompt textarea").wait_for()
    page.get_by_role("tab", name="Layers").click()
    wait_until(lambda: page.locator("#layers-grid .lens-cell").count() > 5, timeout=30, message="the grid")
    yield page
    photograph_if_failed(page, request)
    page.context.close()


def in_view(page, selector: str) -> bool:
    box = page.locator(selector).first.bounding_box()
    size = page.viewport_size
    return (box is not None and -1 <= box["y"] and box["y"] + min(box["height"], 60) <= size["height"]
            and box["x"] >= -1 and box["x"] + min(box["width"], 60) <= size["width"] + 1)


def no_sideways_scroll(page) -> bool:
    """The page itself never scrolls sideways (the grid scrolls inside its own box)."""
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")


@pytest.mark.smoke("1280x720")
def test_the_grid_has_a_row_per_layer_and_a_column_per_token_with_the_answer_marked(layers, app):
    lm = app.models.gpt2.current
    lens = lm.logit_lens("The Eiffel Tower is in the city of")
    rows, columns = len(lens.layers), len(lens.tokens)
    assert layers.locator("#layers-grid .lens-cell").count() == rows * columns
    sides = layers.locator("#layers-grid th.lens-side").all_inner_texts()
    assert [s.replace("\n", " ") for s in sides] == ["next in the text", f"layer {rows - 1} (output)",
                                                     *[f"layer {n}" for n in range(rows - 2, 0, -1)],
                                                     "embeddings", "the text"]
    marked = layers.locator("#layers-grid .lens-cell.selected")
    assert marked.count() == 1 and marked.get_attribute("data-row") == str(rows - 1)
    assert marked.get_attribute("data-col") == str(columns - 1), "GPT-2's answer after the whole text"
    box, scroller = marked.bounding_box(), layers.locator("#layers-grid .lens-scroll").bounding_box()
    assert scroller["x"] - 1 <= box["x"] and box["x"] + box["width"] <= scroller["x"] + scroller["width"] + 1, \
        "the grid's scroller shows the marked cell"
    details = layers.locator("#layers-details")
    assert details.locator("tbody tr").count() == 5 and "(output)" in details.inner_text()
    assert no_sideways_scroll(layers)


HALF_HIDDEN = """() => {  // the columns that a sideways scroll left partly under the sticky row names
  const s = document.querySelector('#layers-grid .lens-scroll'), side = s.querySelector('th.lens-side');
  const edge = side.getBoundingClientRect().right;
  return [...s.querySelectorAll('tr')[2].querySelectorAll('td')].map((td) => td.getBoundingClientRect())
    .filter((c) => c.left < edge - 1 && c.right > edge + 1).map((c) => [c.left, c.right]);
}"""


CUT = """() => {  // the focused cell's edges where it is cut by the row names or the scroller's right edge, else null
  const c = document.activeElement.getBoundingClientRect(), s = document.querySelector('#layers-grid .lens-scroll');
  const edge = s.querySelector('th.lens-side').getBoundingClientRect().right, right = s.getBoundingClientRect().right;
  return c.left < edge - 1 || c.right > right + 1 ? [c.left, c.right] : null;
}"""


@pytest.mark.parametrize("large_text", [False, True], ids=["", "large-text"])
def test_a_sideways_scroll_or_an_arrow_key_comes_to_rest_on_a_column_clear_of_the_row_names(layers, large_text):
    """The grid scrolls sideways in its box under sticky row names: it stops at a column's edge (scroll-snap), where
    before a swipe could leave a column's sliver beside the names, its text cut; under Large text's wider columns too
    (a "proximity" snap let a swipe stop far from a column's edge). The arrow keys bring the focused cell fully into
    view: the snap put a cell reached with ArrowRight back half past the right edge."""
    if large_text:
        layers.locator("#large-text").click()
        wait_until(lambda: layers.evaluate("() => document.documentElement.classList.contains('large-text')"),
                   message="Large text on")
    layers.locator("#layers-text textarea").fill("The unicorns lived in a remote valley of the Andes, and the "
                                                 "scientists who found them were surprised")
    layers.locator("#layers-show").click()
    wait_until(lambda: layers.locator("#layers-grid .lens-input").count() >= 18, timeout=60, message="the long grid")
    scroller = layers.locator("#layers-grid .lens-scroll")
    assert scroller.evaluate("s => s.scrollWidth > s.clientWidth + 200"), "the long text's grid scrolls sideways"
    layers.wait_for_timeout(300)
    assert layers.evaluate(HALF_HIDDEN) == [], "as drawn, at the grid's end (it opened with a sliver, on a phone)"
    assert layers.locator("#layers-grid .lens-cell.selected").evaluate(
        "c => c.getBoundingClientRect().right <= c.closest('.lens-scroll').getBoundingClientRect().right + 1"), \
        "GPT-2's answer, the marked last cell, in view"
    for dx in (-37, -120, -75, 53, 20, -200, 33):  # amounts that end inside a column
        before = scroller.evaluate("s => s.scrollLeft")
        scroller.evaluate(f"s => s.scrollBy({{left: {dx}}})")
        wait_until(lambda before=before: scroller.evaluate("s => s.scrollLeft") != before, message="the scroll")
        layers.wait_for_timeout(300)  # the snap after the scroll
        assert layers.evaluate(HALF_HIDDEN) == [], f"after a scroll of {dx} px"
    layers.locator("#layers-grid .lens-cell.selected").focus()
    columns = layers.locator("#layers-grid .lens-input").count()
    for key in ["Home"] + ["ArrowRight"] * (columns - 1) + ["ArrowLeft"] * (columns - 1):
        layers.keyboard.press(key)
        layers.wait_for_timeout(100)  # the snap after the key's scroll
        assert layers.evaluate(CUT) is None, f"the cell focused by {key} ({layers.evaluate(FOCUSED_CELL)}) is cut"


def test_a_clicked_cell_shows_its_top_5_and_the_chart_follows_its_column(layers, app):
    cell = layers.locator("#layers-grid .lens-cell[data-row='1'][data-col='2']")
    cell.click()
    details = layers.locator("#layers-details")
    wait_until(lambda: "layer 1," in details.inner_text(), message="the clicked cell's details")
    assert details.locator("tbody tr").count() == 5
    lens = app.models.gpt2.current.logit_lens("The Eiffel Tower is in the city of")
    shown = [p.strip() for p in details.locator("tbody tr td.tok").all_inner_texts()]
    assert shown[0] == lens.cells[1][2].top[0][0].replace(" ", "\u2423").strip()
    assert "selected" in (cell.get_attribute("class") or "")
    assert in_view(layers, "#layers-details"), "the top 5 are in view after the click"
    summary = layers.locator("#layers-summary")
    after = lens.tokens[2].replace(" ", "\u2423")
    wait_until(lambda: f"after \u201c{after}\u201d:" in summary.inner_text(), message="the chart to follow column 2")
    chart = layers.locator("#layers-chart svg")
    assert chart.locator("circle").count() == len(lens.layers)
    chart.scroll_into_view_if_needed()
    assert in_view(layers, "#layers-chart svg") and no_sideways_scroll(layers)
    assert chart.bounding_box()["width"] <= layers.viewport_size["width"]


def test_watching_a_word_draws_its_rank_through_the_layers_at_the_clicked_place(layers, app):
    lens = app.models.gpt2.current.logit_lens("The Eiffel Tower is in the city of", target=" the")
    layers.locator("#layers-grid .lens-cell[data-row='0'][data-col='4']").click()  # after " Tower"
    summary = layers.locator("#layers-summary")
    after = lens.tokens[4].replace(" ", "\u2423")
    wait_until(lambda: f"after \u201c{after}\u201d:" in summary.inner_text(), message="the clicked place")
    target = layers.locator("#layers-target input")
    target.fill(" the")
    target.press("Enter")
    wait_until(lambda: "the word you chose" in summary.inner_text(), message="the watched word")
    assert f"after \u201c{after}\u201d:" in summary.inner_text(), "the same text: the clicked place is kept"
    ranks = [row[4].target_rank for row in lens.cells]
    titles = layers.locator("#layers-chart svg circle title").all_text_contents()
    assert len(titles) == len(ranks)
    assert all(title.endswith(f" is {ordinal(rank)}") for rank, title in zip(ranks, titles)), (titles, ranks)
    assert "\u2423the" in layers.locator("#layers-details").inner_text(), "the chosen cell names its rank too"
    assert layers.locator("#layers-grid .lens-cell.selected").get_attribute("data-col") == "4"


def test_a_word_of_several_tokens_is_refused_with_its_pieces(layers):
    target = layers.locator("#layers-target input")
    target.fill(" Parisian")
    layers.locator("#layers-watch").click()
    wait_until(lambda: "try its first token" in layers.locator(".toast-body").first.inner_text(),
               message="the error toast")
    # the toast alone says it: no red "Error" stamped over the tab's outputs, and the grid still drawn
    badges = layers.locator(".block .wrap .error:not(.toast-body)")
    assert badges.count() > 0, "Gradio marks the event's outputs (the test needs its badges to exist)"
    assert not any(badges.nth(i).is_visible() for i in range(badges.count()))
    assert layers.locator("#layers-grid .lens-cell").first.is_visible()


def test_let_gpt2_continue_adds_its_words_and_colours_when_it_committed(layers, app):
    box = layers.locator("#layers-text textarea")
    start = box.input_value()
    layers.locator("#layers-continue").click()
    wait_until(lambda: box.input_value() != start, timeout=30, message="the continuation")
    text = box.input_value()
    assert text.startswith(start) and len(app.models.gpt2.current.tokenizer.encode(text)) > 9
    commitment = layers.locator("#layers-commitment")
    wait_until(lambda: "".join(commitment.locator(".token .text").all_inner_texts()) == text, timeout=30,
               message="the continued text coloured")
    coloured = commitment.locator(".token.highlighted").count()
    assert coloured >= 5, "every word GPT-2 chose greedily is its top guess, so it has a colour"
    legend = commitment.locator("[data-testid='highlighted-text:category-legend']").inner_text()
    assert all(name in legend for name in ("embeddings", "early layers", "last layer only"))


def test_let_gpt2_continue_is_off_while_the_grid_is_full_and_says_so(layers, app):
    """A full grid is said on the button, which is off: presses at 64 tokens each raised a toast before."""
    encode = app.models.gpt2.current.tokenizer.encode
    box, more = layers.locator("#layers-text textarea"), layers.locator("#layers-continue")
    box.fill("The cat sat on the mat. " * 20)  # far beyond the grid
    wait_until(lambda: more.is_disabled(), message="Continue to be off")
    assert more.inner_text().strip() == f"Grid full ({MAX_LENS_TOKENS} tokens)"
    near = "The" + " cat" * (MAX_LENS_TOKENS - 5)
    assert len(encode(near)) == MAX_LENS_TOKENS - 4
    box.fill(near)  # room again: on, with its name back
    wait_until(lambda: more.is_enabled() and more.inner_text().strip() == "Let GPT-2 continue", message="Continue on")
    more.click()  # fills the grid's last places (4 tokens, not 10)
    wait_until(lambda: box.input_value() != near, timeout=30, message="the continuation")
    n = len(encode(box.input_value()))
    assert MAX_LENS_TOKENS - 4 < n <= MAX_LENS_TOKENS
    wait_until(lambda: more.is_disabled() == (n == MAX_LENS_TOKENS), message="Continue's state after it")
    wait_until(lambda: f"{n} tokens" in layers.locator("#layers-note").inner_text(), timeout=30,
               message="the grid of the continued text")
    assert layers.locator(".toast-body").count() == 0


def test_a_share_link_fills_the_text_and_the_watched_word(browser, app):  # noqa: F811
    query = urlencode({"tab": "layers", "text": "Once upon a time there", "target": " was"})
    page = browser.new_context(viewport=VIEWPORTS["1280x720"]).new_page()
    try:
        page.set_default_timeout(30_000)
        page.goto(f"{app.url}?{query}")
        wait_until(lambda: page.locator("#layers-text textarea").input_value() == "Once upon a time there",
                   message="the linked text")
        assert page.locator("#layers-target input").input_value() == " was"
    finally:
        page.context.close()


def test_a_link_whose_word_is_two_tokens_here_opens_on_the_grid_and_says_so_without_an_error(browser, app):  # noqa: F811
    """A link made on another model (" mat" is one token of GPT-2's, two of the mini model's): the tab opens, with no
    one having pressed anything, on the text's grid, and the word's refusal stands in the chart's summary; before, a
    red Error toast greeted the class and no grid was drawn."""
    query = urlencode({"tab": "layers", "text": "Once upon a time there", "target": " Parisian"})
    page = browser.new_context(viewport=VIEWPORTS["1280x720"]).new_page()
    try:
        page.set_default_timeout(30_000)
        page.goto(f"{app.url}?{query}")
        wait_until(lambda: page.locator("#layers-grid .lens-cell").count() > 5, message="the text's grid")
        summary = page.locator("#layers-summary")
        wait_until(lambda: "' Parisian' is 2 tokens (' Paris' + 'ian')" in summary.inner_text(), message="why")
        page.wait_for_timeout(1000)  # a toast would have come by now
        assert page.locator(".toast-body").count() == 0, page.locator(".toast-body").all_inner_texts()
        page.locator("#layers-watch").click()  # pressed: the refusal is the toast, as ever
        wait_until(lambda: page.locator(".toast-body").count() == 1, message="the toast of a pressed Watch")
    finally:
        page.context.close()


def test_each_new_grid_replaces_the_old_grids_resize_observer(browser, app):  # noqa: F811
    """Every grid drawn added an observer of its row names that was never let go: a class's hour of grids piled
    them up."""
    page = browser.new_context(viewport=VIEWPORTS["1280x720"]).new_page()
    page.add_init_script("""(() => {  // count the observers of a grid's row names that are still connected
      const Native = window.ResizeObserver;
      window.liveNameObservers = new Set();
      window.ResizeObserver = class extends Native {
        observe(target, options) {
          if (target.classList?.contains('lens-side')) window.liveNameObservers.add(this);
          return super.observe(target, options);
        }
        disconnect() { window.liveNameObservers.delete(this); return super.disconnect(); }
      };
    })();""")
    page.set_default_timeout(30_000)
    page.goto(app.url)
    page.get_by_role("tab", name="Layers").click()
    wait_until(lambda: page.locator("#layers-grid .lens-cell").count() > 5, timeout=30, message="the grid")
    box = page.locator("#layers-text textarea")
    for _ in range(2):  # two more grids
        before = box.input_value()
        page.locator("#layers-continue").click()
        wait_until(lambda before=before: box.input_value() != before, timeout=30, message="the continuation")
        wait_until(lambda: page.locator("#layers-grid .lens-cell").count() > 5, timeout=30, message="the grid")
    page.wait_for_timeout(500)
    assert page.evaluate("window.liveNameObservers.size") == 1
    page.context.close()


def test_layers_tab_passes_axe(layers):
    assert violations(layers) == []
    layers.locator("#layers-grid .lens-cell").nth(2).click()
    wait_until(lambda: layers.locator("#layers-details tbody tr").count() == 5, message="a cell's details")
    layers.locator("#layers-continue").click()
    wait_until(lambda: layers.locator("#layers-commitment .token.highlighted").count() >= 5, timeout=30,
               message="the coloured continuation")
    assert violations(layers) == []


FOCUSED_CELL = """() => { const c = document.activeElement;
  return c && c.matches('#layers-grid .lens-cell') ? [Number(c.dataset.row), Number(c.dataset.col)] : null; }"""


def test_the_grid_is_one_tab_stop_and_the_arrow_keys_move_between_its_cells(layers, app):
    """Tab lands on the marked cell (GPT-2's answer), the arrows move up and down the layers and along the tokens,
    Enter shows the focused cell's details, and one more Tab leaves the grid: 50 Tab presses crossed it before."""
    lens = app.models.gpt2.current.logit_lens("The Eiffel Tower is in the city of")
    top, last = len(lens.layers) - 1, len(lens.tokens) - 1
    layers.locator("#layers-continue").focus()  # the control before the grid
    layers.keyboard.press("Tab")
    assert layers.evaluate(FOCUSED_CELL) == [top, last], "Tab lands on GPT-2's answer, the marked cell"
    assert layers.locator("#layers-grid .lens-cell[tabindex='0']").count() == 1
    for key in ("ArrowDown", "ArrowDown", "ArrowLeft", "ArrowUp", "ArrowUp", "ArrowUp"):  # (Up past the top: stays)
        layers.keyboard.press(key)
    assert layers.evaluate(FOCUSED_CELL) == [top, last - 1]
    for key in ("ArrowDown", "ArrowDown", "Home", "ArrowRight", "ArrowRight"):
        layers.keyboard.press(key)
    assert layers.evaluate(FOCUSED_CELL) == [top - 2, 2]
    assert layers.evaluate("document.activeElement.matches(':focus-visible')")
    style = layers.evaluate("(() => { const s = getComputedStyle(document.activeElement); "
                            "return [s.outlineStyle, s.outlineWidth]; })()")
    assert style[0] != "none" and float(style[1].rstrip("px")) >= 2, "the focused cell shows it"
    cell = layers.locator(f"#layers-grid .lens-cell[data-row='{top - 2}'][data-col='2']")
    assert in_view(layers, f"#layers-grid .lens-cell[data-row='{top - 2}'][data-col='2']")
    layers.keyboard.press("Enter")
    details = layers.locator("#layers-details")
    after = lens.tokens[2].replace(" ", "\u2423")
    heading = f"{row_name(lens, top - 2)}, after {after} "
    wait_until(lambda: details.inner_text().startswith(heading), message="the focused cell's details")
    assert "selected" in (cell.get_attribute("class") or "")
    assert layers.locator("#layers-grid .lens-cell.selected").count() == 1
    layers.keyboard.press("Tab")
    assert layers.evaluate(FOCUSED_CELL) is None, "one Tab leaves the grid"
    assert layers.evaluate("!document.querySelector('#layers-grid .lens-scroll').contains(document.activeElement)")
    layers.keyboard.press("Shift+Tab")
    assert layers.evaluate(FOCUSED_CELL) == [top - 2, 2], "back in, on the cell left"

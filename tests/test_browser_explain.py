"""What a class sees of GPT-2's choices, in Debian's chromium: the coloured output in view after Generate at 1280x720
and on a phone, a token's details on click, the Next word tab (click a candidate, Back) and Spot the machine.

Uses test_browser.py's `browser` fixture (skipped with its reason where chromium is absent). With UPDATE_SCREENSHOTS=1
these tests also write the README's screenshots of these tabs.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_browser import ROOT, UPDATE_SCREENSHOTS, browser, photograph_if_failed, set_slider  # noqa: F401 (fixture)
from ui_helpers import wait_until

pytestmark = pytest.mark.browser
pytest_plugins = ["fixtures_ui"]

LAPTOP = {"width": 1280, "height": 720}
PHONE = {"width": 390, "height": 844}


def open_page(browser, url: str, viewport: dict):  # noqa: F811 (the fixture's value)
    context = browser.new_context(viewport=viewport)
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.goto(url)
    page.locator("#prompt textarea").wait_for()
    return page


def in_view(page, selector: str) -> bool:
    box = page.locator(selector).first.bounding_box()
    size = page.viewport_size
    return box is not None and -1 <= box["y"] and box["y"] + min(box["height"], 40) <= size["height"]  # subpixels


@pytest.fixture
def laptop(browser, app, request):  # noqa: F811
    page = open_page(browser, app.url, LAPTOP)
    yield page
    photograph_if_failed(page, request)
    page.context.close()


def generate(page, prompt: str = "The history of the printing press", tokens: int = 24) -> None:
    box = page.locator("#prompt textarea")
    box.fill(prompt)
    wait_until(lambda: box.input_value() == prompt, message="the prompt to be typed")
    set_slider(page, "max-new-tokens", tokens)
    page.evaluate("window.scrollTo(0, 0)")  # typing into the settings scrolled to them; a visitor starts at the top
    page.locator("#generate-button").click()


# A checkpoint in a deep local folder: the model line takes two lines (a style, so the panel's redraws keep it)
DEEP_FOLDER = "#model-info code::before { content: '/home/a-student/Downloads/checkpoints/gpt2-fine-tuned-on-macbeth/'; }"
MODEL_LINES = """() => {  // the model line's lines, once the page's load event has written it whole
  const line = document.querySelector('#model-info code')?.closest('p');
  if (!line || !line.textContent.includes('memory')) return 0;
  return line.getBoundingClientRect().height / parseFloat(getComputedStyle(line).lineHeight);
}"""


@pytest.mark.parametrize("model_line", ["as served", "wrapped"])
def test_output_is_in_view_after_generate_at_1280x720_without_scrolling(laptop, model_line):
    if model_line == "wrapped":
        laptop.add_style_tag(content=DEEP_FOLDER)
        wait_until(lambda: laptop.evaluate(MODEL_LINES) >= 1.9, message="the model line to take two lines or more")
    generate(laptop)
    wait_until(lambda: laptop.locator("#sample-view-1 .token.highlighted").count() > 3, message="coloured tokens")
    assert laptop.evaluate("window.scrollY") == 0, "the page should not need to move"
    assert in_view(laptop, "#sample-view-1 .token.highlighted"), "the first generated token is below the fold"
    assert in_view(laptop, "#run-state")
    wait_until(lambda: "Done" in laptop.locator("#run-state").inner_text(), message="the run state to say done")
    legend = laptop.locator("#sample-view-1 [data-testid='highlighted-text:category-legend']").inner_text()
    assert all(name in legend for name in ("top 10", "top 100", "top 1000", "rarer"))
    assert "Model" in laptop.locator("#stats").inner_text()
    if UPDATE_SCREENSHOTS and model_line == "as served":
        laptop.screenshot(path=str(ROOT / "assets" / "screenshot-generate.png"))


@pytest.mark.parametrize("model_line", ["as served", "wrapped"])
def test_unicorns_first_generated_words_come_into_view_at_1280x720(laptop, model_line):
    """OpenAI's prompt takes three lines, echoed in grey before the text: where that puts the text below the fold
    (as a wrapped model line or the offline banner does), the page brings it up under the sticky Generate and Stop,
    which stay in view."""
    if model_line == "wrapped":
        laptop.add_style_tag(content=DEEP_FOLDER)
        wait_until(lambda: laptop.evaluate(MODEL_LINES) >= 1.9, message="the model line to take two lines or more")
    laptop.get_by_role("button", name="Unicorns (OpenAI's 2019 prompt)").click()
    wait_until(lambda: "unicorns" in laptop.locator("#prompt textarea").input_value(), message="the example's prompt")
    laptop.evaluate("window.scrollTo(0, 0)")
    laptop.locator("#generate-button").click()
    wait_until(lambda: laptop.locator("#sample-view-1 .token.highlighted").count() > 3, message="coloured tokens")
    wait_until(lambda: in_view(laptop, "#sample-view-1 .token.highlighted"), timeout=5,
               message="the first generated token to come into view")
    assert in_view(laptop, "#generate-button") and in_view(laptop, "#run-state")


def under_the_buttons(page, selector: str) -> bool:
    """`selector`'s first element is in view and not hidden under the sticky Generate and Stop."""
    actions, box = page.locator("#generate-actions").bounding_box(), page.locator(selector).first.bounding_box()
    return in_view(page, selector) and box["y"] >= actions["y"] + actions["height"] - 1


@pytest.mark.parametrize("where", ["phone, from the examples", "laptop, from the page's end"])
def test_the_text_comes_into_view_when_generate_is_pressed_from_further_down(browser, app, where):  # noqa: F811
    """The sticky Generate can be pressed with the output above the window (a phone's examples come after it, a
    laptop's settings go on below): the page brings the text back instead of writing it out of sight."""
    page = open_page(browser, app.url, PHONE if where.startswith("phone") else LAPTOP)
    try:
        if where.startswith("phone"):
            page.get_by_role("button", name="Unicorns (OpenAI's 2019 prompt)").click()  # scrolls down to it
            wait_until(lambda: "unicorns" in page.locator("#prompt textarea").input_value(), message="the prompt")
        else:
            page.locator("#prompt textarea").fill("Hello world")
        page.evaluate("window.scrollTo(0, document.documentElement.scrollHeight)")
        assert not in_view(page, "#generate-output"), "the test needs the output out of view at the click"
        page.locator("#generate-button").click()
        wait_until(lambda: page.locator("#sample-view-1 .token.highlighted").count() > 3, message="coloured tokens")
        wait_until(lambda: under_the_buttons(page, "#sample-view-1 .token.highlighted"), timeout=5,
                   message="the first generated token to come into view under the buttons")
        assert under_the_buttons(page, "#run-state")
    finally:
        page.context.close()


@pytest.mark.smoke
def test_output_is_in_view_on_a_phone(browser, app):  # noqa: F811
    page = open_page(browser, app.url, PHONE)
    try:
        generate(page)
        wait_until(lambda: page.locator("#sample-view-1 .token.highlighted").count() > 3, message="coloured tokens")
        assert in_view(page, "#sample-view-1 .token.highlighted"), "the output should come into view by itself"
        assert in_view(page, "#run-state"), "and the run state above it"
        actions, state = page.locator("#generate-actions").bounding_box(), page.locator("#run-state").bounding_box()
        assert state["y"] >= actions["y"] + actions["height"] - 1, "the run state is hidden under Generate and Stop"
    finally:
        page.context.close()


@pytest.mark.smoke
def test_clicking_a_token_shows_its_probability_rank_and_alternatives(laptop, app):
    generate(laptop, tokens=12)
    wait_until(lambda: "Done" in laptop.locator("#run-state").inner_text(), message="the generation to end")
    laptop.locator("#sample-view-1 .token.highlighted").nth(2).click()
    details = laptop.locator("#token-details")
    wait_until(lambda: "rank" in details.inner_text(), message="the token's details")
    text = details.inner_text()
    assert "probability" in text and "after your settings" in text
    assert details.locator("tbody tr").count() == 8  # the likeliest tokens at that place
    assert "Your settings" in text


def test_downloads_hold_the_text_and_every_tokens_probability(laptop, app):
    import json

    generate(laptop, prompt="Downloads keep", tokens=10)
    wait_until(lambda: "Done" in laptop.locator("#run-state").inner_text(), message="the generation to end")
    shown = "".join(laptop.locator("#sample-view-1 .token.highlighted .text").all_inner_texts())
    with laptop.expect_download() as download:
        laptop.locator("#download-json").click()
    record = json.loads(Path(download.value.path()).read_text(encoding="utf-8"))
    assert record["prompt"] == "Downloads keep" and record["model"] == app.models.gpt2.current.name
    assert record["settings"]["max_new_tokens"] == 10
    (sample,) = record["samples"]
    assert sample["text"] == "".join(t["text"] for t in sample["tokens"])
    # the page draws a line break as its own element, outside the tokens' texts (the mini model writes them)
    assert "".join(sample["text"].split()) == "".join(shown.split())
    assert isinstance(sample["seed"], int) and all(0 < t["prob"] <= 1 and t["rank"] >= 1 for t in sample["tokens"])
    assert all(len(t["alternatives"]) == 8 for t in sample["tokens"])
    with laptop.expect_download() as download:
        laptop.locator("#download-txt").click()
    assert Path(download.value.path()).read_text(encoding="utf-8") == "Downloads keep" + sample["text"]


@pytest.mark.smoke
def test_next_word_click_a_candidate_appends_it_and_back_undoes_it(laptop):
    laptop.get_by_role("tab", name="Next word").click()
    prompt = laptop.locator("#explore-prompt textarea")
    start = prompt.input_value()
    bars = laptop.locator("#explore-candidates .confidence-set")
    wait_until(lambda: bars.count() >= 5, message="the candidates' bars")
    token = bars.nth(1).inner_text().split("\n")[0]  # the bar's word (then its percentage)
    bars.nth(1).click()
    wait_until(lambda: prompt.input_value() != start, message="the candidate to be appended")
    added = prompt.input_value()[len(start):]
    assert prompt.input_value().startswith(start) and added.strip()
    assert added.strip() == token.strip()
    wait_until(lambda: laptop.locator("#explore-built .token.highlighted").count() == 1,
               message="the added token coloured")
    laptop.locator("#explore-back").click()
    wait_until(lambda: prompt.input_value() == start, message="Back to undo it")
    laptop.locator("#explore-sample").click()
    wait_until(lambda: "seed" in laptop.locator("#explore-drawn").inner_text(), message="the drawn token and its seed")
    assert prompt.input_value() != start
    if UPDATE_SCREENSHOTS:
        laptop.screenshot(path=str(ROOT / "assets" / "screenshot-next-word.png"), full_page=True)


def test_next_word_slider_redraws_the_chart(laptop):
    laptop.get_by_role("tab", name="Next word").click()
    bars = laptop.locator("#explore-candidates .confidence-set")
    wait_until(lambda: bars.count() >= 5, message="the candidates' bars")
    set_slider(laptop, "explore-top-k", 2)
    wait_until(lambda: "Cut by your settings" in laptop.locator("#explore-cut").inner_text(),
               message="the cut tokens to be named")


# Pairs of tokens where the second starts a new line inside a word: it has no space of its own, and no line break
# comes before it. (Gradio's spaces between the tokens' elements let the browser break there.)
BROKEN_WORDS = """(selector) => {
  const out = [];
  let previous = null, newLine = false;
  for (const element of document.querySelectorAll(selector + ' .text, ' + selector + ' .line-break')) {
    if (element.classList.contains('line-break')) { newLine = true; continue; }
    const rects = element.getClientRects();
    if (!rects.length) continue;
    if (previous && !newLine && rects[0].top > previous.bottom - 2 && !/^\\s/.test(element.textContent)
        && !/\\s$/.test(previous.text)) out.push(previous.text + '|' + element.textContent);
    const last = rects[rects.length - 1];
    previous = {bottom: last.bottom, text: element.textContent};
    newLine = false;
  }
  return out;
}"""
WORDS_IN_PIECES = ("Montmorency's extraordinarily incomprehensible paraphernalia bewildered the antidisestablishmentarian "
                   "ophthalmologists, who photosynthesized unrecognizably. ") * 3


def test_coloured_text_breaks_lines_between_words_not_inside_them(browser, app):  # noqa: F811
    page = open_page(browser, app.url, PHONE)
    try:
        page.get_by_role("tab", name="Spot the machine").click()
        page.locator("#score-text textarea").fill(WORDS_IN_PIECES)
        page.locator("#score-button").click()
        wait_until(lambda: page.locator("#score-output .token").count() > 60, message="the coloured tokens")
        tokens = page.locator("#score-output .token .text").all_inner_texts()
        assert sum(not t.startswith(" ") for t in tokens) > 30, "the text needs words in several tokens"
        lines = page.evaluate("(s) => new Set([...document.querySelectorAll(s)].map(e => e.getClientRects()[0]?.top)).size",
                              "#score-output .token .text")
        assert lines > 8, "the text needs to wrap at 390 px"
        wait_until(lambda: page.evaluate(BROKEN_WORDS, "#score-output") == [], timeout=3,
                   message=f"no word broken across lines: {page.evaluate(BROKEN_WORDS, '#score-output')}")
    finally:
        page.context.close()


@pytest.mark.smoke
def test_spot_the_machine_colours_a_pasted_text_with_a_legend(laptop):
    laptop.get_by_role("tab", name="Spot the machine").click()
    text = "It was a bright cold day in April, and the clocks were striking thirteen."
    box = laptop.locator("#score-text textarea")
    box.fill(text)
    wait_until(lambda: box.input_value() == text, message="the text to be pasted")
    laptop.locator("#score-button").click()
    output = laptop.locator("#score-output")
    wait_until(lambda: output.locator(".token.highlighted").count() > 5, message="the coloured tokens")
    assert "".join(output.locator(".token .text").all_inner_texts()) == text
    legend = output.locator("[data-testid='highlighted-text:category-legend']").inner_text()
    assert all(name in legend for name in ("top 10", "top 100", "top 1000", "rarer"))
    assert "tokens in all" in laptop.locator("#score-counts").inner_text()
    output.locator(".token.highlighted").nth(3).click()
    wait_until(lambda: "rank" in laptop.locator("#score-details").inner_text(), message="the token's details")
    laptop.locator("#score-fill-human").click()
    wait_until(lambda: "Human-written" in laptop.locator("#score-source").inner_text(), message="a human paragraph")
    if UPDATE_SCREENSHOTS:
        wait_until(lambda: "Jerome" in laptop.locator("#score-source").inner_text(), message="the source")
        laptop.screenshot(path=str(ROOT / "assets" / "screenshot-spot-the-machine.png"), full_page=True)


def test_next_word_suggest_offers_three_continuations_and_one_click_adds_it(laptop):
    laptop.get_by_role("tab", name="Next word").click()
    prompt = laptop.locator("#explore-prompt textarea")
    start = prompt.input_value()
    laptop.locator("#explore-suggest").click()
    first = laptop.locator("#explore-suggestion-1")
    first.wait_for(state="visible")
    wait_until(lambda: first.inner_text().strip("\u2026 "), message="a suggestion's text")
    assert laptop.locator("[id^=explore-suggestion-]:visible").count() >= 2
    first.click()
    wait_until(lambda: prompt.input_value() != start, message="the suggestion to be added")
    assert prompt.input_value().startswith(start)
    wait_until(lambda: laptop.locator("#explore-built .token.highlighted").count() >= 1,
               message="the added tokens coloured")

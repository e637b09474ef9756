"""Saving a view, in Debian's chromium, at 1280x720 and on a phone (390x844), on the bundled mini model (trained, so
the text is real words): Save as PNG on Generate's coloured text, a chart and an attention map gives a real PNG with
the view in it, by mouse and by keyboard; the coloured text's .html opens by itself, with nothing fetched.

The picture's content is checked by its colours: the token colours of coloured text, the blue of an attention map, the
orange of a chart's bars, and the dark ink of its title. Uses test_browser.py's `browser` fixture.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from test_browser import browser, photograph_if_failed, set_slider  # noqa: F401 (fixture)
from test_browser_explain import LAPTOP, PHONE
from ui_helpers import launched_app, wait_until

from demo.tokens import COLORS
from gpt2_core.checkpoint import BUNDLED

pytestmark = pytest.mark.browser
pytest_plugins = ["fixtures_ui"]

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def mini_app(tiny_bert):
    with launched_app(BUNDLED["mini-gpt2"], tiny_bert) as running:
        yield running


@pytest.fixture(params=[LAPTOP, PHONE], ids=["1280x720", "390x844"])
def page(browser, mini_app, request):  # noqa: F811
    context = browser.new_context(viewport=request.param)
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.goto(mini_app.url)
    page.locator("#prompt textarea").wait_for()
    yield page
    photograph_if_failed(page, request)
    context.close()


def saved_png(page, button: str, *, keyboard: bool = False) -> tuple[str, Image.Image]:
    """Press a Save as PNG button (by mouse, or focused and Enter) and read the picture the browser downloads."""
    with page.expect_download() as download:
        if keyboard:
            page.locator(button).focus()
            page.keyboard.press("Enter")
        else:
            page.locator(button).click()
    data = Path(download.value.path()).read_bytes()
    assert data[:8] == PNG_MAGIC, "a PNG file"
    assert len(data) > 1024, f"a PNG of {len(data)} bytes is too small to hold a view"
    image = Image.open(download.value.path())
    image.load()
    assert image.format == "PNG" and image.width > 100 and image.height > 100, image.size
    return download.value.suggested_filename, image.convert("RGB")


def saved_html(page, button: str, folder: Path):
    """Press a Download .html button once it is on, and open the page the browser downloads as a visitor would (a
    file named .html, in a tab of its own): (its suggested name, that tab)."""
    wait_until(lambda: page.locator(button).is_enabled(), timeout=30, message="the .html")
    with page.expect_download() as download:
        page.locator(button).click()
    path = folder / download.value.suggested_filename
    download.value.save_as(path)
    saved = page.context.new_page()
    saved.goto(path.as_uri())
    return download.value.suggested_filename, saved


def share(image: Image.Image, test) -> float:
    """The share of the picture's pixels for which test((r, g, b)) holds."""
    colours = image.getcolors(image.width * image.height)
    return sum(n for n, rgb in colours if test(rgb)) / (image.width * image.height)


def near(rgb, target, tolerance: int = 12) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(rgb, target))


def on_white(hex_colour: str, alpha: float = 0.5) -> tuple[int, ...]:
    """A token's colour as the page draws it: the bucket's colour at half opacity over white."""
    rgb = [int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)]
    return tuple(round(alpha * c + (1 - alpha) * 255) for c in rgb)


def dark(rgb) -> bool:
    return max(rgb) < 80  # the title's and the text's ink


@pytest.mark.smoke("1280x720")
def test_generates_coloured_text_saves_as_png_and_as_a_web_page_that_opens_by_itself(page, tmp_path):
    page.locator("#prompt textarea").fill("ROMEO:")
    set_slider(page, "max-new-tokens", 40)
    page.locator("#generate-button").click()
    wait_until(lambda: "Done" in page.locator("#run-state").inner_text(), timeout=60, message="the text")
    save = page.get_by_role("button", name="Save as PNG")
    assert save.count() == 1 and save.get_attribute("id") == "generate-output-save-png"
    name, image = saved_png(page, "#generate-output-save-png")
    assert name == "gpt2-sample.png"
    assert image.width >= 2 * min(page.locator("#generate-output").bounding_box()["width"], 360) - 2, "drawn at 2x"
    assert share(image, lambda rgb: near(rgb, on_white(COLORS["top 10"]))) > 0.02, "the green of the top-10 tokens"
    assert share(image, dark) > 0.005, "the title and the words"

    with page.expect_download() as download:
        page.locator("#generate-save-html").click()
    assert download.value.suggested_filename == "gpt2-sample.html"
    download.value.save_as(tmp_path / "gpt2-sample.html")  # opened as a visitor would: a file named .html
    shown = "".join(page.locator("#sample-view-1 .token.highlighted .text").all_inner_texts())
    saved = page.context.new_page()
    fetched = []
    saved.on("request", lambda r: fetched.append(r.url) if not r.url.startswith("file:") else None)
    saved.goto((tmp_path / "gpt2-sample.html").as_uri())
    tokens = saved.locator("span.t")
    # every token, as the page showed it (the page draws a line break as an element of its own)
    assert "".join("".join(tokens.all_text_contents()).split()) == "".join(shown.split())
    assert all(title.startswith("probability ") and ", rank " in title
               for title in tokens.evaluate_all("spans => spans.map(s => s.title)"))
    assert saved.locator(".prompt").inner_text() == "ROMEO:"
    legend = saved.locator(".legend").inner_text()
    assert all(bucket in legend for bucket in COLORS)
    assert "temperature 0.8" in saved.locator(".caption").inner_text()
    assert fetched == [], f"the saved page fetched {fetched}"
    saved.close()


def test_each_charts_save_button_sits_under_that_chart(page):
    """Side by side on a laptop, one under the other on a phone: each button right under its own chart (on a phone
    both once sat together under the second chart, the first one's far from it)."""
    page.get_by_role("tab", name="Next word").click()
    wait_until(lambda: page.locator("#explore-candidates .confidence-set").count() >= 5, message="the charts")
    boxes = {view: (page.locator(f"#{view}").bounding_box(), page.locator(f"#{view}-save-png").bounding_box())
             for view in ("explore-candidates", "explore-model")}
    for view, (chart, button) in boxes.items():
        gap = button["y"] - (chart["y"] + chart["height"])
        assert 0 <= gap < 40, f"{view}'s button is {gap:.0f}px under it"
        assert chart["x"] <= button["x"] and button["x"] + button["width"] <= chart["x"] + chart["width"], view
    (first, first_button), (second, _) = boxes.values()
    if second["y"] > first["y"] + first["height"]:  # stacked: the first button comes before the second chart
        assert first_button["y"] + first_button["height"] <= second["y"]


def test_saves_a_chart_by_keyboard_and_an_attention_map(page):
    page.get_by_role("tab", name="Next word").click()
    wait_until(lambda: page.locator("#explore-candidates .confidence-set").count() >= 5, message="the charts")
    name, chart = saved_png(page, "#explore-candidates-save-png", keyboard=True)
    assert name == "gpt2-next-word-after-settings.png"
    assert share(chart, lambda rgb: rgb[0] > 230 and 120 < rgb[1] < 215 and rgb[2] < 170) > 0.002, "orange bars"
    assert share(chart, dark) > 0.005

    page.get_by_role("tab", name="Inside").click()
    wait_until(lambda: page.locator("#inside-gpt2-map svg rect").count() > 10, timeout=60, message="the maps")
    name, attention = saved_png(page, "#inside-gpt2-map-save-png")
    assert name == "gpt2-attention.png"
    assert share(attention, lambda rgb: rgb[2] > rgb[0] + 20) > 0.03, "the blues of attention"
    assert share(attention, lambda rgb: near(rgb, (229, 231, 235), 3)) > 0.02, "the grey of what GPT-2 cannot see"


def test_spot_the_machines_text_and_histogram_and_bert_vs_gpt2s_charts_save_as_pngs(page):
    page.get_by_role("tab", name="Spot the machine").click()
    page.locator("#score-fill-human").click()
    wait_until(lambda: page.locator("#score-output .token.highlighted").count() > 20, timeout=30,
               message="the human paragraph coloured")
    wait_until(lambda: page.locator("#score-histogram .vega-embed").count() == 1, timeout=30, message="the histogram")
    name, text = saved_png(page, "#score-output-save-png")
    assert name == "gpt2-spot-the-machine.png"
    assert share(text, lambda rgb: near(rgb, on_white(COLORS["top 10"]), 12)) > 0.01, "the green of top-10 tokens"
    name, histogram = saved_png(page, "#score-histogram-save-png")
    assert name == "gpt2-spot-the-machine-histogram.png"
    assert share(histogram, lambda rgb: rgb[0] > 150 and rgb[1] < 120 and rgb[2] < 80) > 0.01, "the orange bars"

    page.get_by_role("tab", name="BERT vs GPT-2").click()
    page.locator("#compare-button").click()
    for chart in ("bert-chart", "gpt2-next-chart"):
        wait_until(lambda chart=chart: page.locator(f"#{chart} .confidence-set").count() >= 3, timeout=60,
                   message=f"the {chart}'s bars")
        name, image = saved_png(page, f"#{chart}-save-png")
        assert name == f"gpt2-vs-bert-{chart}.png"
        # bars as long as their probabilities, which are small here (a random BERT, a mini GPT-2 on a blank)
        assert share(image, lambda rgb: rgb[0] > 230 and 120 < rgb[1] < 215 and rgb[2] < 170) > 0.0005, "its bars"
        assert share(image, dark) > 0.005, "its title and words"


def test_a_view_with_nothing_yet_says_so_instead_of_saving(page):
    page.get_by_role("tab", name="Spot the machine").click()
    downloads = []
    page.on("download", lambda d: downloads.append(d))
    page.locator("#score-output-save-png").click()
    note = page.locator(".save-view-note")
    wait_until(lambda: note.count() and "Nothing to save yet" in note.inner_text(), message="the note")
    assert note.get_attribute("role") == "status"
    assert not page.locator("#score-save-html").is_enabled()
    page.locator("#score-fill-human").click()
    wait_until(lambda: page.locator("#score-save-html").is_enabled(), timeout=30, message="the scored text's .html")
    assert downloads == [], "nothing was saved while there was nothing to save"


def test_the_layers_chart_saves_as_a_png_of_its_orange_line(page):
    page.get_by_role("tab", name="Layers").click()
    page.locator("#layers-show").click()
    wait_until(lambda: page.locator("#layers-chart svg circle").count() > 2, timeout=60, message="the rank chart")
    name, chart = saved_png(page, "#layers-chart-save-png")
    assert name == "gpt2-layers-one-word.png"
    assert share(chart, lambda rgb: rgb[0] > 150 and rgb[1] < 120 and rgb[2] < 80) > 0.002, "the chart's orange line"
    assert share(chart, dark) > 0.005, "the title and the axis labels"


def assert_whole_grid(name: str, grid: Image.Image, full: int, *, blue: float, browser: str = "chromium") -> None:
    """The layers grid's picture holds every column of a grid `full` CSS px wide, with its blue cells (`blue`: their
    least share of the picture)."""
    assert name == "gpt2-layers-grid.png"
    # Painted at 2 device pixels per CSS pixel (save_view.js's SCALE) with 20 px margins: every column is in it
    assert grid.width >= 2 * full, f"{browser}: a picture {grid.width} px wide for a grid of {full} CSS px"
    assert share(grid, lambda rgb: rgb[2] > 150 and rgb[0] < 120) > blue, f"{browser}: the grid's blue cells"


def test_the_layers_grid_saves_whole_with_every_column_even_where_it_scrolls_sideways(page):
    """The grid scrolls sideways in its box (on a phone, and for a long text on a laptop); the picture holds every
    column at full size and the row labels in their own column, and the page is put back as it was."""
    page.get_by_role("tab", name="Layers").click()
    text = "The unicorns lived in a remote valley of the Andes, and the scientists who found them were surprised"
    page.locator("#layers-text textarea").fill(text)
    page.locator("#layers-show").click()
    scroller = page.locator("#layers-grid .lens-scroll")
    wait_until(lambda: page.locator("#layers-grid .lens-input").count() >= 18, timeout=60,
               message="the grid of the long text")
    page.wait_for_timeout(500)  # the grid scrolled to its chosen cell, as the page script does
    shape = "s => ({full: s.scrollWidth, shown: s.clientWidth, left: s.scrollLeft, style: s.style.cssText})"
    before = scroller.evaluate(shape)
    assert before["full"] > before["shown"] + 50, f"the long text's grid scrolls sideways here: {before}"
    name, grid = saved_png(page, "#layers-grid-save-png")
    assert_whole_grid(name, grid, before["full"], blue=0.02)
    assert share(grid, dark) > 0.005, "the title, the labels and the tokens"
    pixels = grid.load()
    ruled = [y for y in range(grid.height) if sum(dark(pixels[x, y]) for x in range(0, grid.width, 4)) > grid.width / 8]
    assert not ruled, f"no dark line across the picture (rows' borders that the page does not draw): rows {ruled[:5]}"
    assert scroller.evaluate(shape) == before, "the page's grid is put back as it was, scrolled where it was"
    assert page.locator("#layers-grid .lens-side").first.evaluate("e => getComputedStyle(e).position") == "sticky"


def test_the_layers_coloured_text_saves_as_a_web_page_with_each_words_layer(page, tmp_path):
    # Nothing read yet, nothing to download: the button starts disabled. Asked of the page's configuration, not of
    # the button once the tab is open: opening the tab reads its text at once, and a fast machine enabled the button
    # before a check after the click could run (the button is drawn only when its tab opens).
    start = page.evaluate("() => window.gradio_config.components.find(c => c.props.elem_id === 'layers-save-html')")
    assert start["type"] == "downloadbutton" and start["props"]["interactive"] is False, start
    page.get_by_role("tab", name="Layers").click()
    page.locator("#layers-show").click()
    page.locator("#layers-continue").click()  # words GPT-2 chose itself: coloured by when it committed
    wait_until(lambda: page.locator("#layers-commitment .token.highlighted").count() > 3, timeout=60,
               message="the committed words")
    name, saved = saved_html(page, "#layers-save-html", tmp_path)
    assert name == "gpt2-layers-commitment.html"

    def letters(texts: list[str]) -> str:  # (the page shows a line break as an element of its own, without text)
        return "".join("".join(texts).split())

    assert letters(saved.locator("span.t").all_inner_texts()) == letters(
        page.locator("#layers-commitment .token .text").all_inner_texts()), "the same text as the page"
    tips = saved.locator("span.t[class*='layer'], span.t.embeddings").evaluate_all("s => s.map(e => e.title)")
    assert tips and all(t.startswith("GPT-2's top guess from ") for t in tips), tips
    assert "mini-gpt2" in saved.locator(".caption").inner_text()
    saved.close()


def test_next_words_text_so_far_saves_as_png_and_as_a_web_page(page, tmp_path):
    page.get_by_role("tab", name="Next word").click()
    assert not page.locator("#explore-save-html").is_enabled(), "nothing added yet: nothing to download"
    drawn = page.locator("#explore-drawn")
    for _ in range(2):  # each draw says so, with its own random seed (a line break shows as no coloured word)
        before = drawn.inner_text()
        page.locator("#explore-sample").click()
        wait_until(lambda before=before: drawn.inner_text() not in ("", before), timeout=30, message="a sampled token")
    name, image = saved_png(page, "#explore-built-save-png")
    assert name == "gpt2-next-word-text.png"
    assert share(image, dark) > 0.005, "the title and the words"
    name, saved = saved_html(page, "#explore-save-html", tmp_path)
    assert name == "gpt2-next-word-text.html"
    titles = saved.locator("span.t").evaluate_all("spans => spans.map(s => s.title)")
    assert 1 <= len(titles) <= 2 and all(t.startswith("probability ") and ", rank " in t for t in titles), titles
    assert saved.locator(".prompt").inner_text() == page.locator("#explore-prompt textarea").input_value()[
        :len(saved.locator(".prompt").inner_text())], "the typed text, dimmed, before the sampled tokens"
    assert "mini-gpt2" in saved.locator(".caption").inner_text()
    saved.close()

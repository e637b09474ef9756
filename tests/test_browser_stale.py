"""What the Inside and Layers tabs show after a refused input, in Debian's chromium: a text refused (empty, or 20,000
characters pasted) takes the earlier text's pictures off the page and says why in their place, and a Layer or Head
typed beyond the model's range is refused once, by name and with its range, the map and its slider left as drawn and
no traceback in the server's log.

Uses test_browser.py's `browser` fixture (skipped with its reason where chromium is absent) and the shared tiny app.
"""

from __future__ import annotations

import pytest
from test_browser import browser, page  # noqa: F401 (fixtures)
from ui_helpers import as_toast, wait_until

pytestmark = pytest.mark.browser
pytest_plugins = ["fixtures_ui"]

PASTED = ("The animal didn't cross the street because it was too tired. " * 400)[:20_000]  # the longest text taken
REFUSED = {"empty": "", "20,000 characters": PASTED}


def toasts(page) -> list[str]:  # noqa: F811 (the fixture's value)
    return page.locator(".toast-body").all_inner_texts()


@pytest.fixture
def inside(page):  # noqa: F811
    """The Inside tab with the default sentence's maps drawn."""
    page.get_by_role("tab", name="Inside").click()
    wait_until(lambda: page.locator("#inside-gpt2-map svg rect").count() > 10, timeout=30, message="the maps")
    wait_until(lambda: "looks most at" in page.locator("#inside-links").inner_text(), message="the links")
    return page


@pytest.fixture
def layers(page):  # noqa: F811
    """The Layers tab with the default text's grid drawn."""
    page.get_by_role("tab", name="Layers").click()
    wait_until(lambda: page.locator("#layers-grid .lens-cell").count() > 5, timeout=30, message="the grid")
    wait_until(lambda: page.locator("#layers-chart svg[role=img]").count() == 1, message="the chart")
    return page


@pytest.mark.parametrize("text", REFUSED.values(), ids=REFUSED.keys())
def test_a_refused_sentence_takes_the_earlier_maps_off_inside(inside, text):
    inside.locator("#inside-text textarea").fill(text)
    inside.locator("#inside-show").click()
    message = "`text` has to be 1 to 64 tokens long to show its attention, but has "
    wait_until(lambda: any(as_toast(message) in t for t in toasts(inside)), message="the toast")
    links = inside.locator("#inside-links")
    wait_until(lambda: as_toast(message) in links.inner_text(), message="the message in the maps' place")
    assert links.locator("code").first.inner_text() == "text"  # its name drawn as code, as in the toast
    assert "looks most at" not in links.inner_text()
    for key in ("gpt2", "bert"):
        assert inside.locator(f"#inside-{key}-map svg.attention-map").count() == 0, f"{key}'s earlier map"
        assert inside.locator(f"#inside-{key}-heads img").count() == 0, f"{key}'s heads of the earlier sentence"
    assert inside.locator("#inside-follow input[type=radio]").count() == 0, "the earlier sentence's words"
    inside.locator("#inside-text textarea").fill("The dog barked at the cat.")  # and a good sentence is drawn again
    inside.locator("#inside-show").click()
    wait_until(lambda: "looks most at" in links.inner_text(), timeout=30, message="the new sentence's links")
    assert inside.locator("#inside-gpt2-map svg rect").count() > 10


@pytest.mark.parametrize("text", REFUSED.values(), ids=REFUSED.keys())
def test_a_refused_text_takes_the_earlier_grid_off_layers(layers, text):
    layers.locator("#layers-text textarea").fill(text)
    layers.locator("#layers-show").click()
    message = "`text` has to be 1 to 64 tokens long to read it through the layers, but has "
    wait_until(lambda: any(as_toast(message) in t for t in toasts(layers)), message="the toast")
    note = layers.locator("#layers-note")
    wait_until(lambda: as_toast(message) in note.inner_text(), message="the message in the grid's place")
    assert note.locator("code").first.inner_text() == "text"  # its name drawn as code, as in the toast
    assert "layers \u00d7" not in note.inner_text(), "the earlier text's size"
    assert layers.locator("#layers-grid .lens-cell").count() == 0, "the earlier text's grid"
    assert layers.locator("#layers-details tbody tr").count() == 0, "the earlier text's cell"
    assert layers.locator("#layers-chart svg[role=img]").count() == 0, "the earlier text's chart"
    assert layers.locator("#layers-summary").inner_text().strip() == ""
    assert layers.locator("#layers-commitment .token").count() == 0, "the earlier text, coloured"
    assert not layers.locator("#layers-save-html").is_enabled(), "a download of the earlier text"
    layers.locator("#layers-grid").click()  # a click where the grid was picks nothing
    assert layers.locator("#layers-details tbody tr").count() == 0


def test_a_refused_word_to_watch_keeps_the_grid_of_the_same_text(layers):
    target = layers.locator("#layers-target input")
    target.fill(" Parisian")
    layers.locator("#layers-watch").click()
    wait_until(lambda: any("try its first token" in t for t in toasts(layers)), message="the toast")
    layers.wait_for_timeout(300)  # (a grid taken off would be gone by now)
    assert layers.locator("#layers-grid .lens-cell").count() > 5, "the grid is still the text's"


@pytest.mark.parametrize("slider, typed, name", [("inside-gpt2-layer", "9", "layer"),
                                                 ("inside-gpt2-head", "0", "head"),
                                                 ("inside-bert-layer", "9", "layer")])
def test_a_layer_or_head_beyond_the_model_is_refused_once_by_name_with_its_range(inside, app, capfd, slider, typed,
                                                                                name):
    maps = app.models.bert.get() if "bert" in slider else app.models.gpt2.current
    n_layer, n_head = maps.attention("The dog").weights.shape[:2]
    expected = (f"`{name}` has to be an integer from 1 to {n_layer if name == 'layer' else n_head} for {maps.name}, "
                f"but is {typed}")
    picture = inside.locator(f"#{slider.rsplit('-', 1)[0]}-map svg.attention-map")
    drawn = picture.evaluate("e => e.outerHTML")
    box = inside.locator(f"#{slider} input[type=number]")
    capfd.readouterr()
    box.fill(typed)
    wait_until(lambda: any(as_toast(expected) in t for t in toasts(inside)), message=f"the message naming {name}")
    wait_until(lambda: box.input_value() == "1", message="the slider back where the map was drawn")
    inside.wait_for_timeout(500)  # (a second message would have come by now)
    assert len(toasts(inside)) == 1, f"one message: {toasts(inside)}"
    assert picture.evaluate("e => e.outerHTML") == drawn, "the map as drawn"
    assert "Traceback" not in capfd.readouterr().err, "the server's log"


def test_a_new_sentence_clamps_the_sliders_and_a_moved_one_is_checked(lm):
    """Show attention takes what the sliders show, which may be another model's (switched since); a slider moved or
    typed into is checked against this model's layers and heads."""
    from demo.inside_tab import Maps, layer_head

    maps = Maps(lm.name, lm.attention("The dog barked"), [])
    n_layer, n_head = maps.attention.weights.shape[:2]
    assert layer_head(maps, 48, 0, clamp=True) == (n_layer, 1)
    assert layer_head(maps, None, float(n_head), clamp=True) == (1, n_head), "an emptied box, and JSON's 4.0"
    assert layer_head(maps, n_layer, n_head, clamp=False) == (n_layer, n_head)
    for layer, head, message in [(n_layer + 1, 1, f"`layer` has to be an integer from 1 to {n_layer} for "),
                                 (1, 0, f"`head` has to be an integer from 1 to {n_head} for "),
                                 (1, 1.5, "`head` has to be an integer from 1 to "),
                                 ("two", 1, "`layer` has to be an integer from 1 to ")]:
        with pytest.raises(ValueError) as refused:
            layer_head(maps, layer, head, clamp=False)
        assert str(refused.value).startswith(message) and lm.name in str(refused.value)

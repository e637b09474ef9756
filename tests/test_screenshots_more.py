"""The README's screenshots of the Inside, Layers, Scale and Build your own tabs, served by the bundled mini model (a trained
GPT-2, so the page shows words). Run with UPDATE_SCREENSHOTS=1; each also checks what it photographs."""

from __future__ import annotations

import pytest
from test_browser import ROOT, UPDATE_SCREENSHOTS, browser  # noqa: F401 (fixture)
from test_scale import open_tab
from ui_helpers import launched_app, wait_until

pytest_plugins = ["fixtures_ui"]
pytestmark = [pytest.mark.browser, pytest.mark.skipif(not UPDATE_SCREENSHOTS, reason="writes the README's "
                                                      "screenshots (minutes of training): run with UPDATE_SCREENSHOTS=1")]
LAYERS_TEXT = "KING HENRY.\nNow, good my lord, I pray you"  # the mini model knows its kings and lords
SENTENCE = "the dog barked at the mailman and then it ran down the street ."  # words the test BERT knows


@pytest.fixture(scope="module")
def mini_app(tiny_bert):
    with launched_app("mini-gpt2", tiny_bert) as running:
        yield running


def test_inside_screenshot(browser, mini_app):  # noqa: F811
    page = open_tab(browser, mini_app.url, "Inside", {"width": 1280, "height": 1000})
    page.locator("#inside-text textarea").fill(SENTENCE)
    page.locator("#inside-show").click()
    wait_until(lambda: "dog" in page.locator("#inside-follow").inner_text(), timeout=30, message="the new sentence")
    wait_until(lambda: "looks most at" in page.locator("#inside-links").inner_text(), message="its links")
    page.locator("#inside-gpt2-title").scroll_into_view_if_needed()
    page.wait_for_timeout(1000)
    page.screenshot(path=str(ROOT / "assets" / "screenshot-inside.png"), full_page=True)
    page.context.close()


def test_layers_screenshot(browser, mini_app):  # noqa: F811
    page = open_tab(browser, mini_app.url, "Layers", {"width": 1280, "height": 900})
    wait_until(lambda: page.locator("#layers-grid .lens-cell").count() > 10, timeout=30, message="the first grid")
    page.locator("#layers-text textarea").fill(LAYERS_TEXT)
    page.locator("#layers-continue").click()  # GPT-2's own words, so the commitment colouring has a generated text
    commitment = page.locator("#layers-commitment")
    wait_until(lambda: commitment.locator(".token.highlighted").count() >= 8, timeout=30, message="the colouring")
    assert page.locator("#layers-text textarea").input_value().startswith(LAYERS_TEXT)
    page.locator("#layers-grid .lens-cell[data-row='2'][data-col='11']").click()  # layer 2, after " pray"
    wait_until(lambda: "layer 2" in page.locator("#layers-details").inner_text(), message="the cell's top 5")
    assert page.locator("#layers-details tbody tr").count() == 5
    page.locator("#layers-note").scroll_into_view_if_needed()
    page.wait_for_timeout(1000)
    page.screenshot(path=str(ROOT / "assets" / "screenshot-layers.png"), full_page=True)
    page.context.close()


def test_scale_screenshot(browser, mini_app):  # noqa: F811
    page = open_tab(browser, mini_app.url, "Scale", {"width": 1280, "height": 900})
    page.locator("#scale-run").click()
    wait_until(lambda: "Done" in page.locator("#scale-state").inner_text(), timeout=120, message="the sizes")
    assert "bits per token" in page.locator("#scale-columns").inner_text()
    page.screenshot(path=str(ROOT / "assets" / "screenshot-scale.png"), full_page=True)
    page.context.close()


def test_build_your_own_screenshot(browser, mini_app):  # noqa: F811
    page = open_tab(browser, mini_app.url, "Build your own", {"width": 1280, "height": 900})
    page.locator("#train-start").click()
    wait_until(lambda: "Done" in page.locator("#train-status").inner_text(), timeout=300, message="a 2-minute run")
    page.locator("#train-use").click()
    wait_until(lambda: "on this page only" in page.locator("#train-use-status").inner_text(), message="adopted")
    page.screenshot(path=str(ROOT / "assets" / "screenshot-build-your-own.png"))  # the curve and the newest samples
    page.context.close()


def test_spanish_screenshot(browser, mini_app):  # noqa: F811
    """The page in Spanish (a link's ?lang=es), the Unicorns written: GPT-2's own text stays English."""
    from demo.i18n import tables

    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    page.set_default_timeout(30_000)
    page.goto(mini_app.url + "?lang=es")
    page.locator("#prompt textarea").wait_for()
    assert page.get_by_role("tab", name=tables()["es"]["Generate"]).is_visible()
    page.locator("#example-unicorn").click()
    page.locator("#generate-button").click()
    wait_until(lambda: page.locator("#sample-view-1 .token.highlighted").count() > 100, timeout=60, message="the story")
    done = tables()["es"]["**Done** ({reasons}). Click any coloured token to see why GPT-2 chose it."].split("**")[1]
    wait_until(lambda: done in page.locator("#run-state").inner_text(), timeout=60,
               message="the end of the run")
    page.wait_for_timeout(1000)
    page.screenshot(path=str(ROOT / "assets" / "screenshot-spanish.png"))
    page.context.close()

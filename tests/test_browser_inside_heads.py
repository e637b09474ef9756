"""The Inside tab's heads in Debian's chromium, in Spanish and French at a laptop's 1280x720 and a phone's 390x844:
each head picture's caption read whole (the shown head's "cabeza 1 (mostrada)" was cut to "cabeza 1 (mo…"), and the
Layer and Head sliders level, each number box beside its name.

Uses test_browser.py's `browser` fixture (skipped with its reason where chromium is absent) and the shared tiny app.
"""

from __future__ import annotations

import pytest
from test_browser import browser, photograph_if_failed  # noqa: F401 (fixture)
from ui_helpers import wait_until

pytestmark = pytest.mark.browser
pytest_plugins = ["fixtures_ui"]

TAB = {"en": "Inside", "es": "Por dentro", "fr": "À l'intérieur"}
SHOWN = {"en": "(shown)", "es": "(mostrada)", "fr": "(affichée)"}
SIZES = {"1280x720": {"width": 1280, "height": 720}, "390x844": {"width": 390, "height": 844}}

CLIPPED = """(root) => [...root.querySelectorAll('.caption-label')].filter((c) => {
  const box = c.getBoundingClientRect(), item = c.closest('.thumbnail-item').getBoundingClientRect();
  return c.scrollWidth > c.clientWidth + 1 || c.scrollHeight > c.clientHeight + 1 || box.left < item.left - 1
    || box.right > item.right + 1; }).map((c) => c.textContent)"""


@pytest.fixture
def inside(browser, app, request):  # noqa: F811
    lang, size = request.param
    page = browser.new_context(viewport=SIZES[size]).new_page()
    page.set_default_timeout(30_000)
    page.goto(f"{app.url}?lang={lang}")
    page.locator("#prompt textarea").wait_for()
    page.get_by_role("tab", name=TAB[lang]).click()
    wait_until(lambda: page.locator("#inside-gpt2-heads .caption-label").count() > 1, timeout=30, message="the heads")
    yield page, lang
    photograph_if_failed(page, request)
    page.context.close()


@pytest.mark.smoke("en-390x844")
@pytest.mark.parametrize("inside", [("es", "390x844"), ("es", "1280x720"), ("fr", "390x844"), ("en", "390x844")],
                         indirect=True, ids=lambda p: "-".join(p))
def test_every_head_caption_is_read_whole(inside):
    page, lang = inside
    for key in ("gpt2", "bert"):
        heads = page.locator(f"#inside-{key}-heads")
        wait_until(lambda: heads.locator(".caption-label").count() > 1, timeout=30, message=f"{key}'s heads")  # noqa: B023
        captions = heads.locator(".caption-label").all_text_contents()
        assert any(SHOWN[lang] in c for c in captions), captions
        assert heads.evaluate(CLIPPED) == [], f"{key}'s captions cut short"
        # the gallery's own title, whole beside its button (the Spanish and French ones ran under it on a phone)
        title, button = heads.locator("[data-testid=block-label]"), heads.locator("button").first
        if title.count() and title.is_visible():
            assert title.evaluate("(t) => t.scrollWidth <= t.clientWidth + 1"), title.inner_text()
            if button.is_visible():
                t, b = title.bounding_box(), button.bounding_box()
                assert t["x"] + t["width"] <= b["x"] + 1 or b["y"] >= t["y"] + t["height"] - 1, (t, b)


@pytest.mark.parametrize("inside", [("es", "390x844"), ("fr", "390x844"), ("en", "1280x720")], indirect=True,
                         ids=lambda p: "-".join(p))
def test_the_layer_and_head_sliders_sit_level_with_their_number_boxes_beside_their_names(inside):
    page, _ = inside
    for key in ("gpt2", "bert"):
        bars, boxes, names = [], [], []
        for knob in ("layer", "head"):
            slider = page.locator(f"#inside-{key}-{knob}")
            bars.append(slider.locator("input[type=range]").bounding_box())
            boxes.append(slider.locator("input[type=number]").bounding_box())
            names.append(slider.locator(".head > label").bounding_box())
        assert abs(bars[0]["y"] - bars[1]["y"]) <= 1, f"{key}: the bars at {bars[0]['y']} and {bars[1]['y']}"
        for box, name in zip(boxes, names, strict=True):
            assert box["y"] < name["y"] + name["height"], f"{key}: a number box under its name ({box}, {name})"


@pytest.mark.parametrize("inside", [("en", "1280x720")], indirect=True, ids=lambda p: "-".join(p))
def test_the_words_to_follow_are_one_tab_stop_and_the_arrows_choose_one(inside):
    """Gradio named each radio on its own: the 17 words were 17 Tab stops, and the arrows moved nowhere."""
    page, _ = inside
    radios = page.locator("#inside-follow input[type=radio]")

    def state() -> dict:
        return page.evaluate("""() => {
          const radios = [...document.querySelectorAll('#inside-follow input[type=radio]')];
          return {checked: radios.findIndex((r) => r.checked), focused: radios.indexOf(document.activeElement),
                  stops: radios.filter((r) => r.tabIndex >= 0).length};
        }""")

    chosen = state()["checked"]
    assert radios.count() > 3 and chosen > 0 and state()["stops"] == 1, state()
    radios.nth(chosen).focus()
    page.keyboard.press("Tab")
    assert state()["focused"] == -1, "Tab leaves the group"
    page.keyboard.press("Shift+Tab")
    assert state() == {"checked": chosen, "focused": chosen, "stops": 1}, "and comes back to the chosen word"
    word = radios.nth(chosen - 1).evaluate("(radio) => radio.closest('label').innerText.trim()")
    page.keyboard.press("ArrowLeft")
    assert state() == {"checked": chosen - 1, "focused": chosen - 1, "stops": 1}
    links = page.locator("#inside-links")
    wait_until(lambda: f"{word}\u2069 looks most at" in links.inner_text(), timeout=30,  # the word isolated
               message=f"the map following {word!r}")
    page.keyboard.press("ArrowRight")  # forward: the last choice is still checked while the change is handled
    wait_until(lambda: state() == {"checked": chosen, "focused": chosen, "stops": 1}, message=f"back: {state()}")
    page.keyboard.press("Alt+ArrowRight")  # the browser's Forward, not a choice
    page.keyboard.press("Tab")
    page.keyboard.press("Shift+Tab")
    assert state() == {"checked": chosen, "focused": chosen, "stops": 1}, "one stop, on the chosen word"

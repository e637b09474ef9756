"""The Lesson tab in Debian's chromium, at a laptop's 1280x720 and a phone's 390x844: a `?lesson=1` link, Next and
Back through the steps, the step list, "Open in Next word" filling that tab, a locked link's read-only prompt (and
another visitor's editable one), "Copy link to this step", a bad step number named, and axe.

Served by the bundled mini model (a trained GPT-2, so the opened tabs show real words) and the tests' tiny BERT, as a
server for a room (training off, so the training step says why instead of offering its button). Uses
test_browser.py's `browser` fixture (skipped with its reason where chromium is absent). With UPDATE_SCREENSHOTS=1 it
also writes assets/screenshot-lesson.png.
"""

from __future__ import annotations

import pytest
from test_browser import ARTIFACTS, ROOT, UPDATE_SCREENSHOTS, browser  # noqa: F401 (fixture)
from test_browser_a11y import violations
from ui_helpers import launched_app, wait_until

from demo.i18n import tables
from demo.lesson_steps import STEPS
from demo.links import LOCKED_INFO

pytestmark = pytest.mark.browser
pytest_plugins = ["fixtures_ui"]

VIEWPORTS = {"1280x720": {"width": 1280, "height": 720}, "390x844": {"width": 390, "height": 844},
             "1920x1080": {"width": 1920, "height": 1080}}
TESTED = ["1280x720", "390x844"]  # a laptop and a phone; the screenshots add a projector's 1920x1080
N = len(STEPS)


@pytest.fixture(scope="module")
def mini_app(tiny_bert):
    """A classroom server that others reach (host 0.0.0.0, served here on 127.0.0.1): training is off there."""
    with launched_app("mini-gpt2", tiny_bert, host="0.0.0.0") as running:
        yield running


@pytest.fixture
def visit(browser, mini_app, request):  # noqa: F811
    """Opens pages on the app (`visit(query, viewport)`); photographs each one if the test failed, then closes it."""
    pages = []

    def open_page(query: str, viewport: str = "1280x720"):
        page = browser.new_context(viewport=VIEWPORTS[viewport]).new_page()
        page.set_default_timeout(20_000)
        pages.append(page)
        page.goto(f"{mini_app.url}?{query}")
        page.locator("#lesson-counter").wait_for()
        return page

    yield open_page
    report = getattr(request.node, "report_call", None)
    for i, page in enumerate(pages):
        if report is None or report.failed:
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / f"{request.node.name}-{i}.png"), full_page=True)
        page.context.close()


def counter(page) -> str:
    return page.locator("#lesson-counter").inner_text().strip()


def at_step(page, n: int) -> None:
    wait_until(lambda: counter(page) == f"Step {n} of {N}", message=f"step {n}")
    wait_until(lambda: STEPS[n - 1].title in page.locator("#lesson-step h2").inner_text(), message="its title")


def selected_tab(page) -> str:
    return page.locator("[role=tab][aria-selected=true]").inner_text().strip()


def in_view(page, selector: str) -> bool:
    box = page.locator(selector).first.bounding_box()
    size = page.viewport_size
    return (box is not None and -1 <= box["y"] and box["y"] + box["height"] <= size["height"] + 1
            and box["x"] >= -1 and box["x"] + box["width"] <= size["width"] + 1)


@pytest.mark.smoke("1280x720")
@pytest.mark.parametrize("viewport", TESTED)
def test_next_and_back_walk_the_steps_and_open_fills_the_next_word_tab(visit, viewport):
    page = visit("lesson=1", viewport)
    at_step(page, 1)
    assert selected_tab(page) == "Lesson"
    assert page.locator("#lesson-back").is_disabled() and in_view(page, "#lesson-next")
    for n in (2, 3, 4):
        page.locator("#lesson-next").click()
        at_step(page, n)
        assert in_view(page, "#lesson-next"), "Next stays where it was pressed"
    page.locator("#lesson-back").click()
    at_step(page, 3)
    page.locator("#lesson-back").click()
    at_step(page, 2)
    assert page.locator("#lesson-steps input[type=radio]").nth(1).is_checked()
    step = STEPS[1]
    assert step.question in page.locator("#lesson-question").inner_text()
    summary = page.locator("#lesson-question summary")
    summary.click()
    wait_until(lambda: page.locator("#lesson-question details").get_attribute("open") is not None,
               message="what to notice, shown")
    open_button = page.locator("#lesson-open")
    assert open_button.inner_text().strip() == "Open in Next word"
    open_button.click()
    wait_until(lambda: selected_tab(page) == "Next word", message="the Next word tab")
    prompt = page.locator("#explore-prompt textarea")
    wait_until(lambda: prompt.input_value() == step.link["prompt"], message="the step's prompt")
    assert prompt.is_editable(), "an unlocked lesson leaves the prompt to the class"
    bars = page.locator("#explore-candidates .confidence-set")
    wait_until(lambda: bars.count() >= 5, timeout=30, message="the next word's bars for that prompt")
    assert in_view(page, "#explore-prompt textarea"), "the opened tab shows its prompt"


RING = """() => { const label = document.activeElement.closest('label'), s = label && getComputedStyle(label);
  return s ? [s.outlineStyle, parseFloat(s.outlineWidth)] : null; }"""


def test_from_the_keyboard_the_chosen_step_shows_its_ring_and_open_leads_into_the_opened_tab(visit):
    """The step list's radio and the lock's checkbox show where the keyboard is (Gradio draws no ring on either), and
    after "Open in Inside" the focus is on the Inside tab's panel: the next Tab goes to its first control (before,
    the focus fell to the page's start, and Tab went through the 9 tab names again)."""
    page = visit("lesson=3")
    at_step(page, 3)
    page.locator("#lesson-steps input[type=radio]").nth(2).focus()
    page.keyboard.press("ArrowRight")
    at_step(page, 4)
    style = page.evaluate(RING)
    assert style is not None and style[0] == "solid" and style[1] >= 2, f"the chosen step's ring: {style}"
    page.keyboard.press("ArrowLeft")
    at_step(page, 3)
    page.locator("#lesson-lock input[type=checkbox]").focus()
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Tab")  # the keyboard's focus (the ring shows for it, not for a click)
    style = page.evaluate(RING)
    assert style is not None and style[0] == "solid" and style[1] >= 2, f"the lock's ring: {style}"
    page.locator("#lesson-steps label").filter(has_text="6. Attention").click()  # the step that opens Inside
    at_step(page, 6)
    assert STEPS[5].tab == "inside"
    page.locator("#lesson-open").focus()
    page.keyboard.press("Enter")
    wait_until(lambda: selected_tab(page) == "Inside", message="the Inside tab")
    wait_until(lambda: page.evaluate("document.activeElement.getAttribute('role') === 'tabpanel' && "
                                     "document.activeElement.getAttribute('aria-label') === 'Inside'"),
               message="the focus on the opened tab's panel, named after it")
    page.keyboard.press("Tab")
    where = page.evaluate("(() => { const panel = [...document.querySelectorAll('#page-tabs > [role=tabpanel]')]"
                          ".find((p) => p.offsetParent !== null); return panel && panel.contains(document.activeElement)"
                          " ? document.activeElement.closest('[id]').id : null; })()")
    assert where == "inside-text", f"the first control of Inside: {where}"


@pytest.mark.parametrize("viewport", TESTED)
def test_the_step_list_jumps_and_the_layers_step_opens_the_logit_lens_on_its_sentence(visit, viewport):
    page = visit("lesson=1", viewport)
    page.locator("#lesson-steps label").filter(has_text="7. Layers").click()
    at_step(page, 7)
    assert in_view(page, "#lesson-step h2"), "a jump shows the step from its top"
    page.get_by_role("tab", name="Layers").click()  # a class typed another text there first
    box = page.locator("#layers-text textarea")
    box.fill("Once upon a time")
    wait_until(lambda: box.input_value() == "Once upon a time", message="the typed text")
    page.get_by_role("tab", name="Lesson").click()
    page.locator("#lesson-open").click()
    wait_until(lambda: selected_tab(page) == "Layers", message="the Layers tab")
    wait_until(lambda: box.input_value() == STEPS[6].link["text"], message="the step's sentence")
    assert page.locator("#layers-target input").input_value() == " Paris"
    grid = page.locator("#layers-grid")
    wait_until(lambda: "Tower" in grid.inner_text() and "upon" not in grid.inner_text(), timeout=30,
               message="the grid of the step's sentence (drawn as the tab opened)")


def test_the_last_steps_open_scale_build_your_own_and_spot_the_machine_prefilled(visit):
    """Steps 8-10 fill their tabs too: Scale's prompt and seed, Build your own's minutes, and Spot the machine's text
    (a person's paragraph, which the class colours first), locked where the link says so."""
    page = visit("lesson=8&lock=1", "1280x720")
    at_step(page, 8)
    page.get_by_role("tab", name="Scale").click()  # a class changed the prompt and seed first
    page.locator("#scale-prompt textarea").fill("Once upon a time")
    page.locator("#scale-seed input").fill("7")
    page.get_by_role("tab", name="Lesson").click()
    page.locator("#lesson-open").click()
    wait_until(lambda: selected_tab(page) == "Scale", message="the Scale tab")
    prompt = page.locator("#scale-prompt textarea")
    wait_until(lambda: prompt.input_value() == STEPS[7].link["prompt"], message="the step's prompt")
    assert page.locator("#scale-seed input").input_value() == "2019" and not prompt.is_editable()
    page.get_by_role("tab", name="Lesson").click()
    page.locator("#lesson-next").click()
    at_step(page, 9)
    page.locator("#lesson-next").click()
    at_step(page, 10)
    page.locator("#lesson-open").click()
    wait_until(lambda: selected_tab(page) == "Spot the machine", message="the Spot the machine tab")
    text = page.locator("#score-text textarea")
    wait_until(lambda: text.input_value() == STEPS[9].link["text"], message="the person's paragraph")
    assert text.input_value().startswith("There were four of us") and not text.is_editable()
    for fill in ("#score-fill-machine", "#score-fill-human"):  # either would write over the locked paragraph
        wait_until(lambda fill=fill: page.locator(fill).is_disabled(), message=f"{fill} off")
    page.locator("#score-button").click()
    wait_until(lambda: page.locator("#score-output .token.highlighted").count() > 20, timeout=30,
               message="the paragraph coloured")


@pytest.mark.parametrize("viewport", TESTED)
def test_a_locked_link_opens_a_prompt_the_class_cannot_edit_and_no_one_else_is_locked(visit, viewport):
    page = visit("lesson=4&lock=1", viewport)
    at_step(page, 4)
    note = page.locator("#lesson-lock-note")
    wait_until(lambda: note.is_visible() and "locked" in note.inner_text(), message="the lock's note")
    lock = page.locator("#lesson-lock input[type=checkbox]")
    wait_until(lambda: lock.is_checked() and lock.is_disabled(), message="the lock, ticked for good")
    page.locator("#lesson-open").click()
    wait_until(lambda: selected_tab(page) == "Generate", message="the Generate tab")
    prompt = page.locator("#prompt textarea")
    wait_until(lambda: prompt.input_value() == STEPS[3].link["prompt"], message="the step's prompt")
    wait_until(lambda: not prompt.is_editable(), message="the prompt locked")
    assert LOCKED_INFO in page.locator("#prompt").inner_text()
    assert page.locator("#seed input").input_value() == "42" and page.locator("#seed input").is_editable()
    examples = page.locator("button[id^='example-']")
    wait_until(lambda: examples.count() >= 3 and all(b.is_disabled() for b in examples.all()),
               message="the examples off: one wrote its own prompt over the locked one")
    page.locator("#generate-button").click()  # the class can still run the step
    wait_until(lambda: "Done" in page.locator("#run-state").inner_text(), timeout=60, message="the story")
    assert page.locator("#sample-view-1 .token.highlighted").count() > 3
    assert prompt.input_value() == STEPS[3].link["prompt"]

    other = visit("lesson=4", viewport)  # another visitor, at the same time: an ordinary page
    at_step(other, 4)
    assert not other.locator("#lesson-lock-note").is_visible()
    other.locator("#lesson-open").click()
    other_prompt = other.locator("#prompt textarea")
    wait_until(lambda: other_prompt.input_value() == STEPS[3].link["prompt"], message="the other's prompt")
    assert other_prompt.is_editable() and LOCKED_INFO not in other.locator("#prompt").inner_text()
    assert other.locator("#example-unicorn").is_enabled()
    assert not prompt.is_editable(), "the first page stays locked"


def test_copy_link_to_this_step_gives_a_link_to_that_step_locked_when_ticked(visit):
    page = visit("lesson=1")
    page.locator("#lesson-steps label").filter(has_text="5. The unicorns").click()
    at_step(page, 5)
    page.locator("#lesson-lock input[type=checkbox]").check()
    page.locator("#lesson-copy-link").click()
    link = page.locator("#lesson-link textarea, #lesson-link input").first
    wait_until(lambda: "lesson=5" in link.input_value(), message="the step's link")
    assert "lock=1" in link.input_value() and "tab=lesson" in link.input_value()
    shared = visit(link.input_value().split("?", 1)[1])
    at_step(shared, 5)
    wait_until(lambda: shared.locator("#lesson-lock-note").is_visible(), message="a locked lesson")
    shared.locator("#lesson-open").click()
    prompt = shared.locator("#prompt textarea")
    wait_until(lambda: prompt.input_value().startswith("In a shocking finding"), message="the unicorns' prompt")
    assert shared.locator("#seed input").input_value() == "2019" and not prompt.is_editable()


def test_a_step_whose_tab_is_off_here_says_why_instead_of_offering_its_button(visit):
    page = visit("lesson=9")
    at_step(page, 9)
    note = page.locator("#lesson-unavailable")
    wait_until(note.is_visible, message="the note")
    assert "Training is off on this server" in note.inner_text() and "--allow-training" in note.inner_text()
    assert not page.locator("#lesson-open").is_visible(), "no button that cannot work"
    page.locator("#lesson-next").click()
    at_step(page, 10)
    wait_until(lambda: page.locator("#lesson-open").is_visible() and not note.is_visible(), message="step 10")
    assert page.locator("#lesson-next").is_disabled()
    card = page.locator("#lesson-step").inner_text()  # the bundled model serves this page: the step says so
    assert "mini-gpt2 serves" in card and "4,096 tokens, not 50,257" in card, card


def test_a_bad_step_number_is_named_with_its_range_and_the_lesson_opens_at_step_1(visit):
    page = visit(f"lesson={N + 32}")
    note = page.locator("#link-note")
    wait_until(lambda: "lesson" in note.inner_text(), message="the link's note")
    assert f"`lesson` has to be an integer in [1, {N}], but is {N + 32}" in note.inner_text()
    assert selected_tab(page) == "Lesson"
    at_step(page, 1)


def test_the_lesson_in_spanish_and_french_and_its_copied_link_keeps_the_language(visit):
    """The step the page opens on (its load event) and the next (the step list's change): written by the server for
    the link's `lang`; the step list's names and the buttons: by the browser."""
    es, fr = tables()["es"], tables()["fr"]
    page = visit("lesson=1&lang=fr")
    wait_until(lambda: counter(page) == f"Étape 1 sur {N}", message="step 1 in French")
    wait_until(lambda: fr[STEPS[0].idea].replace("**", "") in page.locator("#lesson-step").inner_text(),
               message="its idea in French")
    assert page.locator("#lesson-open").inner_text().strip() == "Ouvrir dans " + fr["Spot the machine"]
    assert "Demandez à la classe." in page.locator("#lesson-question").inner_text()
    page.locator("#lesson-next").click()
    wait_until(lambda: counter(page) == f"Étape 2 sur {N}", message="step 2 in French, from the server")
    wait_until(lambda: fr[STEPS[1].question] in page.locator("#lesson-question").inner_text(), message="its question")
    assert page.locator("#lesson-step h2").inner_text().strip() == fr["Next word"]

    page = visit("lesson=7&lang=es")
    wait_until(lambda: counter(page) == f"Paso 7 de {N}", message="step 7 in Spanish")
    wait_until(lambda: page.locator("#lesson-step h2").inner_text().strip() == es["Layers"], message="its title")
    assert es[STEPS[6].action].replace("**", "") in page.locator("#lesson-step").inner_text()
    assert page.locator("#lesson-open").inner_text().strip() == "Abrir en " + es["Layers"]
    assert page.locator("#lesson-steps label").filter(has_text="5. Los unicornios").count() == 1
    page.locator("#lesson-copy-link").click()
    link = page.locator("#lesson-link textarea, #lesson-link input").first
    wait_until(lambda: "lesson=7" in link.input_value(), message="the step's link")
    assert "lang=es" in link.input_value()

    page = visit(f"lesson={N + 1}&lang=es&colour=red")
    note = page.locator("#link-note")
    wait_until(lambda: "colour" in note.inner_text(), message="the link's note")
    assert "Este enlace tenía valores que la página no puede usar" in note.inner_text()
    assert "`colour` no es un ajuste de esta pestaña" in note.inner_text() and "lang" not in note.inner_text()


@pytest.mark.parametrize("viewport", TESTED)
def test_the_lesson_passes_axe(visit, viewport):
    page = visit("lesson=6&lock=1", viewport)
    at_step(page, 6)
    wait_until(lambda: page.locator("#lesson-lock-note").is_visible(), message="the lock's note")
    page.locator("#lesson-question summary").click()
    assert violations(page) == []
    page.locator("#lesson-steps label").filter(has_text="9. Train").click()
    at_step(page, 9)
    assert violations(page) == []
    page.locator("#lesson-steps label").filter(has_text="4. Sampling").click()
    at_step(page, 4)
    page.locator("#lesson-open").click()
    wait_until(lambda: not page.locator("#prompt textarea").is_editable(), message="the locked prompt")
    assert violations(page) == [], "the Generate tab, its prompt locked"


@pytest.mark.skipif(not UPDATE_SCREENSHOTS, reason="writes the README's screenshot: run with UPDATE_SCREENSHOTS=1")
@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_screenshot_of_the_lesson(visit, viewport):
    """The README's screenshot at 1280x720; at every size, the whole page in test-artifacts/ to look at."""
    page = visit("lesson=2", viewport)
    at_step(page, 2)
    page.locator("#lesson-question summary").click()
    if viewport != "390x844":  # on a phone the step's text comes first, its button after
        assert in_view(page, "#lesson-open"), "the step and its button fit a laptop's screen"
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"lesson-{viewport}.png"), full_page=True)
    if viewport == "1280x720":
        page.screenshot(path=str(ROOT / "assets" / "screenshot-lesson.png"))

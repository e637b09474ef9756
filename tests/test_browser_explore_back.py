"""The Next word tab's Back and its sliders' typed numbers, in Debian's chromium.

Back undoes the last token added on the page, and only that: a text the student pasted or typed since (however fast)
stays as it is, with nothing to undo, and the note on the last draw goes with the edit. A number typed into a
slider's box beyond its range is answered by the event it reaches with one message, the page's own, naming the
parameter and the slider's range (no Gradio message, no traceback in the server's log).

Uses test_browser.py's `browser` fixture (skipped with its reason where chromium is absent).
"""

from __future__ import annotations

import pytest
from test_browser import VIEWPORT, browser, photograph_if_failed  # noqa: F401 (fixture)
from ui_helpers import as_toast, wait_until

pytestmark = pytest.mark.browser
pytest_plugins = ["fixtures_ui"]

NOTHING_TO_UNDO = "Nothing to undo: only your own text is left."
MESSAGES = "[data-testid=toast-text]"  # one per message: Gradio stacks them in one toast, "Error (3)"


@pytest.fixture
def next_word(browser, app, request):  # noqa: F811
    """The Next word tab, its charts drawn; clipboard allowed, for pasting as a student does (Ctrl+V)."""
    context = browser.new_context(viewport=VIEWPORT, permissions=["clipboard-read", "clipboard-write"])
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.goto(app.url)
    page.get_by_role("tab", name="Next word").click()
    wait_until(lambda: page.locator("#explore-candidates .confidence-set").count() >= 5, message="the charts")
    yield page
    photograph_if_failed(page, request)
    context.close()


def prompt(page):
    return page.locator("#explore-prompt textarea")


def sample(page) -> str:
    """Press Sample and wait for its token; the text after it."""
    before = prompt(page).input_value()
    coloured = page.locator("#explore-built .token.highlighted").count()
    page.locator("#explore-sample").click()
    wait_until(lambda: prompt(page).input_value() != before, message="the drawn token")
    wait_until(lambda: page.locator("#explore-built .token.highlighted").count() == coloured + 1,
               message="the drawn token coloured")
    return prompt(page).input_value()


def back(page) -> None:
    """Press Back and wait for its answer (the note under the text changes, or the text does)."""
    before = prompt(page).input_value()
    page.locator("#explore-back").click()
    wait_until(lambda: prompt(page).input_value() != before or NOTHING_TO_UNDO in drawn(page), message="Back's answer")
    page.wait_for_timeout(300)  # what its .then redraws


def drawn(page) -> str:
    return page.locator("#explore-drawn").inner_text()


def paste(page, text: str) -> None:
    """Select all of the prompt and paste `text` over it, with the keyboard (no key press types a letter)."""
    page.evaluate("(text) => navigator.clipboard.writeText(text)", text)
    prompt(page).click()
    page.keyboard.press("ControlOrMeta+A")
    page.keyboard.press("ControlOrMeta+V")
    wait_until(lambda: prompt(page).input_value() == text, message="the pasted text")


def test_back_after_a_paste_keeps_the_pasted_text(next_word):
    sample(next_word)
    sample(next_word)
    paste(next_word, "Hello there, friend")
    next_word.wait_for_timeout(3000)  # as the tester did: the page has long settled
    back(next_word)
    assert prompt(next_word).input_value() == "Hello there, friend"
    assert NOTHING_TO_UNDO in drawn(next_word)
    wait_until(lambda: next_word.locator("#explore-built .token.highlighted").count() == 0,
               message="no token coloured as added: the pasted text is the student's")


def test_back_after_typing_fast_keeps_every_letter(next_word):
    box = prompt(next_word)
    box.click()
    next_word.keyboard.press("ControlOrMeta+A")
    next_word.keyboard.press("Delete")
    box.press_sequentially("Cats are", delay=20)  # a fast typist: keys while the last one's update is on its way
    next_word.wait_for_timeout(2000)
    back(next_word)
    assert box.input_value() == "Cats are"
    assert NOTHING_TO_UNDO in drawn(next_word)


def test_back_after_an_edit_with_backspace_keeps_the_edit(next_word):
    drawn_text = sample(next_word)
    wait_until(lambda: "Sample drew" in drawn(next_word), message="the note on the draw")
    prompt(next_word).click()
    next_word.keyboard.press("End")
    next_word.keyboard.press("Backspace")  # a key that types no letter
    wait_until(lambda: prompt(next_word).input_value() == drawn_text[:-1], message="the last letter deleted")
    wait_until(lambda: "Sample drew" not in drawn(next_word), message="the note on a draw whose text is gone, emptied")
    next_word.wait_for_timeout(1000)
    back(next_word)
    assert prompt(next_word).input_value() == drawn_text[:-1]
    assert NOTHING_TO_UNDO in drawn(next_word)


def test_back_after_sample_removes_only_the_last_drawn_token(next_word):
    own = "My own words about"
    paste(next_word, own)
    one = sample(next_word)
    sample(next_word)
    back(next_word)
    assert prompt(next_word).input_value() == one, "Back removes the last token, and only it"
    assert next_word.locator("#explore-built .token.highlighted").count() == 1
    back(next_word)
    assert prompt(next_word).input_value() == own, "the student's text before the tokens stays as written"
    back(next_word)
    assert prompt(next_word).input_value() == own and NOTHING_TO_UNDO in drawn(next_word)


def test_back_after_clicking_a_bar_removes_that_token(next_word):
    own = "Pasted by the student,"
    paste(next_word, own)
    bars = next_word.locator("#explore-candidates .confidence-set")
    wait_until(lambda: bars.count() >= 5, message="the new text's bars")
    next_word.wait_for_timeout(500)  # the redraw for the pasted text has come back
    bars.nth(0).click()
    wait_until(lambda: prompt(next_word).input_value() != own, message="the clicked token")
    assert prompt(next_word).input_value().startswith(own)
    back(next_word)
    assert prompt(next_word).input_value() == own


@pytest.mark.parametrize("elem_id, typed, button, message", [
    ("explore-temperature", "9", "#explore-sample", "`temperature` has to be a finite number in [0, 2], but is 9"),
    ("explore-top-k", "500", "#explore-sample", "`top_k` has to be an integer in [0, 200], but is 500"),
    ("explore-top-p", "0", "#explore-suggest", "`top_p` has to be a finite number in (0, 1], but is 0"),
    ("explore-top-k", "-5", "#explore-suggest", "`top_k` has to be an integer in [0, 200], but is -5"),
    # an emptied box, and a number beyond a double's range: no number to send (they said "but is None", "but is ''")
    ("explore-temperature", "", "#explore-sample", "`temperature` has no number in its box: type one in [0, 2]"),
    ("explore-temperature", "1e309", "#explore-sample", "`temperature` has no number in its box: type one in [0, 2]"),
])
def test_a_number_typed_beyond_a_slider_gets_one_message_naming_its_range(next_word, app, capfd, elem_id, typed,
                                                                           button, message):
    engine = app.models.gpt2.current.engine
    messages = next_word.locator(MESSAGES)
    text = prompt(next_word).input_value()
    next_word.locator(f"#{elem_id} input[type=number]").fill(typed)
    # the charts refuse it once (they are redrawn when a slider changes)
    wait_until(lambda: messages.count() >= 1, message="the charts' answer")
    next_word.wait_for_timeout(1000)
    assert messages.all_inner_texts() == [as_toast(message)]
    steps = engine.steps
    next_word.locator(button).click()  # and leaving the box, whose number the browser then clamps to the bound
    wait_until(lambda: messages.count() >= 2, message="the button's answer")
    next_word.wait_for_timeout(1500)  # any further message would have come by now
    assert messages.all_inner_texts() == [as_toast(message)] * 2, "one message for the charts, one for the button"
    assert engine.steps == steps and prompt(next_word).input_value() == text, "nothing ran"
    log = capfd.readouterr().err
    assert "Traceback" not in log and "raise_if_out_of_bounds" not in log, log[-3000:]

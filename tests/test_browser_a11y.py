"""Accessibility, as axe-core (WCAG 2 A and AA rules) sees every tab in Debian's chromium, before and after a result.

No serious or critical violation may come from the app's own theme or markup. Two come from Gradio itself and are
listed in README: an empty output (a chart or coloured text before its first result) is a <div class="empty"> with an
aria-label and no role, and an error toast's header is clickable and holds the close button. They are excused here by
rule and element, nothing else.
"""

from __future__ import annotations

import pytest
from test_browser import browser, page, set_slider  # noqa: F401 (fixtures)
from ui_helpers import wait_until

pytestmark = pytest.mark.browser
pytest_plugins = ["fixtures_ui"]

WCAG = {"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa"]}}
# (rule, class of the element): Gradio's empty placeholder, and its error toast (a header that holds a close button)
GRADIOS_OWN = {("aria-prohibited-attr", "empty"), ("nested-interactive", "toast-header")}


def settled(page) -> None:
    """Wait until no output is dimmed as pending and no colour is changing: Gradio fades an output to opacity 0.2
    while its event runs, a button that was just enabled takes a moment to turn from grey to its colour, and an error
    toast flies in; axe would measure the colours in between (idle, only icons and disabled buttons are translucent,
    at 0.5 and more). Only short animations are waited for: not a spinner, nor a toast's countdown bar. Twice, 0.3 s
    apart: a button an event's .then turns on comes just after the output the test waited for."""
    changing = """() => document.getAnimations().some(a => a instanceof CSSTransition || (a.playState === 'running'
          && a.effect && a.effect.getComputedTiming().activeDuration <= 1500)) ||
        [...document.querySelectorAll('body *')].some(e => {
          const o = parseFloat(getComputedStyle(e).opacity); return o > 0 && o < 0.5; })"""
    wait_until(lambda: not page.evaluate(changing), message="the outputs to settle")
    page.wait_for_timeout(300)  # an update that follows the last one (a button turned on after "Done") has come
    wait_until(lambda: not page.evaluate(changing), message="the outputs to settle")


def violations(page) -> list[str]:
    from axe_playwright_python.sync_playwright import Axe

    settled(page)
    found = []
    for v in Axe().run(page, options=WCAG).response["violations"]:
        if v["impact"] not in ("serious", "critical"):
            continue
        for node in v["nodes"]:
            opening_tag = node["html"].split(">")[0]
            if any(rule == v["id"] and cls in opening_tag for rule, cls in GRADIOS_OWN):
                continue
            found.append(f"{v['id']} ({v['impact']}): {node['target']} {node['failureSummary'][:160]}")
    return found


@pytest.mark.smoke
def test_generate_tab_passes_axe_before_and_after_a_result(page):
    assert violations(page) == []
    page.locator("#prompt textarea").fill("Accessible pages for every student")
    set_slider(page, "max-new-tokens", 12)
    page.locator("#generate-button").click()
    wait_until(lambda: "Done" in page.locator("#run-state").inner_text(), message="the generation")
    page.locator("#sample-view-1 .token.highlighted").nth(1).click()
    wait_until(lambda: "rank" in page.locator("#token-details").inner_text(), message="the token's details")
    # the buttons a result turns on, each in an update of its own after "Done" (their colour comes back then)
    wait_until(lambda: page.locator("#copy-text").is_enabled() and page.locator("#reuse-seed").is_enabled(),
               message="Copy and Use last seed on")
    assert violations(page) == []


def test_next_word_tab_passes_axe(page):
    page.get_by_role("tab", name="Next word").click()
    wait_until(lambda: page.locator("#explore-candidates .confidence-set").count() >= 5, message="the charts")
    page.locator("#explore-candidates .confidence-set").nth(0).click()
    wait_until(lambda: page.locator("#explore-built .token.highlighted").count() == 1, message="a token added")
    wait_until(lambda: page.locator("#explore-save-html").is_enabled(), message="its .html, the addition's last part")
    assert violations(page) == []


def test_spot_the_machine_tab_passes_axe(page):
    page.get_by_role("tab", name="Spot the machine").click()
    page.locator("#score-text textarea").wait_for()
    assert violations(page) == []
    page.locator("#score-fill-human").click()
    wait_until(lambda: page.locator("#score-output .token.highlighted").count() > 5, message="the coloured text")
    wait_until(lambda: page.locator("#score-save-html").is_enabled(), message="its .html, the result's last part")
    assert violations(page) == []


@pytest.mark.parametrize("lang, words", [
    ("en", {"token": "token: ", "space": "space", "spaces": "spaces", "line break": "line break", "tab": "tab"}),
    ("es", {"token": "token: ", "space": "espacio", "spaces": "espacios", "line break": "salto de línea",
            "tab": "tabulación"})])
def test_a_token_of_spaces_or_a_line_break_is_a_named_button(page, app, lang, words):
    """GPT-2 has tokens of spaces only (a run of spaces is one token, then the word with its own space). Gradio
    makes each clickable token a button named by its text, so the page names these after what they hold, in its
    language; a line break, drawn as ⏎, is named too (a screen reader would read out a symbol)."""
    page.goto(f"{app.url}?lang={lang}")
    page.locator("#prompt textarea").wait_for()
    page.get_by_role("tab").nth(2).click()  # Spot the machine, in any language
    page.locator("#score-text textarea").fill("Four spaces    here, and a tab\tthere.\nA new line.")
    page.locator("#score-button").click()
    wait_until(lambda: page.locator("#score-output .token.highlighted").count() > 5, message="the coloured text")
    blank = page.locator("#score-output .token[role=button][aria-label]")
    wait_until(lambda: blank.count() >= 3, message="the blank tokens named")
    buttons = page.locator("#score-output .token[role=button]")
    read = "t => [t.querySelector('.text').textContent, t.getAttribute('aria-label')]"
    held = [buttons.nth(i).evaluate(read) for i in range(buttons.count())]
    named = {text: label for text, label in held if text.replace("\u23ce", "").strip() == ""}
    assert {"\t", " "} <= set(named) or {"\t", "   "} <= set(named), held  # each model's vocabulary splits its own way
    assert "\u23ce" in "".join(named), held
    for text, label in named.items():
        n = text.count(" ")
        spaces = [] if n == 0 else [words["space"] if n == 1 else f"{n} {words['spaces']}"]
        parts = spaces + [words["line break"]] * ("\u23ce" in text) + [words["tab"]] * ("\t" in text)
        assert label == words["token"] + ", ".join(parts), (text, label)
    assert all(label is None for text, label in held if text.replace("\u23ce", "").strip()), "only blank ones renamed"
    assert violations(page) == []


def test_compare_tab_passes_axe(page):
    page.get_by_role("tab", name="BERT vs GPT-2").click()
    page.locator("#compare-button").wait_for()
    assert violations(page) == []
    page.locator("#compare-button").click()
    wait_until(lambda: page.locator("#bert-chart .confidence-set").count() >= 3, message="the charts")
    assert violations(page) == []


def test_inside_tab_passes_axe(page):
    page.get_by_role("tab", name="Inside").click()
    wait_until(lambda: page.locator("#inside-gpt2-map svg rect").count() > 10, timeout=30, message="the maps")
    wait_until(lambda: "looks most at" in page.locator("#inside-links").inner_text(), message="the links")
    assert violations(page) == []


def test_scale_tab_passes_axe(page):
    page.get_by_role("tab", name="Scale").click()
    page.locator("#scale-run").wait_for()
    assert violations(page) == []
    page.locator("#scale-run").click()
    wait_until(lambda: "Done" in page.locator("#scale-state").inner_text(), timeout=60, message="the sizes")
    # the page as the run left it: Run back on (its colour returns after "Done", in an update of its own), Stop off
    wait_until(lambda: page.locator("#scale-run").is_enabled() and page.locator("#scale-stop").is_disabled(),
               message="Run free again")
    assert violations(page) == []


def test_build_your_own_tab_passes_axe(page):
    page.get_by_role("tab", name="Build your own").click()
    page.locator("#train-start").wait_for()
    assert violations(page) == []


def test_headings_and_bold_words_are_drawn_in_one_font(page):
    """Every glyph of the page's headings, labels and buttons comes from the page's own font, as chromium reports the
    fonts it drew a node with: a font file missing letters would leave some in a fallback font (Gradio's semibold
    file has a few dozen letters: "BERT fills in blanks" had its B from one font and the rest from another)."""
    page.get_by_role("tab", name="BERT vs GPT-2").click()
    page.locator("#compare-button").wait_for()
    page.evaluate("document.fonts.ready.then(() => true)")
    cdp = page.context.new_cdp_session(page)
    cdp.send("DOM.enable")
    cdp.send("CSS.enable")
    root = cdp.send("DOM.getDocument", {"depth": -1})["root"]["nodeId"]
    nodes = cdp.send("DOM.querySelectorAll", {"nodeId": root, "selector": "h3, strong, button, label span"})["nodeIds"]
    drawn = {}
    for node in nodes:
        for font in cdp.send("CSS.getPlatformFontsForNode", {"nodeId": node})["fonts"]:
            drawn.setdefault((font["familyName"], font["isCustomFont"]), []).append(node)
    headings = [n for n in nodes if cdp.send("DOM.describeNode", {"nodeId": n})["node"]["localName"] == "h3"]
    assert headings and len(drawn) >= 1, "the tab's heading was found and drawn"
    families = {family for family, custom in drawn if custom}
    fallbacks = {family for family, custom in drawn if not custom}
    assert len(families) == 1 and not fallbacks, f"drawn in {sorted(families)} and fallbacks {sorted(fallbacks)}"

"""The page in Spanish and French, in Debian's chromium: chosen by the browser's language or by the link's `?lang=`,
with GPT-2's own text left English and said so, messages written during a request in the page's language, and
axe clean."""

from __future__ import annotations

from contextlib import contextmanager

import pytest
from test_browser import browser  # noqa: F401 (fixture)
from test_browser_a11y import violations
from ui_helpers import wait_until

from demo.generate_tab import BUSY
from demo.i18n import tables

pytestmark = pytest.mark.browser
pytest_plugins = ["fixtures_ui"]

ES, FR = tables()["es"], tables()["fr"]
TABS = ["Generate", "Next word", "Spot the machine", "BERT vs GPT-2", "Inside", "Layers", "Scale", "Build your own",
        "Lesson"]


@contextmanager
def opened(browser, url: str, locale: str, size=(1280, 720)):  # noqa: F811
    context = browser.new_context(locale=locale, viewport={"width": size[0], "height": size[1]})
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        page.goto(url)
        page.locator("#prompt textarea").wait_for(state="attached")  # a link may open another tab (lesson=3)
        yield page
    finally:
        context.close()


def tab_names(page) -> list[str]:
    return [t.strip() for t in page.get_by_role("tab").all_inner_texts()]


@pytest.mark.smoke
def test_a_spanish_browser_gets_the_page_in_spanish_and_is_told_gpt2_writes_english(browser, app):  # noqa: F811
    with opened(browser, app.url, "es-ES") as page:
        wait_until(lambda: tab_names(page)[:len(TABS)] == [ES[t] for t in TABS], message="the tabs in Spanish")
        assert page.evaluate("document.documentElement.lang") == "es"
        assert "inglés" in page.locator("#title").inner_text()  # GPT-2's own text stays English: said under the title
        assert page.locator("#languages a[aria-current]").get_attribute("aria-label") == "Español"
        assert page.locator("#large-text").inner_text() == ES["Large text"]
        bounds = {box: page.locator(f"#{box} [data-testid=min-value]") for box in ("top-p", "repetition-penalty")}
        wait_until(lambda: [b.inner_text() for b in bounds.values()] == ["0,01", "0,5"], message="the sliders' "
                   f"bounds in Spanish: {[b.inner_text() for b in bounds.values()]}")
        assert violations(page) == []


def test_an_english_browser_gets_english_and_a_plain_subtitle(browser, app):  # noqa: F811
    with opened(browser, app.url, "en-US") as page:
        wait_until(lambda: tab_names(page)[:len(TABS)] == TABS, message="the tabs in English")
        assert "English" not in page.locator("#title").inner_text()
        assert page.locator("#languages a[aria-current]").get_attribute("aria-label") == "English"


def test_the_links_lang_wins_over_the_browsers_and_the_switcher_keeps_the_other_parameters(browser, app):  # noqa: F811
    with opened(browser, app.url + "?lang=fr&lesson=3", "en-US") as page:
        wait_until(lambda: tab_names(page)[:len(TABS)] == [FR[t] for t in TABS], message="the tabs in French")
        assert page.evaluate("document.documentElement.lang") == "fr"
        spanish = page.locator("#languages a[data-lang=es]").get_attribute("href")
        assert "lang=es" in spanish and "lesson=3" in spanish
        page.locator("#languages a[data-lang=es]").click()
        wait_until(lambda: tab_names(page)[:len(TABS)] == [ES[t] for t in TABS], message="the tabs in Spanish")
        assert "lesson=3" in page.url


@pytest.mark.parametrize("lang, says, title", [("es", "tiene que", "Error"), ("fr", "doit", "Erreur")])
def test_a_message_written_during_a_request_comes_in_the_pages_language(browser, app, lang, says, title):  # noqa: F811
    """A bad temperature: the error in place of the output and its toast, written by the server, are in the page's
    language, and so is the toast's title (Gradio writes "Error" there in every language; the page's script
    translates it)."""
    with opened(browser, app.url + f"?lang={lang}", "en-US") as page:
        box = page.locator("#temperature input[type=number]")
        box.fill("5")
        box.press("Enter")
        page.locator("#generate-button").click()
        toast = page.locator(".toast-body")
        wait_until(lambda: toast.count() > 0 and says in toast.first.inner_text(), message="the error")
        shown = toast.first.inner_text() + page.locator("#run-state").inner_text()
        assert "has to be" not in shown and says in page.locator("#run-state").inner_text(), shown
        assert toast.first.inner_text().split()[0] == title, toast.first.inner_text()
        # The parameter's name is drawn as code, as in the run state, not between backticks
        wait_until(lambda: toast.first.locator("code").count() == 1, message="the name drawn as code")
        assert toast.first.locator("code").inner_text() == "temperature" and "`" not in toast.first.inner_text()


# Each word of a text in `selector`'s elements that the browser drew on two lines (split mid-word)
SPLIT_WORDS = """(selector) => [...document.querySelectorAll(selector)].flatMap((cell) => {
  const node = cell.firstChild, text = cell.textContent, range = document.createRange(), split = [];
  if (!node || node.nodeType !== Node.TEXT_NODE) return [];
  for (const m of text.matchAll(/\\S+/g)) {
    range.setStart(node, m.index); range.setEnd(node, m.index + m[0].length);
    const tops = new Set([...range.getClientRects()].map((r) => Math.round(r.top)));
    if (tops.size > 1) split.push(m[0]);
  }
  return split;
})"""


def test_a_tokens_details_headings_wrap_between_words_on_a_spanish_phone(browser, app):  # noqa: F811
    with opened(browser, app.url + "?lang=es", "en-US", size=(390, 844)) as page:
        page.locator("#prompt textarea").fill("The teacher said")
        page.locator("#max-new-tokens input[type=number]").fill("12")
        page.locator("#generate-button").click()
        page.locator("#sample-view-1 .token.highlighted").first.click()
        headings = page.locator("#token-details th")
        wait_until(lambda: headings.count() >= 2, message="the token's details")
        assert any("Probabilidad" in h for h in headings.all_inner_texts()), headings.all_inner_texts()
        assert page.evaluate(SPLIT_WORDS, "#token-details th") == []


def test_the_colours_of_a_generated_text_are_named_in_the_pages_language(browser, app):  # noqa: F811
    """The legend of coloured text names its colours in Spanish ("10 primeros" ... "más raro"), and a clicked token's
    details say its colour's Spanish name; GPT-2's text itself stays English."""
    with opened(browser, app.url + "?lang=es", "en-US") as page:
        page.locator("#prompt textarea").fill("The teacher said")
        page.locator("#max-new-tokens input[type=number]").fill("12")
        page.locator("#generate-button").click()
        view = page.locator("#sample-view-1")
        legend = view.locator("[data-testid='highlighted-text:category-legend']")
        wait_until(lambda: legend.count() > 0 and "10 primeros" in legend.inner_text(), message="a Spanish legend")
        shown = legend.inner_text()
        assert all(ES[name] in shown for name in ("top 10", "top 100", "top 1000", "rarer")), shown
        assert not any(name in shown.split("\n") for name in ("top 10", "rarer")), shown
        view.locator(".token.highlighted").first.click()
        wait_until(lambda: "rango" in page.locator("#token-details").inner_text(), message="the token's details")
        details = page.locator("#token-details").inner_text()
        assert any(f"({ES[name]})" in details for name in ("top 10", "top 100", "top 1000", "rarer")), details


def test_spot_the_machine_names_its_colours_and_counts_in_the_pages_language(browser, app):  # noqa: F811
    with opened(browser, app.url + "?lang=fr", "en-US") as page:
        page.get_by_role("tab", name=FR["Spot the machine"]).click()
        output = page.locator("#score-output")
        legend = output.locator("[data-testid='highlighted-text:category-legend']")
        page.locator("#score-text textarea").fill("It was a bright cold day in April, and the clocks were striking.")
        page.locator("#score-button").click()
        wait_until(lambda: output.locator(".token.highlighted").count() > 5, message="the coloured tokens")
        shown = [item.strip() for item in legend.locator("button").all_inner_texts()]
        assert shown == [FR[name] for name in ("top 10", "top 100", "top 1000", "rarer")], shown  # no English twins
        assert FR["top 10"] in page.locator("#score-counts").inner_text()


# Every text each button showed from now on, in order (a transient label would be lost to polling)
RECORD_LABELS = """(selectors) => { window.__labels = {};
  for (const selector of selectors) {
    const button = document.querySelector(selector), seen = window.__labels[selector] = [button.innerText.trim()];
    new MutationObserver(() => { const text = button.innerText.trim(); if (seen.at(-1) !== text) seen.push(text); })
      .observe(button, {subtree: true, childList: true, characterData: true});
  }
}"""


def test_the_buttons_a_run_relabels_stay_in_the_links_language_in_a_browser_of_another(browser, app):  # noqa: F811
    """The streamed updates and the last give Generate's buttons labels written on the server (`tr`: the link's
    language), while the page was built with the browser's translations (`T`, which LinkLanguage makes the link's).
    In a French browser opened on `?lang=es`, every label they show before, during and after a run is Spanish."""
    buttons = {"#generate-button": "Generate", "#stop-button": "Stop", "#copy-text": "Copy text",
               "#generate-output-save-png": "Save as PNG", "#reuse-seed": "Use last seed"}
    spanish = {selector: ES[english] for selector, english in buttons.items()}
    with opened(browser, app.url + "?lang=es", "fr-FR") as page:
        def labels() -> dict[str, str]:
            return {selector: page.locator(selector).inner_text().strip() for selector in buttons}

        wait_until(lambda: labels() == spanish, message="the buttons in Spanish")
        page.evaluate(RECORD_LABELS, list(buttons))
        page.locator("#prompt textarea").fill("The teacher said")
        page.locator("#max-new-tokens input[type=number]").fill("60")
        page.locator("#generate-button").click()
        wait_until(lambda: "Hecho" in page.locator("#run-state").inner_text(), message="the run done")
        seen = page.evaluate("window.__labels")
        assert seen["#generate-button"] == [ES["Generate"], ES[BUSY], ES["Generate"]], seen
        for selector in buttons.keys() - {"#generate-button"}:
            assert set(seen[selector]) == {spanish[selector]}, (selector, seen[selector])
        assert labels() == spanish


# ---- the plots as a screen reader hears them (demo/plot_aria.py) --------------------------------------------------

# Vega's own descriptions of a line plot of the Scale chart's kind with a legend, drawn as Vega draws them
VEGA_PLOT = """<div class="block"><span data-testid="block-info">Surprise at human text vs size</span>
<div class="vega-embed" role="graphics-document" aria-roledescription="visualization" aria-label="Vega visualization">
<svg><g aria-roledescription="group mark container">
<g class="x" aria-roledescription="axis"
   aria-label="X-axis titled 'parameters (millions)' for a linear scale with values from 0 to 1,600"></g>
<g class="y" aria-roledescription="axis" aria-label="Y-axis for a linear scale with values from 3.6 to 5.6"></g>
<g class="legend" aria-roledescription="legend"
   aria-label="Symbol legend titled 'split' for stroke color and shape with 2 values: training, validation"></g>
<g class="bands" aria-roledescription="axis" aria-label="BANDS"></g>
<path class="point" aria-roledescription="point" aria-label="parameters (millions): 1557.6; bits per token: 3.6"></path>
<path class="other" aria-roledescription="arc" aria-label="a label Vega did not write"></path>
</g></svg></div></div>"""
VEGA_PLOT = VEGA_PLOT.replace("BANDS", "X-axis for a discrete scale with 9 values: 0.5, 1.5, 2.5, 3.5, 4.5, ending with 8.5")
SAID = {
    "es": {"plot": ["Surprise at human text vs size", "gráfico"],
           "x": ["Eje X titulado «parameters (millions)», de escala lineal, con valores de 0 a 1600", "eje"],
           "y": ["Eje Y de escala lineal, con valores de 3,6 a 5,6", "eje"],
           "legend": ["Leyenda titulada «split» para color del trazo y forma, con 2 valores: training, validation",
                      "leyenda"],
           "bands": ["Eje X de escala discreta, con 9 valores: 0,5; 1,5; 2,5; 3,5; 4,5… y el último, 8,5", "eje"],
           "point": ["parameters (millions): 1557,6; bits per token: 3,6", "punto"],
           "other": ["a label Vega did not write", "arc"]},
    "fr": {"plot": ["Surprise at human text vs size", "graphique"],
           "x": ["Axe X intitulé « parameters (millions) », échelle linéaire, valeurs de 0 à 1\u202f600", "axe"],
           "y": ["Axe Y, échelle linéaire, valeurs de 3,6 à 5,6", "axe"],
           "legend": ["Légende intitulée « split » pour couleur du trait et forme, 2 valeurs : training, validation",
                      "légende"],
           "bands": ["Axe X, échelle discrète, 9 valeurs : 0,5; 1,5; 2,5; 3,5; 4,5… la dernière : 8,5", "axe"],
           "point": ["parameters (millions): 1557,6; bits per token: 3,6", "point"],
           "other": ["a label Vega did not write", "arc"]},
    "en": {"plot": ["Surprise at human text vs size", "visualization"],
           "x": ["X-axis titled 'parameters (millions)' for a linear scale with values from 0 to 1,600", "axis"]},
}
PARTS = """() => Object.fromEntries([['plot', document.querySelector('.vega-embed')],
  ...[...document.querySelectorAll('svg [class]')].map((e) => [e.getAttribute('class'), e])]
  .map(([name, e]) => [name, [e.getAttribute('aria-label'), e.getAttribute('aria-roledescription')]]))"""


@pytest.mark.smoke
@pytest.mark.parametrize("lang", ["es", "fr", "en"])
def test_a_plot_is_named_after_its_label_and_described_in_the_pages_language(browser, lang):  # noqa: F811
    """The page script on Vega's own descriptions (the sentences, the roles, the numbers), run twice: the second pass
    leaves the first's words as they are ("3,6" is not read as English again)."""
    from demo.plot_aria import NAME_PLOTS

    page = browser.new_page()
    try:
        page.set_content(f"<html lang='{lang}'><body>{VEGA_PLOT}</body></html>")
        for _ in range(2):
            page.evaluate(f"({NAME_PLOTS})()")
            parts = page.evaluate(PARTS)
            assert {name: parts[name] for name in SAID[lang]} == SAID[lang]
    finally:
        page.close()


def test_spot_the_machines_histogram_is_described_in_spanish(browser, app):  # noqa: F811
    """The real plot, as Gradio and Vega draw it: named after its label, its axes and bars described in Spanish."""
    with opened(browser, app.url + "?lang=es", "en-US") as page:
        page.get_by_role("tab", name=ES["Spot the machine"]).click()
        page.locator("#score-text textarea").fill("It was a bright cold day in April, and the clocks were striking.")
        page.locator("#score-button").click()
        plot = page.locator("#score-histogram .vega-embed")
        wait_until(lambda: plot.locator("path[aria-roledescription]").count() >= 10, message="the bars")
        assert plot.get_attribute("aria-label") == ES["How likely GPT-2 found each token"]
        axes = plot.locator("[aria-roledescription='eje']")
        wait_until(lambda: axes.count() == 2, message="the axes described in Spanish")
        x, y = (axes.nth(i).get_attribute("aria-label") for i in range(2))
        title = ES["GPT-2's probability of the token"]
        assert x.startswith(f"Eje X titulado «{title}», de escala discreta, con "
                            "10 valores: "), x
        assert y.startswith("Eje Y titulado «tokens», de escala lineal, con valores de 0 a "), y
        roles = set(plot.evaluate("p => [p, ...p.querySelectorAll('[aria-roledescription]')]"
                                  ".map((e) => e.getAttribute('aria-roledescription'))"))
        assert roles == {"gráfico", "grupo", "eje", "barras", "barra"}, roles


@pytest.mark.parametrize("lang", ["en", "es", "fr"])
def test_on_a_phone_the_tab_names_take_three_rows_in_every_language(browser, app, lang):  # noqa: F811
    """All 9 names in view, in 3 rows of targets 32 px high (they took 4 rows, 5 in Spanish: a fifth of the screen)."""
    with opened(browser, app.url + f"?lang={lang}", "en-US", size=(390, 844)) as page:
        names = page.locator("#page-tabs [role=tab]")
        wait_until(lambda: names.count() == len(TABS), message="the tab names")
        boxes = [names.nth(i).bounding_box() for i in range(names.count())]
        assert len({round(b["y"]) for b in boxes}) == 3, boxes
        assert all(b["height"] >= 32 and b["x"] >= 0 and b["x"] + b["width"] <= 390 for b in boxes), boxes

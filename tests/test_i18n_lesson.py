"""The lesson, share links and saved views in the class's language (demo/i18n.py): the lesson's steps and buttons,
a link's notes, `lang` as a link parameter, and the words of a saved PNG (painted in the browser) and HTML."""

from __future__ import annotations

import json
import re
from types import SimpleNamespace

import gradio as gr
import pytest

from demo.app import TAB_LABELS
from demo.i18n import T, speaking, tables
from demo.lesson_steps import STEPS
from demo.lesson_tab import INTRO, StepView, make_first_view, make_show
from demo.links import LINK_JS, LOCKED_INFO, note_markdown, read_link
from demo.save_view import (
    BROWSER_MESSAGES,
    COLOURS_NOTE,
    INSTALL,
    MARKER,
    SAVE_PNG,
    coloured_html,
    in_every_language,
    save_png_button,
)
from demo.tokens import Coloured, TokenRow
from gpt2_core.generate.settings import MAX_SEED

MODELS = SimpleNamespace(bert=SimpleNamespace(loaded=True, source="bert", error=None), public=False,
                         gpt2=SimpleNamespace(current=SimpleNamespace(name="gpt2", tokenizer=[0] * 50257)))


def keys(text: str) -> list[str]:
    return [json.loads(m.group(1))["key"] for m in MARKER.finditer(text)]


def test_every_step_and_the_lessons_labels_are_in_both_tables():
    for step in STEPS:
        for text in (step.title, step.idea, step.action, step.question, step.notice):
            assert all(text in tables()[lang] for lang in ("es", "fr")), text
    for label in (INTRO, T(SAVE_PNG), T("All steps (pick one to jump to it)")):
        assert keys(str(label)) and all(key in tables()[lang] for key in keys(str(label)) for lang in ("es", "fr"))


def test_the_page_opens_on_the_step_its_link_asks_for_in_its_language():
    """The lesson's first view comes from its load event (Gradio's page translates one T() marker per text only)."""
    first_view = make_first_view(make_show(MODELS, TAB_LABELS, {}))
    with speaking("fr"):
        counter, card, _, open_button, question, back, forward = first_view(SimpleNamespace(query_params={"lesson": "7"}))
        assert first_view(SimpleNamespace(query_params={"lang": "fr"}))[0] == f"Étape 1 sur {len(STEPS)}"
        assert first_view(SimpleNamespace(query_params={"tab": "score", "lesson": "7"}))[0].startswith("Étape 1 ")
    assert counter == f"Étape 7 sur {len(STEPS)}" and card.startswith("## Couches\n\n")
    assert open_button.value == "Ouvrir dans Couches" and back.interactive and forward.interactive
    assert "__i18n__" not in card + question


@pytest.mark.parametrize(("lang", "counter", "open_label", "try_it", "ask"), [
    ("es", f"Paso 3 de {len(STEPS)}", "Abrir en Siguiente palabra", "**Pruébalo en Siguiente palabra.**",
     "**Pregunta a la clase.**"),
    ("fr", f"Étape 3 sur {len(STEPS)}", "Ouvrir dans Mot suivant", "**Essayez dans Mot suivant.**",
     "**Demandez à la classe.**"),
])
def test_a_step_shown_during_a_request_is_in_the_pages_language(lang, counter, open_label, try_it, ask):
    with speaking(lang):
        view = StepView.of(3, MODELS, TAB_LABELS, {"train": lambda: "Training is off here."})
        off = StepView.of(9, MODELS, TAB_LABELS, {"train": lambda: "Training is off here."})
    step = STEPS[2]
    assert view.counter == counter and view.open_label == open_label
    assert view.card.startswith("## " + tables()[lang][step.title]) and try_it in view.card
    assert tables()[lang][step.idea] in view.card and tables()[lang][step.action] in view.card
    assert view.question.startswith(ask) and tables()[lang][step.notice] in view.question
    assert tables()[lang][TAB_LABELS["train"]] in off.why and "Training is off here." in off.why  # shown as given
    assert not off.can_open


def test_a_links_notes_are_in_the_pages_language_and_lang_is_a_parameter_of_every_tab():
    assert read_link({"lang": "es"}).problems == [] and read_link({"lesson": "2", "lang": "FR"}).problems == []
    assert read_link({"tab": "score", "text": "Hi", "lang": "fr"}).values == {"text": "Hi"}
    assert read_link({"lang": "de"}).problems == [
        "`lang` has to be one of en, es, fr, but is 'de', so the page is in your browser's language"]
    with speaking("es"):
        link = read_link({"tab": "explore", "max_new_tokens": "10", "lesson": "2", "lock": "1"})
        note = note_markdown(link.problems)
        locked = tables()["es"][LOCKED_INFO]
    assert link.problems[0] == "`max_new_tokens` no es un ajuste de esta pestaña, así que no se ha tenido en cuenta"
    assert note.startswith("**Este enlace tenía valores que la página no puede usar")
    assert "docente" in locked
    with speaking("fr"):
        assert read_link({"tab": "nowhere"}).problems[0].startswith("`tab` doit être l'un de generate, explore")
    with speaking("es"):  # the engine's checks too (gpt2_core writes them in English)
        problems = read_link({"temperature": "abc", "top_k": "-4", "seed": "xyz", "prompt": "x" * 4100}).problems
    assert problems == ["`temperature` tiene que ser un número finito en [0, 2], pero es 'abc'",
                        "`top_k` tiene que ser un número entero en [0, 200], pero es -4",
                        f"`seed` tiene que ser -1 (aleatoria) o un número entero en [0, {MAX_SEED}], pero es 'xyz'",
                        "`prompt` tiene que tener como mucho 4000 caracteres, pero tiene 4100"]


def test_a_copied_link_keeps_the_pages_lang():
    assert "url.searchParams.get('lang')" in LINK_JS and "url.searchParams.set('lang', lang)" in LINK_JS
    assert LINK_JS.index("get('lang')") < LINK_JS.index("url.search = ''")  # read before the query is emptied


def test_a_saved_pngs_words_come_in_every_language_for_the_browser_to_pick():
    assert in_every_language(COLOURS_NOTE) == {"en": COLOURS_NOTE, "es": tables()["es"][COLOURS_NOTE],
                                               "fr": tables()["fr"][COLOURS_NOTE]}
    caption = in_every_language(T("Save as PNG") + " {#some-view}")
    assert caption == {"en": "Save as PNG {#some-view}", "es": "Guardar como PNG {#some-view}",
                       "fr": "Enregistrer en PNG {#some-view}"}
    assert in_every_language(T(COLOURS_NOTE)) == in_every_language(COLOURS_NOTE)
    assert in_every_language(T(SAVE_PNG) + " \u00b7 " + T(COLOURS_NOTE))["fr"] == (
        "Enregistrer en PNG \u00b7 " + tables()["fr"][COLOURS_NOTE])  # every marker of a text
    assert in_every_language("A text no table has") == dict.fromkeys(("en", "es", "fr"), "A text no table has")
    with gr.Blocks() as blocks:
        save_png_button("some-view", title=COLOURS_NOTE, caption=["{#a}"])
    (js,) = [d["js"] for d in blocks.get_config_file()["dependencies"] if d.get("js")]
    options = json.loads(re.search(r"gpt2SaveView\((.*)\)$", js).group(1))
    assert options["title"]["fr"] == tables()["fr"][COLOURS_NOTE] and options["caption"] == [
        dict.fromkeys(("en", "es", "fr"), "{#a}")]
    assert "__i18n__" not in js  # Gradio translates no marker inside JS
    messages = json.loads(re.search(r"const MESSAGES = (\{.*\});", INSTALL).group(1))
    assert messages["es"][BROWSER_MESSAGES[0]] == "Todavía no hay nada que guardar: esta vista aún está vacía."
    assert set(messages) == {"es", "fr"} and all(set(m) == set(BROWSER_MESSAGES) for m in messages.values())


def test_the_html_download_is_written_in_the_pages_language():
    text = Coloured(["Say"], [TokenRow(" hi", 11, 3, 0.25), TokenRow(" there", 12, None, 0.5)])
    with speaking("fr"):
        page = coloured_html(title="T", caption=[], texts=[("", text)])
    assert "<html lang='fr'>" in page and "Enregistré depuis GPT-2 Playground" in page
    assert "title='probabilité 25,0\u202f%, rang 3'" in page and "rang inconnu" in page
    assert "title='le texte de départ'" in page and tables()["fr"][COLOURS_NOTE] in page
    assert "Survolez un token" in page and " hi" in page  # GPT-2's text stays as it is


@pytest.mark.parametrize("lang,vocab", [("en", "4,096"), ("es", "4096"), ("fr", "4\u202f096")])
def test_the_offline_classrooms_model_is_named_on_every_step_with_its_own_vocabulary(lang, vocab):
    """The bundled model splits words into more tokens than GPT-2 and writes like a play: the steps say so."""
    from demo.lesson_tab import BUNDLED_NOTE

    mini = SimpleNamespace(**{**vars(MODELS), "gpt2": SimpleNamespace(
        current=SimpleNamespace(name="mini-gpt2", tokenizer=[0] * 4096))})
    with speaking(lang):
        views = [StepView.of(n, mini, TAB_LABELS, {}) for n in range(1, len(STEPS) + 1)]
        gpt2 = StepView.of(1, MODELS, TAB_LABELS, {})
    note = tables().get(lang, {}).get(BUNDLED_NOTE, BUNDLED_NOTE).format(name="mini-gpt2", vocab=vocab)
    assert all(note in view.card for view in views), views[0].card
    assert all(view.why == "" for view in views), "a note on the model, not on a tab that cannot run"
    assert "Shakespeare" not in gpt2.card, "GPT-2 itself needs no note"

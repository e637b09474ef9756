"""Next word, Spot the machine, BERT vs GPT-2 and Inside in Spanish and French (demo/i18n.py): their handlers' messages
come out in the request's language, and their layout's texts are keys of both tables (the browser translates them)."""

from __future__ import annotations

import pytest

from demo import compare_tab, explore_tab, inside_tab, score_tab
from demo.i18n import speaking, tables
from demo.tokens import Coloured

pytest_plugins = ["fixtures_ui"]


def test_a_next_word_message_is_in_the_requests_language():
    start = explore_tab.Built("The cat")
    assert explore_tab.back(start)[2] == "Nothing to undo: only your own text is left."  # outside a request: English
    with speaking("es"):
        assert explore_tab.back(start)[2] == "Nada que deshacer: solo queda tu propio texto."
    with speaking("fr"):
        assert explore_tab.back(start)[2] == "Rien à annuler : il ne reste que votre propre texte."


def test_messages_with_values_keep_their_values_in_every_language():
    with speaking("es"):
        assert compare_tab.gpt2_read("") == "**GPT-2 leyó:** \\(el comienzo de un texto\\) **\u2026** (nada después del hueco)"
        assert inside_tab.no_bert_column("offline")[0] == "#### BERT: ambos lados (un cuadrado)"
        assert "BERT no está disponible: offline" in inside_tab.no_bert_column("offline")[3]
    with speaking("fr"):
        assert score_tab.counts_markdown(Coloured([], [])).startswith("**Tokens par couleur**\n\n| rang | tokens | part |")
        assert score_tab.counts_markdown(Coloured([], [])).endswith("0 tokens en tout.")


@pytest.mark.parametrize("text", [explore_tab.INTRO, score_tab.INTRO, compare_tab.INTRO, inside_tab.INTRO,
                                  "Sample", "Show attention", "Sentence with one blank", "Colour the tokens",
                                  explore_tab.AFTER_TITLE, compare_tab.BERT_TITLE, inside_tab.MAP_NOTES["gpt2"]])
def test_the_tabs_labels_are_keys_of_both_tables(text):
    for language in ("es", "fr"):
        assert text in tables()[language], language


def test_a_request_in_spanish_gets_spanish_and_an_api_client_english(app):
    """Over HTTP: the browser's Accept-Language (or the link's ?lang=) picks the language; gradio_client sends none."""
    from gradio_client import Client

    sentence = "The ___ barked at the mailman all morning."
    english = Client(app.url, verbose=False, analytics_enabled=False, download_files=False)
    spanish = Client(app.url, verbose=False, analytics_enabled=False, download_files=False,
                     headers={"Accept-Language": "es-ES,es;q=0.9"})
    assert "**GPT-2 read:**" in english.predict(sentence, api_name="/compare")[3]
    assert "**GPT-2 leyó:**" in spanish.predict(sentence, api_name="/compare")[3]
    assert spanish.predict("Hello", 1.0, 0, 1.0, api_name="/explore")[2].startswith("Candidatos de ")

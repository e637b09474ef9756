"""Build your own in Spanish and French, and gpt2_core's messages to page users in the page's language (demo/errors.py)."""

from __future__ import annotations

import pytest

from demo.errors import ENGINE_MESSAGES, in_page_language, user_facing_errors
from demo.i18n import speaking, tables
from gpt2_core.generate.settings import SamplingParams

ENGINE_CASES = [  # a setting out of range, and the words its message has in each language
    ({"temperature": 2.5}, "`temperature`", "2.5", "un número finito en [0, 2]", "un nombre fini dans [0, 2]"),
    ({"top_k": -5}, "`top_k`", "-5", "un número entero en [0, 50257]", "un nombre entier dans [0, 50257]"),
    ({"top_p": 0}, "`top_p`", "0", "un número finito en (0, 1]", "un nombre fini dans (0, 1]"),
    ({"max_new_tokens": 5000}, "`max_new_tokens`", "5000", "un número entero en [1, ", "un nombre entier dans [1, "),
    ({"seed": -7}, "`seed`", "-7", "-1 (aleatoria) o un número entero", "-1 (aléatoire) ou être un nombre entier"),
]


def engine_message(settings: dict) -> str:
    with pytest.raises(ValueError) as error:
        SamplingParams(**settings)
    return str(error.value)


@pytest.mark.parametrize(("settings", "name", "value", "es", "fr"), ENGINE_CASES)
def test_gpt2_cores_messages_come_out_in_the_pages_language_with_their_names_and_numbers(settings, name, value, es, fr):
    english = engine_message(settings)
    assert in_page_language(english) == english  # English, outside a request and for API clients
    with speaking("en"):
        assert in_page_language(english) == english
    for language, words, but in (("es", es, ", pero es "), ("fr", fr, ", mais vaut ")):
        with speaking(language):
            translated = in_page_language(english)
        assert translated.startswith(name + " ") and words in translated, translated
        assert translated.endswith(but + value), translated
        assert "has to be" not in translated


def test_user_facing_errors_shows_a_bad_setting_in_the_pages_language_and_an_unknown_message_in_english():
    import gradio as gr

    english = engine_message({"top_k": -5})
    for language, expected in (("en", english), ("es", "`top_k` tiene que ser un número entero en [0, 50257], pero es -5"),
                               ("fr", "`top_k` doit être un nombre entier dans [0, 50257], mais vaut -5")):
        with speaking(language), pytest.raises(gr.Error) as error, user_facing_errors():
            SamplingParams(top_k=-5)
        assert error.value.message == expected
    with speaking("es"), pytest.raises(gr.Error) as error, user_facing_errors():
        raise ValueError("a message <b>no template</b> has")
    assert error.value.message == "a message &lt;b&gt;no template&lt;/b&gt; has"  # English, escaped as before


@pytest.mark.parametrize("message", [
    "`target` has to be exactly one token of the vocabulary, but ' Paris is' is 2 tokens (' Paris' + ' is'): "
    "try its first token, ' Paris'",
    "`text` has to be 1 to 64 tokens long to show its attention, but has 65",
    "`sentence` has to contain exactly one blank, written ___ or [MASK], but has 2: 'a ___ b ___'",
    "`text` is too short to train on: it has 900 tokens, and needs at least 5140 for a context of 256 (about 20560 "
    "characters)",
])
def test_each_family_reads_back_its_fields_unchanged(message):
    for language in ("es", "fr"):
        with speaking(language):
            translated = in_page_language(message)
        assert translated != message
        for quoted in ("' Paris is'", "' Paris' + ' is'", "64", "65", "'a ___ b ___'", "5140", "20560"):
            assert (quoted in message) == (quoted in translated), (quoted, translated)


def test_every_engine_template_is_in_both_tables():
    for template in ENGINE_MESSAGES:
        assert template in tables()["es"] and template in tables()["fr"], template

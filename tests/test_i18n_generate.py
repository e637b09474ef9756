"""The Generate tab, the model panel and their helpers (tokens, knobs, precision notes) in Spanish and French.

What a request writes comes out in the request's language (`speaking` stands in for a request here); what the page
holds as built is a key of every table, one key per text: Gradio's page translates only the first marker of a text.
"""

from __future__ import annotations

import re

import gradio as gr

from demo.generate_tab import (
    EXPLAIN,
    MACHINE_NOTE,
    READY,
    SAMPLE_LABELS,
    STOPPED,
    TEXT_NOTE,
    TEXT_TITLE,
    WRITING,
    after_run,
    context_markdown,
    example_values,
    finished_state,
    make_example_note,
    stats_markdown,
)
from demo.i18n import speaking, tables
from demo.model_panel import FALLBACK_LINE, SWITCH_OFF_LINE, info_markdown, memory_table
from demo.models import AppModels, LazyFillMask, ModelHolder
from demo.save_view import coloured_html
from demo.tokens import COLORS, LEGEND, Coloured, TokenRow, colors, details_html
from gpt2_core import Sample

pytest_plugins = ["fixtures_ui"]


def sample(**fields) -> Sample:
    values = dict(text=" and so", token_ids=[1, 2], token_texts=[" and", " so"], token_probs=[0.5, 0.25],
                  token_ranks=[1, 3], prompt_tokens=3, prompt_truncated=False, seed=7, finish_reason="length",
                  time_to_first_token=0.1, tokens_per_second=12.0)
    return Sample(**{**values, **fields})


def test_the_run_state_stats_and_meter_come_out_in_the_requests_language():
    done = [sample()]
    assert finished_state(done).startswith("**Done** (reached the token limit).")  # no request: English
    with speaking("es"):
        assert finished_state(done).startswith("**Hecho** (llegó al límite de tokens).")
        assert "**Velocidad** 12,0 tokens/s" in stats_markdown(done, "`gpt2`")
        assert "**Semilla** `7`" in stats_markdown(done, "`gpt2`")
        assert context_markdown(3, 2, True, 1024).startswith("**Ventana de contexto**")
        assert "3 tokens del texto inicial + 2 nuevos = 5 de 1024" in context_markdown(3, 2, True, 1024)
        assert "**Aviso:**" in context_markdown(3, 2, True, 1024)
    with speaking("fr"):
        assert finished_state(done).startswith("**Terminé** (limite de tokens atteinte).")
        assert "1 token du texte de départ = 1 sur 1024" in context_markdown(1, 0, False, 1024)
        assert "**Sa fenêtre a glissé :**" in context_markdown(1000, 100, False, 1024)


def test_an_examples_note_names_the_changed_settings_as_their_sliders_do():
    from demo.examples import load_examples

    examples = load_examples()
    unicorn = next(e for e in examples.generate if e.id == "unicorn")
    prompt, max_new_tokens, temperature, *rest = example_values(unicorn)
    note = make_example_note(examples)
    for language, names in (("en", "(Temperature, Max new tokens)"), ("es", "(Temperatura, Máximo de tokens nuevos)"),
                            ("fr", "(Température, Nouveaux tokens max.)")):
        with speaking(language):
            said = note("unicorn", prompt, max_new_tokens + 1, temperature + 1, *rest)
        assert names in said, said  # in the page's order
    assert "modifi" not in note("unicorn", *example_values(unicorn)), "unchanged: the example's own note"


def test_stop_reads_the_run_state_in_the_pages_language():
    """Stop compares the run state the page sends back with "Writing…" in the same language."""
    with speaking("fr"):
        # Still writing when the run ended (also before its first token, the last run's text still shown): Stop
        state, button, stop = after_run(tables()["fr"][WRITING])
        assert state == tables()["fr"][STOPPED] and button.interactive and stop.interactive is False
        state, button, stop = after_run(finished_state([sample(finish_reason="length")]))
        assert state == gr.skip() and button.interactive  # a finished run keeps its "Done"
        assert stop.interactive is False  # nothing left to stop


def test_token_details_and_the_model_panel_come_out_in_the_requests_language(lm):
    row = TokenRow(" so", 2, 3, 0.25)
    with speaking("es"):
        assert "probabilidad <b>25,0\u00a0%</b>, rango <b>3</b>" in details_html(row, with_settings=True)
    with speaking("fr"):
        assert "aria-label='Détails du token'" in details_html(row, with_settings=True)
    models = AppModels(ModelHolder(lambda s: lm, "tiny"), LazyFillMask(lambda s: None, "bert"), choices=[])
    with speaking("es"):
        info = info_markdown(models)
        assert info.startswith("**Modelo** `") and "**dispositivo** cpu" in info and "fp32 (exacto" in info
        assert memory_table().startswith("Memoria estimada de los pesos") and "| Modelo | Parámetros |" in memory_table()
    with speaking("fr"):
        assert "**précision** fp32 (exact : les nombres de transformers)" in info_markdown(models)


def test_coloured_text_names_its_colours_in_the_requests_language_and_in_english_for_the_api():
    coloured = Coloured(prompt=["Once"], tokens=[TokenRow(" upon", 1, 1, 0.5), TokenRow(" a", 2, 50, 0.1),
                                                 TokenRow(" time", 3, 500, 0.01), TokenRow(" zebra", 4, 9000, 1e-5)])
    english = [name for _, name in coloured.segments()]
    assert english == [None, "top 10", "top 100", "top 1000", "rarer"]  # the API's categories (README)
    assert colors() == COLORS
    for language in ("es", "fr"):
        with speaking(language):
            names = [name for _, name in coloured.segments()]
            legend = colors()
            page = coloured_html(title="t", caption=[], texts=[("", coloured)])
        assert names[1:] == list(legend) and not set(legend) & set(COLORS), f"{language}: {names}"
        assert list(legend.values()) == list(COLORS.values())  # the same colours, named in the language
        assert all(f"</i>{name}</span>" in page for name in legend), f"{language}: the saved page's legend"


def test_the_layouts_texts_are_keys_of_both_tables():
    for text in ["Prompt", "Temperature (0 = greedy)", "Use last seed", READY, MACHINE_NOTE, *SAMPLE_LABELS,
                 TEXT_TITLE, TEXT_NOTE,  # the saved picture's, translated by save_view where they are keys
                 *EXPLAIN.values(), SWITCH_OFF_LINE, FALLBACK_LINE, "Switch model (for everyone using this app)"]:
        for language in ("es", "fr"):
            assert text in tables()[language], (language, text)
    # The note under the text is the legend's text in one piece, for the translators
    assert LEGEND in MACHINE_NOTE


def test_each_text_of_the_built_page_holds_at_most_one_translated_marker(tiny_checkpoint, tiny_bert):
    """Gradio's page replaces only the first `__i18n__` marker of a text: a second would show as raw JSON."""
    from demo import AppConfig, build_demo, start_models

    config = AppConfig(model=str(tiny_checkpoint), bert_model=str(tiny_bert), device="cpu", allow_model_switch=True)
    models = start_models(config)
    try:
        demo = build_demo(config, models=models)
        crowded = []
        for component in demo.get_config_file()["components"]:
            for prop, value in component.get("props", {}).items():
                texts = [value] if isinstance(value, str) else [
                    label for item in value if isinstance(item, list | tuple) for label in item[:1]
                    if isinstance(label, str)] if isinstance(value, list) else []
                crowded += [f"{component.get('type')}#{component['props'].get('elem_id')}.{prop}" for text in texts
                            if len(re.findall("__i18n__", text)) > 1]
        assert not crowded, crowded
    finally:
        demo.close()
        models.close()

"""The Layers and Scale tabs, their pictures and the "not available here" line in the class's language
(demo/i18n.py): labels are keys of every table, and what handlers write comes out in Spanish and French."""

from __future__ import annotations

import json
import re

import pytest

from demo import lens_pictures, scale_tab
from demo.i18n import LOCALES, speaking, tables
from demo.layers_tab import COMMIT_HELP, INTRO, summary_text
from demo.models import ModelHolder
from demo.scale_tab import Column, ready_line, render_cards
from demo.unavailable import NOT_AVAILABLE, _local_folder_missing, not_available
from gpt2_core import ModelUnavailableError
from gpt2_core.explain.lens import LensCell, LogitLens
from gpt2_core.memory import PRECISION_LABELS
from gpt2_core.remote.model import REMOTE_UNAVAILABLE
from gpt2_core.scale import Planned
from gpt2_core.zerogpu import ZEROGPU_UNAVAILABLE

MARKER = re.compile(r'__i18n__(\{"__type__": "translation_metadata", "key": "(?:[^"\\]|\\.)*"\})')


def keys_of(text: object) -> list[str]:
    """The T() keys inside a text built for the browser."""
    return [json.loads(m.group(1))["key"] for m in MARKER.finditer(str(text))]


def in_every_table(text: str) -> bool:
    return all(text in table for table in tables().values())


def a_lens() -> LogitLens:
    """Two tokens read by the embeddings and 2 layers: " Paris" becomes the top guess at layer 2."""
    def cell(rank: int) -> LensCell:
        return LensCell([(" Paris", 6342, 0.6), (" London", 3576, 0.1)], final_rank=rank)

    return LogitLens(tokens=["The", " city"], token_ids=[464, 1748], layers=["embeddings", "layer 1", "layer 2"],
                     cells=[[cell(1200), cell(1200)], [cell(7), cell(7)], [cell(1), cell(1)]], committed=[2, 2])


def test_the_tabs_labels_and_help_are_keys_of_both_tables():
    for marked in (INTRO, COMMIT_HELP, scale_tab.INTRO):
        (key,) = keys_of(marked)
        assert in_every_table(key)
    for label in ("Read the layers", "Let GPT-2 continue", "When GPT-2 committed to each word", "Run every size",
                  "Seed (the same for every size)"):
        assert in_every_table(label), label
    for name in ("unavailable", "models", "layers_tab", "lens_pictures", "scale_tab"):
        assert (LOCALES / f"{name}.json").is_file()


def test_the_watched_word_and_the_grid_are_written_in_the_pages_language():
    lens = a_lens()
    english = lens_pictures.rank_summary(lens, 1)
    assert "1,200th at the embeddings" in english and "the top guess from layer 2 on" in english
    with speaking("es"):
        assert summary_text(lens, 1).startswith("**Sigue una palabra:**")
        spanish = lens_pictures.rank_summary(lens, 1)
        grid = lens_pictures.grid_html(lens)
        chart = lens_pictures.rank_chart_svg(lens, 1)
    assert "(la respuesta final de GPT-2 aquí)" in spanish and "1200.º en los embeddings" in spanish
    assert "desde la capa 2" in spanish
    assert "capa 2 (salida)" in grid and "siguiente en el texto" in grid and "Léela de abajo arriba" in grid
    assert "capa (emb. = los embeddings)" in chart and "1.º (arriba)" in chart
    with speaking("fr"):
        french = lens_pictures.rank_summary(lens, 1)
        details = lens_pictures.cell_html(lens, 2, 1)
        legend = lens_pictures.commit_colors()
        segments = lens_pictures.commitment_segments(lens)
    assert "1\u202f200e aux plongements" in french and "à partir de la couche 2" in french
    assert "couche 2 (sortie)" in details and "probabilité à cette couche" in details
    assert list(legend) == ["plongements", "premières couches", "couches du milieu", "dernières couches",
                            "dernière couche seulement"]
    assert {category for _, category in segments} <= set(legend) | {None}


def test_scale_states_and_cards_are_written_in_the_pages_language():
    columns = [Column(Planned("gpt2", 124_000_000, 500_000_000, "/x", None), state="done", memory_bytes=10**8,
                      tokens_per_s=12.5, bits_per_token=3.25),
               Column(Planned("gpt2-xl", 1_558_000_000, 6 * 10**9, None, "not on this machine"), state="skipped")]
    assert ready_line(columns).startswith("**Ready.** Sizes here: 1 of 2 (gpt2); the others")
    with speaking("es"):
        assert ready_line(columns) == "**Listo.** Tamaños aquí: 1 de 2 (gpt2); los demás aparecen abajo con el motivo."
        cards = render_cards(columns)
    assert "No se ejecutan aquí" in cards and "bits por token" in cards and ">hecho<" in cards
    assert "scale-card scale-done" in cards, "the card's class stays English"
    with speaking("fr"):
        assert "Non exécutées ici" in render_cards(columns)


def test_why_a_size_is_not_run_is_written_in_the_pages_language_and_the_api_keeps_english(monkeypatch,
                                                                                          tiny_checkpoint):
    """gpt2_core/scale.py writes its reasons in English (the API's "note"); the page's cards say them in its
    language, the command, sizes and numbers as they were."""
    from gpt2_core import scale

    here = scale.locate
    monkeypatch.setattr(scale, "locate", lambda source: here(source) if source.startswith("/") else None)
    fetch, unknown, folder = scale.plan(["distilgpt2", "someone/gpt2-nano", "/no/such/folder"], budget_bytes=10**10,
                                        precision="int8-cpu")
    (too_big,) = scale.plan([str(tiny_checkpoint)], budget_bytes=1000, precision="int8-cpu")
    assert fetch.skip == ("not on this machine: `python -m gpt2_core download distilgpt2` fetches it; it would take "
                          "85 MB of memory in int8 (fast on CPU)"), "the Python API stays English"
    columns = [Column(p, state="skipped", note=p.skip) for p in (fetch, unknown, folder, too_big)]
    english = render_cards(columns)
    assert "fetches it; it would take 85 MB of memory in int8 (fast on CPU)" in english
    assert "over this host&#x27;s budget of 0 MB" in english
    assert [c.figures()["note"] for c in columns] == [p.skip for p in (fetch, unknown, folder, too_big)]
    with speaking("es"):
        spanish = render_cards(columns)
    assert ("<b>distilgpt2</b> (82 M de parámetros): no está en esta máquina: <code>python -m gpt2_core download "
            "distilgpt2</code> lo descarga; ocuparía 85 MB de memoria en int8 (rápido en CPU)") in spanish
    assert ("no está en esta máquina: <code>python -m gpt2_core download someone/gpt2-nano</code> lo descarga</li>"
            in spanish)
    assert "(tamaño desconocido): no está en esta máquina</li>" in spanish
    assert re.search(r"necesita \d+ MB en int8 \(rápido en CPU\), más que el presupuesto de 0 MB de este servidor "
                     r"para esta pestaña", spanish)
    assert "--scale-memory 0.1 lo permitiría" in spanish
    with speaking("fr"):
        french = render_cards(columns)
    assert "absent de cette machine : <code>python -m gpt2_core download distilgpt2</code> le télécharge ; il " \
           "occuperait 85 Mo de mémoire en int8 (rapide sur CPU)" in french
    assert re.search(r"demande \d+ Mo en int8 \(rapide sur CPU\)", french)
    assert "budget de 0 Mo" in french and "--scale-memory 0.1 le permettrait" in french  # a command keeps its 0.1
    for text in (spanish, french):
        assert "not on this machine" not in text and "fetches" not in text and "needs" not in text, text
    for label in PRECISION_LABELS.values():  # the precision a reason names
        assert in_every_table(label), label


def test_not_available_gives_the_browser_keys_and_the_english_page_reads_as_before():
    for reason in (*REMOTE_UNAVAILABLE.values(), *ZEROGPU_UNAVAILABLE.values()):  # gpt2_core's fixed reasons
        assert in_every_table(reason), reason
    reason = ZEROGPU_UNAVAILABLE[next(iter(ZEROGPU_UNAVAILABLE))]
    line = not_available(reason, "on ZeroGPU")
    assert line == f"**Not available on ZeroGPU:** {reason}"  # what tests/test_zerogpu.py reads in the page's config
    assert all(in_every_table(key) for key in NOT_AVAILABLE.values())
    with speaking("es"):  # written per request, no marker for the browser: the page translated only the first
        spanish = not_available(reason, "on ZeroGPU")
    assert spanish == f"**No disponible en ZeroGPU:** {tables()['es'][reason]}" and not keys_of(spanish)
    other = not_available("the server said *no*", "with this model server")
    assert other == r"**Not available with this model server:** the server said \*no\*"


class Closable:
    def close(self) -> None:
        pass


def test_berts_and_the_models_messages_come_out_in_spanish_and_french(tmp_path):
    with speaking("es"):
        missing = _local_folder_missing(str(tmp_path / "no-bert"))
    assert missing is not None and "no existe" in missing.problem and missing.fix.startswith("Solución:")
    assert "`python -m gpt2_core download" in missing.fix, "commands stay as they are"

    def fails(source: str):
        raise ModelUnavailableError(f"{source} is missing")

    holder = ModelHolder(lambda source: fails(source) if source == "gpt2" else Closable(), "gpt2", fallback="mini")
    assert holder.notice.startswith("`gpt2` could not be loaded, so the bundled `mini` serves instead.")
    with speaking("fr"):
        assert holder.notice == ("`gpt2` n'a pas pu être chargé : le modèle fourni `mini` le remplace. "
                                 "Raison : gpt2 is missing")
    holder.retire()
    with speaking("es"), pytest.raises(ModelUnavailableError, match="no hay ningún modelo cargado"):
        with holder.use():
            pass

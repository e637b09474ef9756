"""Save a view for lesson notes: any chart, attention map or coloured text as a PNG, and coloured text as HTML.

PNG: a "Save as PNG" button beside the view (elem_id `<view>-save-png`) asks the browser to paint the view as the page
shows it, under a title and a caption and above a note and the date (save_view.js, installed once by the page script;
nothing runs on the server). The caption's templates read the page: "{#selector}" is an element's text, or an input's
value, so the picture names the model and settings the view was made with:

    save_png_button("score-histogram", caption=["{#score-counts p:last-of-type}"])   # right under the view

The picture's words are in the page's language: `save_png_button` translates its title, captions and note at start-up
for every language of the tables (a text that is a key of the tables, or T() pieces joined with other text), and the
painting picks the one of the page's <html lang>; save_view.js's own messages come from BROWSER_MESSAGES' translations.

HTML: `coloured_html` writes coloured text as one self-contained file (inline CSS, no links out), each token with its
probability and rank as a tooltip, the legend, the model and the settings.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
from gradio.i18n import I18nData

from demo.exports import app_stamp
from demo.i18n import LANGUAGES, SOURCE, T, language, number, tables, tr
from demo.tokens import COLORS, Coloured, bucket, line_breaks_shown
from gpt2_core.backend import ModelDescription

SAVE_PNG = "Save as PNG"  # i18n: key
COLOURS_NOTE = ("Colour = the token's rank under GPT-2 at its place: green, among its 10 likeliest next tokens; "
                "yellow, its 100; red, its 1000; purple, rarer.")  # i18n: key
# What save_view.js says on the page, translated there from the table INSTALL carries (its {why} filled there)
BROWSER_MESSAGES = ("Nothing to save yet: this view is still empty.",  # i18n: key
                    "The picture could not be saved here ({why}).",  # i18n: key
                    "the browser made no picture")  # i18n: key
# A T() marker inside a text: Gradio's __i18n__ and its JSON (as tests/test_i18n.py reads it)
MARKER = re.compile(r'__i18n__(\{"__type__": "translation_metadata", "key": "(?:[^"\\]|\\.)*"\})')


def in_every_language(text: str | I18nData) -> dict[str, str]:
    """`text` for each language of the page: its T() markers translated (all of them), or the whole text if it is a
    key of the tables; else as it is."""
    text = str(text)  # T("...") alone is a marker too

    def translated(lang: str) -> str:
        table = tables().get(lang, {})
        if MARKER.search(text):
            return MARKER.sub(lambda marker: table.get(key := json.loads(marker.group(1))["key"], key), text)
        return table.get(text, text)

    return {lang: translated(lang) for lang in LANGUAGES}


def browser_messages() -> dict[str, dict[str, str]]:
    """language -> {English: translation} of save_view.js's messages (English has none: the script's own text)."""
    return {lang: {m: tables()[lang].get(m, m) for m in BROWSER_MESSAGES} for lang in LANGUAGES if lang != SOURCE}


# The script the page runs once (app.py's page script), with its messages' translations
INSTALL = Path(__file__).with_name("save_view.js").read_text(encoding="utf-8").replace(
    "BROWSER_MESSAGES", json.dumps(browser_messages(), ensure_ascii=False))
CSS = """
.column > .save-view { align-self: flex-start; width: auto !important; flex-grow: 0 !important; }  /* under its
   view, as wide and as high as its words (not stretched where a row's columns are equal in height) */
.save-view-note { position: fixed; bottom: 16px; left: 50%; transform: translateX(-50%); z-index: 50;
  background: #1f2937; color: #ffffff; padding: 8px 14px; border-radius: 8px; font-size: 16px; }
"""


def save_png_button(view: str, *, file: str | None = None, title: str | I18nData = "",
                    caption: Sequence[str | I18nData] = (), note: str | I18nData = "", needs: str = "",
                    whole: bool = False, **button) -> gr.Button:
    """A "Save as PNG" button for the element `view` (an elem_id), placed where it is called.

    `title` replaces the view's own label; `caption` lines are templates over the page ("{#selector}"); `note` goes
    under the picture; `needs` is a selector the view must contain to have something to save (else the page says
    "Nothing to save yet"); `whole` paints a view that scrolls sideways (the layers grid on a phone) laid out in
    full, every column, while it is painted. Title, captions and note are English texts of the tables, or T() pieces
    with other text (`T("Sentence:") + " {#inside-text textarea}"`): the picture has them in the page's language."""
    options = dict(view=view, file=file or f"gpt2-playground-{view}.png", title=in_every_language(title),
                   caption=[in_every_language(line) for line in caption], note=in_every_language(note), needs=needs,
                   whole=whole)
    save = gr.Button(T(SAVE_PNG), size="sm", elem_id=f"{view}-save-png", elem_classes="save-view", **button)
    save.click(None, js=f"() => window.gpt2SaveView({json.dumps(options)})", api_visibility="private")
    return save


PAGE_CSS = """
body { font-family: "Source Sans Pro", ui-sans-serif, system-ui, sans-serif; max-width: 60rem; margin: 2rem auto;
  padding: 0 1rem; color: #111827; line-height: 1.5; }
h1 { font-size: 1.4rem; margin: 0 0 .25rem; }
.caption, .note, footer { color: #4b5563; }
.caption { margin: 0; }
h2 { font-size: 1.05rem; margin: 1.25rem 0 .25rem; }
.text { font-size: 1.2rem; white-space: pre-wrap; overflow-wrap: anywhere; }
.prompt { color: #4b5563; }
.t { cursor: help; }
.legend span { display: inline-block; margin-right: 1rem; }
.swatch { display: inline-block; width: .9em; height: .9em; margin-right: .3em; vertical-align: -.1em;
  border: 1px solid #9ca3af; }
footer { margin-top: 1.5rem; font-size: .9rem; }
"""


def model_line(d: ModelDescription) -> str:
    """The model as a saved view names it: "GPT-2 gpt2 (fp32)"."""
    return f"GPT-2 {d.name} ({d.precision or tr('precision not reported')})"


def css_class(bucket_name: str) -> str:
    return bucket_name.replace(" ", "-")  # "top 10" -> "top-10"


def coloured_html(*, title: str, caption: Sequence[str], texts: Sequence[tuple[str, Coloured]], note: str = "",
                  footer: str = "") -> str:
    """Coloured text as a self-contained HTML page: `texts` are (heading, text) pairs, each token coloured by its
    rank's bucket with "probability 12.3%, rank 4" as its tooltip; the prompt, if any, dimmed. The footer ends with
    the app's name and version and the date. Written in the request's language (the caller translates its own texts);
    GPT-2's text stays as it is, its line breaks marked ⏎ as on the page (`line_breaks_shown`)."""
    sections = []
    for heading, coloured in texts:
        prompt = "".join(coloured.prompt)
        pieces: list[Piece] = [Piece(prompt, None, tr("the prompt"), dimmed=True)] if prompt else []
        for t in coloured.tokens:
            rank = tr("rank {rank}", rank=number(t.rank)) if t.rank is not None else tr("rank not known")
            tip = tr("probability {probability}, {rank}", probability=number(t.prob, ".1%"), rank=rank)
            pieces.append(Piece(line_breaks_shown(t.text), bucket(t.rank), tip))
        sections.append((heading, pieces))
    note = f"{note or tr(COLOURS_NOTE)} " + tr("Hover over a token for its probability and rank.")
    return html_page(title=title, caption=caption, legend=COLORS, sections=sections, note=note, footer=footer)


@dataclass
class Piece:
    """A piece of a saved coloured text: its text, its colour's English name (a key of the legend; None: uncoloured),
    its tooltip."""

    text: str
    colour: str | None
    tip: str
    dimmed: bool = False


def html_page(*, title: str, caption: Sequence[str], legend: dict[str, str],
              sections: Sequence[tuple[str, Sequence[Piece]]], note: str, footer: str = "") -> str:
    """A coloured text as one self-contained page: the title, the caption's lines, the legend (English name ->
    colour; shown translated), each section's pieces coloured as the page shows them, the note, the footer and the
    stamp (the app, its version, the date)."""
    stamp = app_stamp()
    saved = tr("Saved from {app} {version} on {date}.", app=stamp["name"], version=stamp["version"],
               date=stamp["exported_at"][:10])
    footer = f"{footer} {saved}".strip()
    colours = "".join(f".{css_class(name)} {{ background: {colour}80; }}\n" for name, colour in legend.items())
    swatches = "".join(f"<span><i class='swatch {css_class(name)}'></i>{html.escape(tr(name))}</span>"
                       for name in legend)
    shown = []
    for heading, pieces in sections:
        spans = []
        for piece in pieces:
            cls = "prompt" if piece.dimmed else f"t {css_class(piece.colour)}" if piece.colour else "t"
            spans.append(f"<span class='{cls}' title='{html.escape(piece.tip, quote=True)}'>"  # i18n: not shown (markup)
                         f"{html.escape(piece.text)}</span>")
        head = f"<h2>{html.escape(heading)}</h2>" if heading else ""
        shown.append(f"<section>{head}<div class='text'>{''.join(spans)}</div></section>")  # i18n: not shown (markup)
    lines = "".join(f"<p class='caption'>{html.escape(line)}</p>" for line in caption)
    return (f"<!DOCTYPE html>\n<html lang='{language()}'>\n<head>\n<meta charset='utf-8'>\n"  # i18n: not shown (markup)
            f"<title>{html.escape(title)}</title>\n"
            f"<style>\n{PAGE_CSS}{colours}</style>\n</head>\n<body>\n<h1>{html.escape(title)}</h1>\n{lines}\n"
            f"<p class='legend'>{swatches}</p>\n{''.join(shown)}\n"
            f"<p class='note'>{html.escape(note)}</p>\n<footer>{html.escape(footer)}</footer>\n</body>\n</html>\n")

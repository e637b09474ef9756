"""Save a view for lesson notes: any chart, attention map or coloured text as a PNG, and coloured text as HTML.

PNG: a "Save as PNG" button beside the view (elem_id `<view>-save-png`) asks the browser to paint the view as the page
shows it, under a title and a caption and above a note and the date (save_view.js, installed once by the page script;
nothing runs on the server). The caption's templates read the page: "{#selector}" is an element's text, or an input's
value, so the picture names the model and settings the view was made with:

    save_png_button("score-histogram", caption=["{#score-counts p:last-of-type}"])   # right under the view

HTML: `coloured_html` writes coloured text as one self-contained file (inline CSS, no links out), each token with its
probability and rank as a tooltip, the legend, the model and the settings.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from pathlib import Path

import gradio as gr

from demo.exports import app_stamp
from demo.tokens import BUCKETS, COLORS, Coloured, bucket
from gpt2_core.backend import ModelDescription

SAVE_PNG = "Save as PNG"
INSTALL = Path(__file__).with_name("save_view.js").read_text(encoding="utf-8")  # the page script runs it once
COLOURS_NOTE = ("Colour = the token's rank under GPT-2 at its place: green, among its 10 likeliest next tokens; "
                "yellow, its 100; red, its 1000; purple, rarer.")
CSS = """
.column > .save-view { align-self: flex-start; width: auto !important; }  /* under its view, as wide as its words */
.save-view-note { position: fixed; bottom: 16px; left: 50%; transform: translateX(-50%); z-index: 50;
  background: #1f2937; color: #ffffff; padding: 8px 14px; border-radius: 8px; font-size: 16px; }
"""


def save_png_button(view: str, *, file: str | None = None, title: str = "", caption: Sequence[str] = (),
                    note: str = "", needs: str = "", **button) -> gr.Button:
    """A "Save as PNG" button for the element `view` (an elem_id), placed where it is called.

    `title` replaces the view's own label; `caption` lines are templates over the page ("{#selector}"); `note` goes
    under the picture; `needs` is a selector the view must contain to have something to save (else the page says
    "Nothing to save yet")."""
    options = dict(view=view, file=file or f"gpt2-playground-{view}.png", title=title, caption=list(caption), note=note,
                   needs=needs)
    save = gr.Button(SAVE_PNG, size="sm", elem_id=f"{view}-save-png", elem_classes="save-view", **button)
    save.click(None, js=f"() => window.gpt2SaveView({json.dumps(options)})", api_visibility="private")
    return save


STYLE = """
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
    return f"GPT-2 {d.name} ({d.precision or 'precision not reported'})"


def css_class(bucket_name: str) -> str:
    return bucket_name.replace(" ", "-")  # "top 10" -> "top-10"


def coloured_html(*, title: str, caption: Sequence[str], texts: Sequence[tuple[str, Coloured]], note: str = "",
                  footer: str = "") -> str:
    """Coloured text as a self-contained HTML page: `texts` are (heading, text) pairs, each token coloured by its
    rank's bucket with "probability 12.3%, rank 4" as its tooltip; the prompt, if any, dimmed. The footer ends with
    the app's name and version and the date."""
    stamp = app_stamp()
    footer = f"{footer} Saved from {stamp['name']} {stamp['version']} on {stamp['exported_at'][:10]}.".strip()
    colours = "".join(f".{css_class(name)} {{ background: {COLORS[name]}80; }}\n" for _, name in BUCKETS)  # as the page
    swatches = "".join(f"<span><i class='swatch {css_class(name)}'></i>{html.escape(name)}</span>" for _, name in BUCKETS)
    sections = []
    for heading, coloured in texts:
        prompt = "".join(coloured.prompt)
        spans = [f"<span class='prompt' title='the prompt'>{html.escape(prompt)}</span>"] if prompt else []
        for t in coloured.tokens:
            name = bucket(t.rank)
            cls = f"t {css_class(name)}" if name else "t"
            rank = f"rank {t.rank:,}" if t.rank is not None else "rank not known"
            spans.append(f"<span class='{cls}' title='probability {t.prob:.1%}, {rank}'>{html.escape(t.text)}</span>")
        head = f"<h2>{html.escape(heading)}</h2>" if heading else ""
        sections.append(f"<section>{head}<div class='text'>{''.join(spans)}</div></section>")
    lines = "".join(f"<p class='caption'>{html.escape(line)}</p>" for line in caption)
    return (f"<!DOCTYPE html>\n<html lang='en'>\n<head>\n<meta charset='utf-8'>\n<title>{html.escape(title)}</title>\n"
            f"<style>\n{STYLE}{colours}</style>\n</head>\n<body>\n<h1>{html.escape(title)}</h1>\n{lines}\n"
            f"<p class='legend'>{swatches}</p>\n{''.join(sections)}\n"
            f"<p class='note'>{html.escape(note or COLOURS_NOTE)} Hover over a token for its probability and rank.</p>"
            f"\n<footer>{html.escape(footer)}</footer>\n</body>\n</html>\n")

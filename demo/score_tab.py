"""The Spot the machine tab (after GLTR, Gehrmann, Strobelt and Rush 2019): paste a text, see how GPT-2 ranks each token.

Text sampled from GPT-2 with top-k is mostly its own likeliest tokens (green); people pick rarer words more often.
The tab says plainly that this is a hint, not a verdict. `/score(text)` returns the coloured tokens as a
gr.HighlightedText value first (the tokens joined give the text), then the bucket counts and the histogram.
"""

from __future__ import annotations

import re

import gradio as gr
import pandas as pd

from demo.errors import user_facing_errors
from demo.examples import Examples
from demo.exports import Exports
from demo.i18n import T, number, tr
from demo.links import TabParts, copy_link
from demo.models import AppModels
from demo.precision_notes import source_note
from demo.save_view import COLOURS_NOTE, coloured_html, model_line, save_png_button
from demo.tokens import (
    BUCKETS,
    DETAILS_CLASS,
    Coloured,
    TokenRow,
    bucket,
    details_html,
    keep_token_in_view,
    name_colours,
    token_view,
)
from demo.workspace import Workspace
from gpt2_core import DEFAULTS
from gpt2_core.explain.distribution import Candidate

ALTERNATIVES = 8
SAMPLE_PROMPT_WORDS = 8  # a machine sample continues a human paragraph's first words, for a fair comparison
SAMPLE_TOKENS = 100
BINS = 10
TITLE = "Each token coloured by its rank under GPT-2"  # i18n: key
HINT = "A hint, not a verdict: short or famous texts look predictable, and high-temperature samples look human."  # i18n: key
NOTHING = "**Nothing to colour yet:** paste or type a text in the box, or use a button under it."  # i18n: key
MODEL_LINE = "{#score-counts p:last-of-type}"  # "n tokens in all. Scored by `gpt2`.": the saved pictures' caption

INTRO = """\
### Spot the machine: how predictable is each word?
Paste any text. GPT-2 reads it token by token and each token is coloured by its **rank** among GPT-2's guesses for \
that place: green = among its 10 likeliest, yellow = 100, red = 1000, purple = rarer. Text that GPT-2 *writes* \
(with top-k sampling) is mostly green; people choose surprising words more often. Try both buttons and compare.

**A hint, not a verdict:** short texts, lists and famous quotations look "machine" (they are predictable), and \
machine text sampled at a high temperature or without top-k looks human. Never accuse anyone from this picture.
"""  # i18n: key


def score_tab(models: AppModels, examples: Examples, *, workspace: Workspace) -> TabParts:
    exports = Exports(workspace)
    with gr.Blocks() as tab:
        gr.Markdown(T(INTRO))
        with gr.Row(equal_height=False):
            with gr.Column(scale=3):
                text = gr.Textbox(label=T("Text to check"), lines=5, max_lines=12, elem_id="score-text",
                                  placeholder=T("Paste a paragraph, or use a button below."))
                with gr.Row():
                    score_button = gr.Button(T("Colour the tokens"), variant="primary", elem_id="score-button")
                    machine_button = gr.Button(T("Fill with a GPT-2 sample"), elem_id="score-fill-machine")
                    human_button = gr.Button(T("Fill with a human paragraph"), elem_id="score-fill-human")
                source = gr.Markdown(elem_id="score-source")
                copy_link("score", {"text": text})
                output = token_view(T(TITLE), "score-output")
                with gr.Row():
                    save_png_button("score-output", file="gpt2-spot-the-machine.png", needs=".token",
                                    caption=[MODEL_LINE], note=f"{COLOURS_NOTE} {HINT}")
                    save_html = gr.DownloadButton(T("Download .html (coloured)"), size="sm", interactive=False,
                                                  elem_id="score-save-html")
                details = gr.HTML(elem_id="score-details", elem_classes=[DETAILS_CLASS])
            with gr.Column(scale=2):
                counts = gr.Markdown(elem_id="score-counts")
                histogram = gr.BarPlot(x="probability", y="tokens", label=T("How likely GPT-2 found each token"),
                                       x_title=T("GPT-2's probability of the token"), y_title=T("tokens"),
                                       sort="x", x_label_angle=-45, elem_id="score-histogram")
                save_png_button("score-histogram", file="gpt2-spot-the-machine-histogram.png", needs=".vega-embed",
                                caption=[MODEL_LINE])
        scored = gr.State(None)
        next_human = gr.State(0)  # this visitor's next human paragraph

        # The API's tokens are the text's own pieces (they join to it); the page then draws its line breaks as ⏎
        marked = dict(fn=marked_segments, inputs=scored, outputs=output, api_visibility="private", queue=False,
                      show_progress="hidden")
        score_button.click(make_score(models), inputs=text, outputs=[output, counts, histogram, scored],
                           api_name="score", concurrency_limit=2, preprocess=False).success(**marked)
        machine_button.click(make_machine_sample(models, examples), inputs=None, outputs=[text, source],
                             api_visibility="private", concurrency_limit=4).then(
            make_score(models), inputs=text, outputs=[output, counts, histogram, scored], api_visibility="private",
            concurrency_limit=2).success(**marked)
        human_button.click(make_human(examples), inputs=next_human, outputs=[text, source, next_human],
                           api_visibility="private", queue=False).then(
            make_score(models), inputs=text, outputs=[output, counts, histogram, scored], api_visibility="private",
            concurrency_limit=2).success(**marked)
        name_colours(tab, [output])
        scored.change(lambda: "", outputs=details, api_visibility="private", queue=False)  # a new text: old details go
        scored.change(make_save_html(models, exports), inputs=scored, outputs=save_html, api_visibility="private",
                      show_progress="hidden")  # after the colours: the button is not dimmed while they are read
        output.select(show_details, inputs=scored, outputs=details, api_visibility="private", queue=False).then(
            None, js=keep_token_in_view("score-details"), api_visibility="private")
    return TabParts(tab, {"text": text}, fillers=[machine_button, human_button])


def make_score(models: AppModels):
    def score(text: str, request: gr.Request):
        """Every token of `text` coloured by its rank under GPT-2, the counts per colour, a histogram of probabilities."""
        if isinstance(text, str) and not text.strip():  # the page says so where the counts go (API: no tokens)
            return [], tr(NOTHING), None, None
        with user_facing_errors(), models.use(request.session_hash) as lm:
            scores = lm.score_text(text, top=ALTERNATIVES)
            source = source_note(lm.describe())
            alternatives = [[_candidate(a) for a in s.alternatives] for s in scores]
        coloured = Coloured([], [TokenRow(s.text, s.token_id, s.rank, s.prob, alts)
                                 for s, alts in zip(scores, alternatives)])
        counts = counts_markdown(coloured) + "  \n" + tr("Scored by {source}.", source=source)
        return coloured.segments(marked=False), counts, histogram(scores), coloured

    return score


def marked_segments(coloured: Coloured | None):
    """The scored text as the page shows it: its line breaks drawn as ⏎, each a token to see and click."""
    return coloured.segments() if coloured else gr.skip()


def make_save_html(models: AppModels, exports: Exports):
    def save_html(coloured: Coloured | None, request: gr.Request) -> gr.DownloadButton:
        """The scored text as a self-contained coloured web page, for the Download .html button."""
        lm = models.serving(request.session_hash)
        if not coloured or not coloured.tokens or lm is None:
            return gr.DownloadButton(value=None, interactive=False)
        caption = tr("Scored by {model} \u00b7 {n} tokens", model=model_line(lm.describe()), n=len(coloured.tokens))
        page = coloured_html(title=tr("Spot the machine: each token coloured by its rank under GPT-2"), caption=[caption],
                             texts=[("", coloured)], note=f"{tr(COLOURS_NOTE)} {tr(HINT)}")
        return gr.DownloadButton(value=exports.write("gpt2-spot-the-machine.html", page), interactive=True)

    return save_html


def _candidate(alternative: tuple[str, int, float]) -> Candidate:
    token_text, token_id, prob = alternative
    return Candidate(token_text, token_id, prob, prob)  # no settings: a text is scored, not sampled


def counts_markdown(coloured: Coloured) -> str:
    counts = coloured.counts()
    total = max(1, len(coloured.tokens))
    lines = [f"| {tr(name)} | {counts[name]} | {number(counts[name] / total, '.0%')} |" for _, name in BUCKETS]
    n = len(coloured.tokens)
    in_all = tr("1 token in all.") if n == 1 else tr("{n} tokens in all.", n=n)
    # the colours' names as the coloured text's legend shows them (demo/tokens.py's colors)
    return (tr("**Tokens per colour**") + "\n\n| " + tr("rank") + " | " + tr("tokens") + " | " + tr("share")
            + " |\n|---|---:|---:|\n" + "\n".join(lines) + "\n\n" + in_all)


def histogram(scores) -> pd.DataFrame:
    edges = [i / BINS for i in range(BINS + 1)]
    labels = [f"{number(lo, '.0%')}\u2013{number(hi, '.0%')}" for lo, hi in zip(edges, edges[1:])]
    counts = [0] * BINS
    for s in scores:
        counts[min(BINS - 1, int(s.prob * BINS))] += 1
    return pd.DataFrame({"probability": labels, "tokens": counts})


def opening_of(paragraph: str) -> str:
    """The words a machine sample continues: the paragraph's first sentence, so that GPT-2 starts a sentence of its
    own (cut after 8 words, "There were four of us—George, and William Samuel", the sample began with a lone comma),
    or its first SAMPLE_PROMPT_WORDS words where that sentence is longer than three times as many. A sentence ends at
    a word ending in . ! or ? (a closing quote after it allowed) from the 4th word on, so not at an initial ("K."),
    though still at an abbreviation further on ("St."): the paragraphs in assets/examples.json have none."""
    words = paragraph.split()
    for n, word in enumerate(words[:3 * SAMPLE_PROMPT_WORDS], start=1):
        if n >= 4 and re.search(r"[.!?][\"'\u201d\u2019)]*$", word):
            return " ".join(words[:n])
    return " ".join(words[:SAMPLE_PROMPT_WORDS])


def make_machine_sample(models: AppModels, examples: Examples):
    opening = opening_of(examples.human[0].text)

    def machine_sample(request: gr.Request):
        """A fresh GPT-2 continuation of a human paragraph's first sentence (default settings, a random seed)."""
        with user_facing_errors(), models.use(request.session_hash) as lm:
            (sample,) = lm.generate(opening, max_new_tokens=SAMPLE_TOKENS, temperature=DEFAULTS.temperature,
                                    top_k=DEFAULTS.top_k)
            name = lm.name
        return (sample.text.strip(),
                tr("**Machine-generated** by `{name}` (temperature {temperature}, top-k {top_k}, seed {seed}), "
                   "continuing \u201c{opening}\u201d.", name=name, temperature=DEFAULTS.temperature, top_k=DEFAULTS.top_k,
                   seed=sample.seed, opening=opening))

    return machine_sample


def make_human(examples: Examples):
    def human(index: int) -> tuple[str, str, int]:
        """The next of the examples' human-written paragraphs, with its source."""
        chosen = examples.human[index % len(examples.human)]
        return chosen.text, tr("**Human-written**: {title} (public domain).", title=chosen.title), index + 1

    return human


def show_details(coloured: Coloured | None, evt: gr.SelectData) -> str:
    row = coloured.token_at(evt.index) if coloured else None
    if row is None:
        return ""
    return details_html(row, with_settings=False) + f"<p class='note'>{tr('Colour: {name}.', name=tr(bucket(row.rank)))}</p>"

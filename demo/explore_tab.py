"""The Next word tab: build a text one token at a time, seeing GPT-2's candidates before and after the settings.

After AllenAI's GPT-2 explorer (the next word's candidates; click one to go on), Transformer Explainer (how temperature,
top-k and top-p reshape the distribution) and Write With Transformer (suggestions on demand). The sliders redraw the
charts from the prompt's cached logits: moving them never runs the model.

`/explore(prompt, temperature, top_k, top_p)` returns the candidates as a gr.Label value (confidence = the probability
that sampling with these settings draws the token), then GPT-2's own probabilities, then a note naming the cut tokens.
It takes gpt2_core's ranges, as the Python API does; the page's events check the sliders' (demo/knobs.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import gradio as gr
from gradio.i18n import I18nData

from demo.errors import user_facing_errors
from demo.exports import Exports
from demo.i18n import T, number, tr
from demo.knobs import KNOBS, page_params, typed_values
from demo.links import FIELDS, TabParts, copy_link
from demo.models import AppModels
from demo.precision_notes import source_note
from demo.save_view import COLOURS_NOTE, coloured_html, model_line, save_png_button
from demo.tokens import Coloured, TokenRow, details_html, name_colours, shown_token, token_view, words
from demo.workspace import Workspace
from gpt2_core import SamplingParams
from gpt2_core.explain.distribution import Candidate

KNOB_IDS = ["explore-temperature", "explore-top-k", "explore-top-p"]
UNKNOWN_AFTER_NOTE = ("**After your settings: not known with this model server**, which reports only its {n} "  # i18n: key
                      "likeliest tokens; with these settings the chance of drawing each depends on the rest of the "
                      "vocabulary too. A top-k of {n} or less, or temperature 1 with top-k off, shows it.")
CANDIDATES = 12  # bars per chart: enough to see the tail being cut, few enough to read from the back row
SUGGESTIONS = 3
SUGGESTION_TOKENS = 8  # about a short phrase; written with a few more, then cut after the last whole word
SUGGESTION_SPARE = 4
START = "The best thing about learning to code is"  # i18n: model text
# What a chart's saved picture says under its title: the model and the cut tokens, then the text and the settings
# (a template the page fills; demo/save_view.py's page script is to show it, and the titles, in the page's language)
SETTINGS_CAPTION = ("After \u201c{#explore-prompt textarea}\u201d \u00b7 temperature "  # i18n: key
                    "{#explore-temperature input[type=number]} \u00b7 top-k {#explore-top-k input[type=number]} \u00b7 "
                    "top-p {#explore-top-p input[type=number]}")
CHART_CAPTION = ["{#explore-cut}", SETTINGS_CAPTION]
AFTER_TITLE = "After your settings: what Sample draws from"  # i18n: key
BUILT_TITLE = "The text so far, coloured by rank"  # i18n: key
MODEL_TITLE = "GPT-2's own probabilities, before the settings"  # i18n: key

INTRO = """\
### Build a text with GPT-2, one token at a time
GPT-2 writes by predicting the **next token** (a word or a piece of one) from everything before it. The left chart \
is what sampling with your settings draws from; the right one is GPT-2's own probabilities. Move the sliders: \
temperature reshapes the bars, top-k and top-p **cut** the tail. Click a bar to add that token, or let **Sample** \
draw one.
"""  # i18n: key


@dataclass
class Built:
    """The text as the page last wrote it: the part the user typed, then the tokens added here (for the colours and
    for Back). Only adding or removing tokens writes it; the user may edit the box at any time, so whatever reads it
    reads `following(the box's text)`."""

    base: str = ""
    added: list[TokenRow] = field(default_factory=list)

    @property
    def text(self) -> str:
        return self.base + "".join(t.text for t in self.added)

    def following(self, prompt: str) -> Built:
        """This history if `prompt` is still its text; otherwise a fresh start from what the user typed."""
        return self if prompt == self.text else Built(prompt)

    def plus(self, *rows: TokenRow) -> Built:
        return replace(self, added=[*self.added, *rows])


SHOW_DETAILS = """() => new Promise((done) => setTimeout(() => {
  const details = document.getElementById('explore-details');
  if (details) details.scrollIntoView({block: 'nearest'});
  done([]);
}, 80))"""
SHOW_SUGGESTIONS = """() => new Promise((done) => setTimeout(() => {
  const row = document.getElementById('explore-suggestions');  // under the charts: on a laptop, below the fold
  if (row) row.scrollIntoView({block: 'nearest'});
  done([]);
}, 150))"""
CSS = """
#explore-suggestions { flex-direction: column; scroll-margin: 12px; }  /* three whole continuations, never cut */
#explore-suggestions button { white-space: normal !important; text-align: left !important; justify-content: flex-start;
  width: 100% !important; max-width: 100% !important; height: auto !important; min-height: 2.5em; font-size: 18px;
  overflow: visible !important; text-overflow: clip !important; }
"""


def chart_with_save(label: I18nData, elem_id: str, *, file: str, title: str) -> gr.Label:
    """A chart of the next token's candidates with its Save as PNG button under it, also where a phone puts the
    charts one under the other."""
    with gr.Column(min_width=240):
        view = gr.Label(label=label, num_top_classes=CANDIDATES, show_heading=False, elem_id=elem_id,
                        elem_classes="chart")
        save_png_button(elem_id, file=file, title=title, caption=CHART_CAPTION, needs=".confidence-set")
    return view


def explore_tab(models: AppModels, *, workspace: Workspace) -> TabParts:
    with gr.Blocks() as tab:
        gr.Markdown(T(INTRO))
        with gr.Row(equal_height=False):
            with gr.Column(scale=3):
                prompt = gr.Textbox(START, label=T("Text so far (edit it freely)"), lines=2, max_lines=8,
                                    elem_id="explore-prompt")
                with gr.Row():
                    sample_button = gr.Button(T("Sample"), variant="primary", elem_id="explore-sample")
                    back_button = gr.Button(T("Back"), elem_id="explore-back")
                    suggest_button = gr.Button(T("Suggest"), elem_id="explore-suggest")
                cut = gr.Markdown(elem_id="explore-cut")  # above the charts, in view: what the settings cut
                with gr.Row():
                    after = chart_with_save(T("After your settings: what Sample draws from (click to add)"),
                                            "explore-candidates", file="gpt2-next-word-after-settings.png",
                                            title=AFTER_TITLE)
                    raw = chart_with_save(T("GPT-2's own probabilities, before the settings (click to add)"),
                                          "explore-model", file="gpt2-next-word-model.png", title=MODEL_TITLE)
                link_anchor = gr.Column()
                built_view = token_view(T(BUILT_TITLE), "explore-built")
                with gr.Row():  # the text so far for lesson notes: a picture, and a page with each token's numbers
                    save_png_button("explore-built", file="gpt2-next-word-text.png", needs=".token",
                                    caption=["{#model-info}"], note=COLOURS_NOTE)  # i18n: not shown (a selector)
                    save_html = gr.DownloadButton(T("Download .html (coloured)"), size="sm", interactive=False,
                                                  elem_id="explore-save-html")
                # under the text, not pinned (pinned, it would cover the charts a class clicks on): a click brings it
                details = gr.HTML(elem_id="explore-details")
                drawn = gr.Markdown(elem_id="explore-drawn")
                with gr.Row(visible=False, elem_id="explore-suggestions") as suggestions_row:
                    suggestion_buttons = [gr.Button("", size="sm", elem_id=f"explore-suggestion-{i + 1}")
                                          for i in range(SUGGESTIONS)]
            with gr.Column(scale=2):
                temperature = KNOBS["temperature"].slider(T("Temperature (0 = greedy)"), elem_id="explore-temperature")
                top_k = KNOBS["top_k"].slider(T("Top-k (0 = off)"), elem_id="explore-top-k")
                top_p = KNOBS["top_p"].slider(T("Top-p (1 = off)"), elem_id="explore-top-p")
                seed = gr.Number(-1, precision=0, label=T("Seed for Sample (-1 = random)"), elem_id="explore-seed")
        candidates = gr.State([])  # the candidates on the charts
        built = gr.State(Built(START))
        suggestions = gr.State([])  # each suggestion's tokens

        knobs = [temperature, top_k, top_p]
        linkable = dict(zip(FIELDS["explore"], [prompt, *knobs], strict=True))
        with link_anchor:
            copy_link("explore", linkable)
        show_built = dict(fn=colour_built, inputs=[built, prompt], outputs=built_view, api_visibility="private",
                          queue=False)
        # The colours follow every edit: .change, as Gradio's textbox sends `input` on key presses only (a paste, a
        # Backspace or a cut never sent it, and one sent while the last was on its way was dropped). Listened to
        # before the charts, so that the colours need not wait for them
        prompt.change(trigger_mode="always_last", show_progress="hidden", **show_built)
        prompt.change(forget_drawn, inputs=[built, prompt], outputs=[drawn, details], api_visibility="private",
                      queue=False, show_progress="hidden", trigger_mode="always_last")
        redraw = dict(inputs=[prompt, *knobs], outputs=[after, raw, cut, candidates], show_progress="hidden",
                      preprocess=False)
        # `/explore`, for API clients only, with gpt2_core's ranges (those of the Python API)
        gr.on([], make_explore(models), api_name="explore", concurrency_id="explore", concurrency_limit=4, **redraw)
        # The page redraws with the sliders' ranges, each slider's value as it is: a number typed beyond its range is
        # refused by name as it is typed, and the box keeps it (demo/knobs.py), so Sample and Suggest refuse it too,
        # as Generate does
        gr.on([prompt.change, *(k.change for k in knobs)], make_explore(models, page=True), trigger_mode="always_last",
              api_visibility="private", concurrency_id="explore", concurrency_limit=4, **redraw)
        tab.load(make_first_draw(models), api_visibility="private", **redraw)
        name_colours(tab, [built_view])
        for chart in (after, raw):
            chart.select(add, inputs=[prompt, built, candidates],
                         outputs=[prompt, built, drawn, details], api_visibility="private").then(**show_built)
        # Sample and Suggest take the sliders raw (no Gradio preprocessing, which would refuse a number typed out of
        # range with its own message and a traceback): the knobs' checks name the parameter and its range, once
        sample_button.click(make_sample(models), inputs=[prompt, built, *knobs, seed],
                            outputs=[prompt, built, drawn, details], api_visibility="private", concurrency_limit=4,
                            preprocess=False, js=typed_values(None, None, *KNOB_IDS, "explore-seed")).then(**show_built)
        back_button.click(back, inputs=[built, prompt], outputs=[prompt, built, drawn, details],
                          api_visibility="private", queue=False).then(**show_built)
        suggest_button.click(make_suggest(models), inputs=[prompt, *knobs],
                             outputs=[suggestions_row, *suggestion_buttons, suggestions], api_visibility="private",
                             concurrency_limit=4, preprocess=False, js=typed_values(None, *KNOB_IDS)).then(
            None, js=SHOW_SUGGESTIONS, api_visibility="private")
        for i, button in enumerate(suggestion_buttons):
            button.click(make_take_suggestion(i), inputs=[prompt, built, suggestions],
                         outputs=[prompt, built, drawn, suggestions_row, details], api_visibility="private",
                         queue=False).then(**show_built)
        gr.on([built.change, prompt.change], make_save_html(models, Exports(workspace)), inputs=[built, prompt],
              outputs=save_html, api_visibility="private", show_progress="hidden", trigger_mode="always_last")
        built_view.select(show_token_details, inputs=[built, prompt], outputs=details, api_visibility="private",
                          queue=False).then(None, js=SHOW_DETAILS, api_visibility="private")
    return TabParts(tab, linkable)


def make_explore(models: AppModels, *, page: bool = False):
    """The charts' function; `page`: the settings checked against the sliders' ranges, not gpt2_core's wider ones."""
    settings = page_params if page else SamplingParams

    def explore(prompt: str, temperature: float, top_k: float, top_p: float, request: gr.Request):
        """The next token's candidates: after the settings (gr.Label), GPT-2's own (gr.Label), the cut ones (text)."""
        with user_facing_errors(), models.use(request.session_hash) as lm:
            found = lm.next_token_distribution(prompt, settings(temperature=temperature, top_k=top_k, top_p=top_p),
                                               k=CANDIDATES)
            source = source_note(lm.describe())
            known = all(c.sampling_prob is not None for c in found)
            reported = None if known else lm.describe().max_alternatives  # a remote model's logprobs limit
        after = {chart_label(c.token_text): c.sampling_prob for c in found} if known else {}  # empty: see the note
        raw = {chart_label(c.token_text): c.prob for c in found}
        cut = [c for c in found if c.sampling_prob == 0]
        note = tr("Candidates from {source}.", source=source)
        if not known:
            note += "  \n" + tr(UNKNOWN_AFTER_NOTE, n=reported)
        if cut:
            names = ", ".join(f"`{shown_token(c.token_text)}`" for c in cut)
            note += "  \n" + tr("\u2702 **Cut by your settings** ({cut} of these {shown}): {names}. Sample can never draw "
                                "them.", cut=len(cut), shown=len(found), names=names)
        return after, raw, note, found

    return explore


def make_first_draw(models: AppModels):
    explore = make_explore(models, page=True)

    def first_draw(prompt: str, temperature: float, top_k: float, top_p: float, request: gr.Request):
        """The charts when the page opens; without a model, nothing (the model panel already says why)."""
        if models.serving(request.session_hash) is None:
            return {}, {}, "", []
        return explore(prompt, temperature, top_k, top_p, request)

    return first_draw


def chart_label(token_text: str) -> str:
    """A candidate's word in the charts: as it is, unless it is only white space, which would show as nothing
    (a line break is "⏎", a space "␣")."""
    return token_text if token_text.strip() else shown_token(token_text)


def add(prompt: str, built: Built, found: list[Candidate], evt: gr.SelectData):
    """Append the clicked candidate to the text."""
    chosen = next((c for c in found if chart_label(c.token_text) == evt.value), None)
    if chosen is None:
        return prompt, built, "", gr.skip()
    rank = 1 + found.index(chosen)  # the candidates are GPT-2's likeliest first
    row = TokenRow(chosen.token_text, chosen.token_id, rank, chosen.prob, found)
    built = built.following(prompt).plus(row)
    added = tr("Added `{token}` (rank {rank}, {probability} for GPT-2).", token=shown_token(chosen.token_text), rank=rank,
               probability=number(chosen.prob, ".1%"))
    return built.text, built, added, details_html(row, with_settings=True)


def make_sample(models: AppModels):
    def sample(prompt: str, built: Built, temperature: float, top_k: float, top_p: float, seed: float | None,
               request: gr.Request):
        """Draw the next token as Generate would, with a seed that is shown (and replays the draw)."""
        with user_facing_errors():  # the page's ranges, as the sliders show them
            params = page_params(max_new_tokens=1, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed)
        with user_facing_errors(), models.use(request.session_hash) as lm:
            (drawn,) = lm.generate(prompt, params, alternatives=CANDIDATES)
        if not drawn.token_ids:
            return prompt, built, tr("GPT-2 ended the text here (it drew `<|endoftext|>`, seed {seed}).",
                                     seed=drawn.seed), gr.skip()
        row = TokenRow(drawn.text, drawn.token_ids[0], drawn.token_ranks[0], drawn.token_probs[0],
                       drawn.alternatives[0])
        built = built.following(prompt).plus(row)
        rank = row.rank or tr("not known")
        drew = tr("Sample drew `{token}` (rank {rank}) with seed **{seed}**.", token=shown_token(row.text), rank=rank,
                  seed=drawn.seed)
        return built.text, built, drew, details_html(row, with_settings=True)

    return sample


def back(built: Built, prompt: str | None = None):
    """Undo the last token added here. `prompt` is the text in the box now: one the user has edited since the last
    token (typed, pasted) is all theirs, and stays as it is. The details of a token shown before are of a text that
    is gone."""
    built = built if prompt is None else built.following(prompt)
    if not built.added:  # the box keeps its text
        return gr.skip(), built, tr("Nothing to undo: only your own text is left."), ""
    built = replace(built, added=built.added[:-1])
    return built.text, built, "", ""


def make_suggest(models: AppModels):
    def suggest(prompt: str, temperature: float, top_k: float, top_p: float, request: gr.Request):
        """Three short continuations to choose from (as Write With Transformer's Tab key offered)."""
        with user_facing_errors():  # the page's ranges, as the sliders show them
            params = page_params(max_new_tokens=SUGGESTION_TOKENS + SUGGESTION_SPARE, temperature=temperature,
                                 top_k=top_k, top_p=top_p, num_samples=SUGGESTIONS)
        with user_facing_errors(), models.use(request.session_hash) as lm:
            samples = lm.generate(prompt, params)
        rows = [whole_words([TokenRow(t, i, r, p) for t, i, r, p in zip(s.token_texts, s.token_ids, s.token_ranks,
                                                                         s.token_probs)]) for s in samples]
        texts = ["".join(row.text for row in suggestion) for suggestion in rows]
        buttons = [gr.Button(shown_suggestion(text), visible=bool(text)) for text in texts]
        return gr.Row(visible=True), *buttons, rows

    return suggest


def whole_words(rows: list[TokenRow], *, at_least: int = SUGGESTION_TOKENS) -> list[TokenRow]:
    """The tokens up to the last word that ends within them: a suggestion never stops inside a word ("a little t").
    A word ends where the next token starts with a space or a line break; the first such place from `at_least` on."""
    starts = [k for k, row in enumerate(rows) if k and row.text[:1].isspace()]
    cut = next((k for k in starts if k >= at_least), starts[-1] if starts else len(rows))
    return rows[:cut]


def shown_suggestion(text: str) -> str:
    return "\u2026" + text.replace("\n", " \u23ce ")


def make_take_suggestion(index: int):
    def take(prompt: str, built: Built, suggestions: list[list[TokenRow]]):
        if index >= len(suggestions):
            return prompt, built, "", gr.Row(visible=False), gr.skip()
        built = built.following(prompt).plus(*suggestions[index])
        return built.text, built, tr("Added a suggestion."), gr.Row(visible=False), ""  # new text: old details go

    return take


def make_save_html(models: AppModels, exports: Exports):
    def save_html(built: Built, prompt: str, request: gr.Request) -> gr.DownloadButton:
        """The text so far as a self-contained coloured web page, for the Download .html button: the typed part
        dimmed, each added token with its probability and rank."""
        built = built.following(prompt)
        lm = models.serving(request.session_hash)
        if not built.added or lm is None:
            return gr.DownloadButton(value=None, interactive=False)
        page = coloured_html(title=tr(BUILT_TITLE), caption=[model_line(lm.describe())],
                             texts=[("", Coloured(words(built.base), built.added))], note=tr(COLOURS_NOTE))
        return gr.DownloadButton(value=exports.write("gpt2-next-word-text.html", page), interactive=True)

    return save_html


def forget_drawn(built: Built, prompt: str) -> tuple:
    """(the note on the last draw, the token details shown): emptied once the text is edited by hand, since they
    describe a text that is gone; left as they are while the box holds the text the page wrote."""
    if built.following(prompt) is built:
        return gr.skip(), gr.skip()
    return "", ""


def colour_built(built: Built, prompt: str) -> list[tuple[str, str | None]]:
    built = built.following(prompt)
    return Coloured(words(built.base), built.added).segments()


def show_token_details(built: Built, prompt: str, evt: gr.SelectData) -> str:
    built = built.following(prompt)
    row = Coloured(words(built.base), built.added).token_at(evt.index)
    if row is None:
        return f"<p class='details'>{tr('That is text you typed; the coloured tokens were added here.')}</p>"
    return details_html(row, with_settings=bool(row.alternatives))

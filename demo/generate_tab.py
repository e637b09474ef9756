"""The Generate tab: a prompt, the sampling settings explained in plain words, and GPT-2's text streaming in.

Its Generate button is the `/generate` API endpoint (parameters: prompt, max_new_tokens, temperature, top_k, top_p,
repetition_penalty, seed, num_samples). Stop cancels the event; Gradio then closes the generator, and closing
`TextModel.stream` ends the request in the engine, so the model stops working on it at once. A closed tab or a
dropped API client does the same as soon as Gradio notices the lost connection (at its next update to the client).
Every generation also ends after `deadline_s` seconds with "took too long and was stopped".
Slider defaults come from gpt2_core's DEFAULTS, the one place the CLI reads them too. The endpoint takes its inputs
raw (no Gradio preprocessing), so every value is checked once, by gpt2_core, whose messages name the parameter.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import closing
from dataclasses import asdict, dataclass, fields

import gradio as gr

from demo.api import endpoint
from demo.errors import user_facing_errors
from demo.examples import Examples, GenerateExample
from demo.exports import Exports, app_stamp
from demo.i18n import T, number, tr
from demo.knobs import KNOBS, page_params, typed_values
from demo.links import FIELDS, TabParts, copy_link
from demo.models import AppModels
from demo.precision_notes import source_note
from demo.save_view import COLOURS_NOTE, SAVE_PNG, coloured_html, model_line, save_png_button
from demo.streams import paced
from demo.tokens import DETAILS_CLASS, Coloured, TokenRow, details_html, keep_token_in_view, name_colours, token_view
from demo.workspace import Workspace
from gpt2_core import DEFAULTS, ModelUnavailableError, Sample, SamplingParams, TextModel
from gpt2_core.backend import ModelDescription
from gpt2_core.generate.settings import CONTEXT_LENGTH, check_int

log = logging.getLogger(__name__)

MAX_SAMPLES_SHOWN = 4  # one under another; the engine could do more, a projector cannot
GENERATE_CONCURRENCY = 16  # generations running at once (the engine batches them); later ones wait in Gradio's queue
METER_CELLS = 20
MACHINE_GENERATED = "Machine-generated"  # i18n: key (the model is named in the saved page's caption)
# The note under the text: one text for the translators (the page translates one marker per text); its middle is
# tokens.LEGEND, word for word
# (Which model: the stats name it. The mini model wrote "by GPT-2 ... the way web pages go on" under Shakespeare.)
MACHINE_NOTE = ("**Machine-generated.** Each generated token is coloured by its **rank**: was it among "  # i18n: key
                "GPT-2's 10 likeliest next tokens there (green), its 100 (yellow), 1000 (red), or rarer (purple)? "
                "Grey is the prompt. Click a token to see why. The text is written by a machine that continues "
                "text the way the texts it learned from go on (GPT-2: web pages; the mini model: Shakespeare's "
                "plays); it can be wrong, made up or offensive.")
TEXT_TITLE = "GPT-2's text, each token coloured by its rank"  # i18n: key (the saved picture's and web page's title)
PROMPT_NOTE = "Grey: the prompt."  # i18n: key
# The saved picture's note: its whole text is a key of the tables too, for save_view to give the picture in the
# page's language (save_png_button translates a title or note that is a key)
TEXT_NOTE = COLOURS_NOTE + " " + PROMPT_NOTE
SAMPLE_LABELS = ("Sample 1 (machine-generated)", "Sample 2 (machine-generated)",  # i18n: key
                 "Sample 3 (machine-generated)", "Sample 4 (machine-generated)")  # i18n: key (one per box)
DETAIL_ALTERNATIVES = 8  # likeliest tokens listed when a token is clicked
GENERATE = "Generate"  # i18n: key
STOP = "Stop"  # i18n: key
COPY_TEXT_LABEL = "Copy text"  # i18n: key
REUSE_SEED = "Use last seed"  # i18n: key
BUSY = "Writing\u2026 (Stop to start again)"  # i18n: key
READY = "**Ready.** Press **Generate**."  # i18n: key
WRITING = "**Writing\u2026** GPT-2 chooses one token at a time; **Stop** ends it."  # i18n: key
STOPPED = "**Stopped.** The text so far stays: click any coloured token to see why GPT-2 chose it."  # i18n: key
NOT_TAKEN = "**Not written:** the server did not take this request; its message says why."  # i18n: key
DETAILS_HINT = ("Click a coloured token to see its probability, its rank and the other tokens GPT-2 "  # i18n: key
                "considered there.")
# Once this run draws its first generated token: where that token is below the fold (a phone; a long prompt, echoed
# in grey first, on a laptop), the run state comes to rest just under the sticky Generate and Stop, the text below
# it. Where it is in view (a short prompt on a laptop, even with a model line that wraps) the page holds still.
SCROLL_TO_OUTPUT = """const output = document.getElementById('generate-output');  // (sample 1 is drawn in it later)
  if (output) {
    const observer = new MutationObserver(() => {
      const token = output.querySelector('#sample-view-1 .token.highlighted');
      if (!token) return;
      observer.disconnect();
      const state = document.getElementById('run-state'), actions = document.getElementById('generate-actions');
      if (!state || !actions) return;
      // In view: below the sticky Generate and Stop and above the fold. Else (below the fold, or above the window
      // when the visitor had scrolled down to the examples or the settings) the run state goes just under them.
      const box = token.getBoundingClientRect();
      if (box.top >= Math.max(0, actions.getBoundingClientRect().bottom) && box.bottom <= window.innerHeight) return;
      window.scrollBy({top: state.getBoundingClientRect().top - actions.offsetHeight - 8});
    });
    observer.observe(output, {childList: true, subtree: true, characterData: true});
    setTimeout(() => observer.disconnect(), 30000);
  }"""  # i18n: not shown
# Stop cancels the run, and Gradio answers a cancel with both the run's .then (after_run: "Stopped") and its .failure
# (not_taken: "Not written: the server did not take this request"), whose answers race: under load the page said the
# server had not taken a run that it was writing (3 presses in 40). So the page notes the press, Generate clears the
# note, and the failure handler sends no run state after a press, leaving it to after_run.
NOTE_STOP_PRESSED = "() => { window.generateStopPressed = true; }"  # i18n: not shown (JavaScript)
CLEAR_STOP_PRESSED = "() => { window.generateStopPressed = false; }"  # i18n: not shown (JavaScript)
UNLESS_STOP_PRESSED = "(state) => window.generateStopPressed ? null : state"  # i18n: not shown (JavaScript)
CSS = """
/* Generate and Stop stay at the window's top while the text streams past them (a phone scrolls to the text) */
#generate-actions { position: sticky; top: 0; z-index: 6; background: var(--background-fill-primary); }
"""
# The page's settings, in the order of its inputs (and of the /generate endpoint's parameters after the prompt), with
# each slider's elem_id (the seed is a number box, no slider)
SETTINGS = ["max_new_tokens", "temperature", "top_k", "top_p", "repetition_penalty", "seed", "num_samples"]
# The prompt and each setting as the example's note names them, in the page's order: the start of their labels,
# translated where shown
LABELS = {
    "prompt": "Prompt",  # i18n: key
    "temperature": "Temperature",  # i18n: key
    "top_k": "Top-k",  # i18n: key
    "top_p": "Top-p",  # i18n: key
    "max_new_tokens": "Max new tokens",  # i18n: key
    "repetition_penalty": "Repetition penalty",  # i18n: key
    "num_samples": "Number of samples",  # i18n: key
    "seed": "Seed",  # i18n: key
}
SETTING_IDS = ["max-new-tokens", "temperature", "top-k", "top-p", "repetition-penalty", "seed", "num-samples"]
COPY_TEXT = """() => {
  const box = document.querySelector('#generate-text textarea');
  if (!box) return;
  if (navigator.clipboard && window.isSecureContext) { navigator.clipboard.writeText(box.value); return; }
  box.select(); document.execCommand('copy');  // plain http on a LAN address has no clipboard API
}"""
FINISH_WORDS = {  # translated where shown (finish_words)
    "length": "reached the token limit",  # i18n: key
    "eos": "the model ended the text",  # i18n: key
    "stop": "hit a stop string",  # i18n: key
    "cancelled": "stopped",  # i18n: key
    "timeout": "took too long and was stopped",  # i18n: key
}

EXPLAIN = {  # each slider's help (info=), translated by the browser
    "temperature": ("Divides the model's scores before they become probabilities: below 1 sharpens the "  # i18n: key
                    "distribution toward the likeliest words, above 1 flattens it toward surprising ones, 0 always "
                    "takes the likeliest (greedy)."),
    "top_k": "Draw only among the k likeliest next tokens, cutting off the long tail of odd ones (0 = off).",  # i18n: key
    "top_p": ("Draw only among the likeliest tokens whose probabilities add up to p, so the choice narrows when "  # i18n: key
              "the model is sure (1 = off)."),
    "max_new_tokens": ("How many tokens (word pieces, about three quarters of a word each) to write after "  # i18n: key
                       "the prompt."),
    "repetition_penalty": ("Above 1 makes tokens already in the text less likely, so the model loops less "  # i18n: key
                           "(1 = off)."),
    "seed": ("Fixes the random draws: the same seed, prompt, settings and model give the same text "  # i18n: key
             "(blank or -1 = a new random seed each time)."),
    "num_samples": ("How many independent continuations of the same prompt to write at once, shown one under "  # i18n: key
                    "another."),
}


@dataclass(frozen=True)
class Page:
    """What a generation updates on the page (the handler returns {component: value} for these)."""

    views: list[gr.HighlightedText]  # one per sample box
    run_state: gr.Markdown
    stats: gr.Markdown
    context: gr.Markdown
    last_seed: gr.State
    shown: gr.State  # the record of the samples on the page, for token details and the downloads
    plain: gr.Textbox  # what Copy copies
    download_txt: gr.DownloadButton
    download_json: gr.DownloadButton
    button: gr.Button
    caption: gr.Textbox  # the model and settings of the text on the page, for its saved picture
    save_png: gr.Button
    download_html: gr.DownloadButton
    stop: gr.Button  # pressable from the click to the run's end
    copy: gr.Button  # Copy text and Use last seed: pressable once a run has a text and a seed
    reuse_seed: gr.Button

    def components(self) -> list[gr.components.Component]:
        return [*self.views, *(getattr(self, f.name) for f in fields(self) if f.name != "views")]


def generate_tab(models: AppModels, examples: Examples, *, deadline_s: float, workspace: Workspace) -> TabParts:
    exports = Exports(workspace)
    with gr.Blocks() as tab:
        with gr.Row(equal_height=False):
            with gr.Column(scale=3):
                prompt = gr.Textbox(label=T("Prompt"), lines=3, max_lines=12, elem_id="prompt",
                                    placeholder=T("Type the beginning of a text; GPT-2 writes what comes next."))
                with gr.Row(elem_id="generate-actions"):
                    generate_button = gr.Button(T(GENERATE), variant="primary", elem_id="generate-button")
                    # Stop is pressable only while a run goes on: a red button that does nothing would look broken
                    stop_button = gr.Button(T(STOP), variant="stop", interactive=False, elem_id="stop-button")
                run_state = gr.Markdown(T(READY), elem_id="run-state")
                with gr.Column(elem_id="generate-output"):
                    views = [token_view(T(SAMPLE_LABELS[i]), f"sample-view-{i + 1}",
                                        visible=False, show_legend=i == 0)  # shown with their first tokens
                             for i in range(MAX_SAMPLES_SHOWN)]
                details = gr.HTML("<p class='hint'>" + T(DETAILS_HINT) + "</p>", elem_id="token-details",
                                  elem_classes=[DETAILS_CLASS])
                stats = gr.Markdown(elem_id="stats")
                # The meter in the page's language and for the model serving now: the load event below writes it
                context = gr.Markdown("**" + T("Context window") + "**", elem_id="context-meter")
                with gr.Row():
                    copy_button = gr.Button(T(COPY_TEXT_LABEL), size="sm", interactive=False, elem_id="copy-text")
                    download_txt = gr.DownloadButton(T("Download .txt"), size="sm", interactive=False,
                                                     elem_id="download-txt")
                    download_json = gr.DownloadButton(T("Download .json (with probabilities)"), size="sm",
                                                      interactive=False, elem_id="download-json")
                    save_png = save_png_button("generate-output", file="gpt2-sample.png", needs=".token",
                                               title=TEXT_TITLE, note=TEXT_NOTE, interactive=False,
                                               caption=["{#generate-caption textarea}"])  # i18n: not shown (a selector)
                    download_html = gr.DownloadButton(T("Download .html (coloured)"), size="sm", interactive=False,
                                                      elem_id="generate-save-html")
                link_anchor = gr.Column()
                gr.Markdown(T(MACHINE_NOTE), elem_id="machine-note")
            with gr.Column(scale=2):
                gr.Markdown(T("**Examples.** One click fills the prompt and the settings, seed included."))
                with gr.Row():
                    example_buttons = [gr.Button(T(example.label), size="sm", elem_id=f"example-{example.id}")
                                       for example in examples.generate]
                about = gr.Markdown(elem_id="example-about")
                with gr.Accordion(T("Settings"), open=True, elem_id="settings"):
                    temperature = KNOBS["temperature"].slider(T("Temperature (0 = greedy)"), elem_id="temperature",
                                                              info=T(EXPLAIN["temperature"]))
                    top_k = KNOBS["top_k"].slider(T("Top-k (0 = off)"), elem_id="top-k", info=T(EXPLAIN["top_k"]))
                    top_p = KNOBS["top_p"].slider(T("Top-p (1 = off)"), elem_id="top-p", info=T(EXPLAIN["top_p"]))
                    max_new_tokens = KNOBS["max_new_tokens"].slider(T("Max new tokens"), elem_id="max-new-tokens",
                                                                    info=T(EXPLAIN["max_new_tokens"]))
                    repetition_penalty = KNOBS["repetition_penalty"].slider(
                        T("Repetition penalty (1 = off)"), elem_id="repetition-penalty",
                        info=T(EXPLAIN["repetition_penalty"]))
                    num_samples = KNOBS["num_samples"].slider(T("Number of samples"), elem_id="num-samples",
                                                              info=T(EXPLAIN["num_samples"]))
                    with gr.Row(equal_height=False):
                        seed = gr.Number(-1 if DEFAULTS.seed is None else DEFAULTS.seed, precision=0, scale=3,
                                         label=T("Seed (blank or -1 = random)"), info=T(EXPLAIN["seed"]), elem_id="seed")
                        reuse_seed = gr.Button(T(REUSE_SEED), size="sm", scale=1, interactive=False,
                                               elem_id="reuse-seed")
        plain = gr.Textbox(visible="hidden", elem_id="generate-text")  # what Copy copies
        caption = gr.Textbox(visible="hidden", elem_id="generate-caption")  # what the saved picture says under its title
        last_seed = gr.State(None)
        active_example = gr.State(None)  # the id of the example last clicked, for its note
        shown = gr.State(None)  # the samples on the page, for token details and the downloads

        settings = [max_new_tokens, temperature, top_k, top_p, repetition_penalty, seed, num_samples]
        linkable = dict(zip(FIELDS["generate"], [prompt, *settings], strict=True))
        with link_anchor:
            copy_link("generate", linkable)
        page = Page(views, run_state, stats, context, last_seed, shown, plain, download_txt, download_json,
                    generate_button, caption, save_png, download_html, stop_button, copy_button, reuse_seed)
        # "Writing…" and the busy button are set once, at the click, and the final update or `after_run` sets what
        # follows; the streamed updates between never touch them. So an update still on its way when Stop is pressed
        # (Gradio fires the run's .then at the cancel, and applies the updates it had already received after it)
        # cannot put "Writing…" back over "Stopped", nor leave Generate disabled.
        busy = [run_state, generate_button, stop_button]
        run = generate_button.click(writing, outputs=busy, api_visibility="private", js=CLEAR_STOP_PRESSED,
                                    queue=False, show_progress="hidden").then(
            make_generate_view(models, exports, page, deadline_s=deadline_s), inputs=[prompt, *settings],
            outputs=page.components(), api_visibility="private", concurrency_limit=GENERATE_CONCURRENCY,
            concurrency_id="generate", show_progress="hidden", preprocess=False,
            js=typed_values(None, *SETTING_IDS, then=SCROLL_TO_OUTPUT))
        run.then(after_run, inputs=run_state, outputs=busy, api_visibility="private",
                 queue=False)  # finished or stopped (an error in mid-stream frees the button in its own update)
        # A request the server never took (a full queue, a body over the size limit) ends in an error toast and no
        # .then: without this the page would say "Writing…" with Generate disabled until Stop was pressed. (A press of
        # Stop fires it too: it then leaves the run state to after_run, see NOTE_STOP_PRESSED)
        run.failure(not_taken, inputs=run_state, outputs=busy, api_visibility="private", js=UNLESS_STOP_PRESSED,
                    queue=False)
        # The `/generate` API endpoint: plain-text samples for API clients (the page shows the coloured view)
        endpoint(make_generate(models, deadline_s=deadline_s), returns=tuple[(str,) * (MAX_SAMPLES_SHOWN + 2)],
                 api_name="generate", concurrency_id="generate", concurrency_limit=GENERATE_CONCURRENCY)
        stop_button.click(None, js=NOTE_STOP_PRESSED, cancels=[run], api_visibility="private")  # .then says "Stopped"
        copy_button.click(None, js=COPY_TEXT, api_visibility="private")
        reuse_seed.click(lambda s: s, inputs=last_seed, outputs=seed, api_visibility="private", queue=False)
        tab.load(lambda: empty_meter(models), outputs=context, api_visibility="private", queue=False,
                 show_progress="hidden")  # the model may have been switched since the page was built
        name_colours(tab, views)
        num_samples.change(show_samples, inputs=num_samples, outputs=views, api_visibility="private", queue=False,
                           preprocess=False)  # a number typed out of range is answered by Generate, not here
        for i, view in enumerate(views):
            view.select(make_details(i), inputs=shown, outputs=details, api_visibility="private", queue=False).then(
                None, js=keep_token_in_view("token-details"), api_visibility="private")
        gr.on([prompt.change, *(s.change for s in settings)], make_example_note(examples),
              inputs=[active_example, prompt, *settings], outputs=about, api_visibility="private", queue=False,
              show_progress="hidden", preprocess=False)  # raw: a number typed out of range is "changed", not an error
        gr.on([prompt.change, max_new_tokens.change], make_meter(models), inputs=[prompt, max_new_tokens],
              outputs=context, trigger_mode="always_last", show_progress="hidden", api_visibility="private",
              preprocess=False)
        for button, example in zip(example_buttons, examples.generate, strict=True):
            button.click(make_fill(example), outputs=[prompt, *settings, about, active_example], api_visibility="private",
                         queue=False)
    return TabParts(tab, linkable, fillers=example_buttons)


def stream_samples(models: AppModels, session: str | None, prompt, params: SamplingParams, *, deadline_s: float,
                   alternatives: int = 0) -> Iterator[tuple[TextModel, list]]:
    """The model and its samples, at the first token, within the page's update budget and at the end (the page and
    the API share this)."""
    with user_facing_errors(), models.use(session) as lm, closing(paced(
            lm.stream(prompt, params, deadline_s=deadline_s, alternatives=alternatives),
            last=lambda samples: all(s.finish_reason is not None for s in samples),
            shown=lambda samples: sum(s.prompt_tokens + len(s.token_ids) for s in samples))) as updates:
        for samples in updates:  # (a Stop closes this generator, and `closing` the engine's stream, at once)
            yield lm, samples


def make_generate(models: AppModels, *, deadline_s: float):
    def generate(prompt: str = "", max_new_tokens: float = DEFAULTS.max_new_tokens,
                 temperature: float = DEFAULTS.temperature, top_k: float = DEFAULTS.top_k, top_p: float = DEFAULTS.top_p,
                 repetition_penalty: float = DEFAULTS.repetition_penalty, seed: float | None = -1,
                 num_samples: float = DEFAULTS.num_samples, request: gr.Request | None = None) -> Iterator[tuple]:
        """Stream GPT-2's continuation of `prompt`: the sample texts (4, unused ones empty), stats, context meter."""
        with user_facing_errors():  # gpt2_core's ranges, and as many samples as there are boxes
            check_int("num_samples", num_samples, 1, MAX_SAMPLES_SHOWN)
            params = SamplingParams(max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                                    repetition_penalty=repetition_penalty, seed=seed, num_samples=num_samples)
        session = request.session_hash if request is not None else None
        source = None  # who computes the probabilities: read once, not at every update
        for lm, samples in stream_samples(models, session, prompt, params, deadline_s=deadline_s):
            source = source or source_note(lm.describe())
            yield render(samples, lm.context_length, source)[:-1]

    return generate


def make_generate_view(models: AppModels, exports: Exports, page: Page, *, deadline_s: float):
    def generate_view(prompt, max_new_tokens, temperature, top_k, top_p, repetition_penalty, seed, num_samples,
                      request: gr.Request):
        """The page's Generate: the coloured samples, the run state, stats, context, and the downloads at the end.
        An error replaces the output with its message (not the last run's text and stats), and is also a toast."""
        try:
            with user_facing_errors():  # the page's own ranges, with the message the API gives for its wider ones
                params = page_params(max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                                     repetition_penalty=repetition_penalty, seed=seed, num_samples=num_samples)
            yield from write(prompt, params, request)
        except gr.Error as e:  # the meter and the last seed stay
            yield {**{view: gr.HighlightedText(None, visible=False) for view in page.views},
                   page.run_state: tr("**Not written.** {why}", why=e.message), page.stats: "", page.shown: None,
                   page.plain: "",
                   page.download_txt: gr.DownloadButton(value=None, interactive=False),
                   page.download_json: gr.DownloadButton(value=None, interactive=False),
                   page.button: gr.Button(tr(GENERATE), interactive=True), page.stop: gr.Button(interactive=False),
                   page.copy: gr.Button(interactive=False), page.caption: "",
                   page.save_png: gr.Button(interactive=False),
                   page.download_html: gr.DownloadButton(value=None, interactive=False)}
            raise

    def write(prompt, params: SamplingParams, request: gr.Request):
        prompt_pieces: list[str] | None = None
        for lm, samples in stream_samples(models, request.session_hash, prompt, params, deadline_s=deadline_s,
                                          alternatives=DETAIL_ALTERNATIVES):
            first = prompt_pieces is None
            if first:  # the prompt as GPT-2 read it (its end, if it was trimmed), and the model, once
                ids = lm.prepare_prompt(prompt, room=params.max_new_tokens).ids if prompt else []
                prompt_pieces = (["\u2026"] if samples[0].prompt_truncated else []) + lm.token_pieces(ids)
                described = lm.describe()
            coloured = [Coloured(prompt_pieces, [TokenRow(t, i, r, p, a) for t, i, r, p, a in
                                                 zip(s.token_texts, s.token_ids, s.token_ranks, s.token_probs,
                                                     s.alternatives)]) for s in samples]
            *_, stats, context, first_seed = render(samples, lm.context_length, source_note(described))
            done = all(s.finish_reason is not None for s in samples)
            record = dict(model=lm.name, prompt=prompt, settings=asdict(params), samples=samples, coloured=coloured,
                          model_details=model_details(described))
            text = "\n\n".join(prompt + s.text for s in samples)
            caption = run_caption(described, params, samples)
            files = (exports.write("gpt2-sample.txt", text), exports.write("gpt2-sample.json", export_json(record)),
                     exports.write("gpt2-sample.html", export_html(record, caption))) if done else (None, None, None)
            # Components (which boxes show, which buttons work) change with the first update and the last; the updates
            # between send plain values. Gradio builds a new component, and works out its whole config, for each
            # component an update returns and for each output it leaves out (its gr.skip()): every 0.05 s that kept
            # the server busy and the engine waiting. So the updates between give every output a plain value that
            # leaves it as it is: no text in the hidden boxes, no file in the downloads, and each button that a late
            # update may reach after Stop its own label. Only the run state and Generate are left out: their text
            # must not come back after Stop (see layout). The page wrote gpt2 2.2x faster (bench_page.py)
            boxes = coloured + [None] * (MAX_SAMPLES_SHOWN - len(coloured))
            if first or done:
                views = {view: gr.HighlightedText(c.segments(), visible=True) if c is not None else
                         gr.HighlightedText(None, visible=False) for view, c in zip(page.views, boxes)}
                buttons = {page.download_txt: gr.DownloadButton(value=files[0], interactive=files[0] is not None),
                           page.download_json: gr.DownloadButton(value=files[1], interactive=files[1] is not None),
                           page.download_html: gr.DownloadButton(value=files[2], interactive=files[2] is not None),
                           page.save_png: gr.Button(interactive=True), page.copy: gr.Button(interactive=True),
                           page.reuse_seed: gr.Button(interactive=True)}
            else:
                views = {view: c.segments() if c is not None else None for view, c in zip(page.views, boxes)}
                buttons = {page.download_txt: None, page.download_json: None, page.download_html: None,
                           page.save_png: tr(SAVE_PNG), page.copy: tr(COPY_TEXT_LABEL),
                           page.reuse_seed: tr(REUSE_SEED), page.stop: tr(STOP)}
            # The run state and the button only at the end: `writing` set them at the click (see layout)
            ended = ({page.run_state: finished_state(samples), page.button: gr.Button(tr(GENERATE), interactive=True),
                      page.stop: gr.Button(interactive=False)} if done else {})
            yield {**views, **buttons, **ended, page.stats: stats, page.context: context, page.last_seed: first_seed,
                   page.shown: record, page.plain: text, page.caption: caption}

    return generate_view


def finish_words(samples: list[Sample]) -> str:
    """Why the samples ended, in words: "reached the token limit, the model ended the text"."""
    return ", ".join(tr(FINISH_WORDS[r]) if r in FINISH_WORDS else r for r in sorted({s.finish_reason for s in samples}))


def finished_state(samples: list[Sample]) -> str:
    return tr("**Done** ({reasons}). Click any coloured token to see why GPT-2 chose it.", reasons=finish_words(samples))


def make_details(index: int):
    def details(record: dict | None, evt: gr.SelectData) -> str:
        if not record or index >= len(record["coloured"]):
            return "<p class='hint'>" + tr(DETAILS_HINT) + "</p>"
        row = record["coloured"][index].token_at(evt.index)
        if row is None:
            return ("<p class='details'>" + tr("That is your prompt: GPT-2 read it and wrote the coloured tokens after it.")
                    + "</p>")
        s = record["settings"]
        if s["repetition_penalty"] != 1:
            note = tr("Your settings: temperature {temperature}, top-k {top_k}, top-p {top_p}, repetition penalty "
                      "{repetition_penalty}. Sampling drew this token from the right-hand column.", **s)
        else:
            note = tr("Your settings: temperature {temperature}, top-k {top_k}, top-p {top_p}. Sampling drew this "
                      "token from the right-hand column.", **s)
        return details_html(row, with_settings=True, settings_note=note)

    return details


def model_details(d: ModelDescription) -> dict:
    """The model as a download records it: for lesson notes, enough to make the same text again."""
    return dict(name=d.name, precision=d.precision, parameters=d.parameters, context=d.context, where=d.where,
                remote=d.remote)


def run_caption(d: ModelDescription, params: SamplingParams, samples: list[Sample]) -> str:
    """One line naming the model and the settings of a run: "GPT-2 gpt2 (fp32) · temperature 0.8 · top-k 40 · ..."."""
    seeds = ", ".join(str(s.seed) for s in samples)
    settings = tr("temperature {temperature} \u00b7 top-k {top_k} \u00b7 top-p {top_p} \u00b7 repetition penalty "
                  "{repetition_penalty} \u00b7 max new tokens {max_new_tokens}", **asdict(params))
    seed = tr("seed {seeds}", seeds=seeds) if len(samples) == 1 else tr("seeds {seeds} (one per sample)", seeds=seeds)
    return f"{model_line(d)} \u00b7 {settings} \u00b7 {seed}"


def export_html(record: dict, caption: str) -> str:
    """The run's coloured text as a self-contained web page (demo/save_view.py), for lesson notes."""
    texts = [(tr("Sample {n} (machine-generated), seed {seed}", n=i + 1, seed=sample.seed), coloured)
             for i, (sample, coloured) in enumerate(zip(record["samples"], record["coloured"]))]
    return coloured_html(title=tr(TEXT_TITLE), caption=[caption], texts=texts, note=tr(TEXT_NOTE),
                         footer=f"{tr(MACHINE_GENERATED)}.")


def export_json(record: dict) -> str:
    """The generation as JSON: prompt, settings, seed, model, and every token with its probability and alternatives;
    the model's details (precision, size) and the app's version and the date, for lesson notes."""
    samples = []
    for sample, coloured in zip(record["samples"], record["coloured"]):
        tokens = [dict(text=t.text, id=t.token_id, prob=t.prob, rank=t.rank,
                       alternatives=[dict(text=a.token_text, id=a.token_id, prob=a.prob, sampling_prob=a.sampling_prob)
                                     for a in t.alternatives]) for t in coloured.tokens]
        samples.append(dict(seed=sample.seed, text=sample.text, finish_reason=sample.finish_reason, tokens=tokens))
    return json.dumps(dict(model=record["model"], prompt=record["prompt"], settings=record["settings"],
                           samples=samples, model_details=record["model_details"], app=app_stamp()),
                      ensure_ascii=False, indent=1)


def render(samples: list[Sample], context_length: int, model: str) -> tuple:
    """(4 sample texts, stats, context meter, the first sample's seed)."""
    texts = [s.text for s in samples] + [""] * (MAX_SAMPLES_SHOWN - len(samples))
    first = samples[0]
    generated = max(len(s.token_ids) for s in samples)
    context = context_markdown(first.prompt_tokens, generated, first.prompt_truncated, context_length)
    return (*texts[:MAX_SAMPLES_SHOWN], stats_markdown(samples, model), context, first.seed)


def writing() -> tuple:
    """Generate pressed: the run state says GPT-2 is writing, the button why a second press would wait, and Stop
    can be pressed."""
    return tr(WRITING), gr.Button(tr(BUSY), interactive=False), gr.Button(interactive=True)


def after_run(state: str) -> tuple:
    """A run ended: Generate is free again. If the run state still says "Writing…", Stop ended it (only the final
    update, Done, or an error's "Not written" replace it, and they come before this): it says Stopped. A finished
    run, or one that ended in an error, keeps its state; so does one whose late Done arrives after Stopped."""
    button, stop = gr.Button(tr(GENERATE), interactive=True), gr.Button(interactive=False)
    if state != tr(WRITING):  # the run state as this page's language wrote it
        return gr.skip(), button, stop
    return tr(STOPPED), button, stop


def not_taken(state: str | None) -> tuple:
    """The run failed as a whole: Generate is free again, Stop is not, and a run state still saying "Writing…" says so.
    After a press of Stop the page sends None: after_run says "Stopped"."""
    state = gr.skip() if state != tr(WRITING) else tr(NOT_TAKEN)
    return state, gr.Button(tr(GENERATE), interactive=True), gr.Button(interactive=False)


def stats_markdown(samples: list[Sample], model: str) -> str:
    """The run's line under the text; `model` is Markdown (precision_notes.source_note)."""
    tokens = sum(len(s.token_ids) for s in samples)
    rates = [s.tokens_per_second for s in samples if s.tokens_per_second]
    speed = tr("{rate} tokens/s", rate=number(sum(rates), ".1f") if rates else "\u2013")
    reasons = {s.finish_reason for s in samples}
    # The run state (Writing / Done / Stopped) is its own line above the text (after_run says Stopped)
    status = "" if None in reasons else " \u00b7 " + tr("done: {reasons}", reasons=finish_words(samples))
    seeds = ", ".join(str(s.seed) for s in samples)
    if len(samples) == 1:
        again = tr("**Seed** `{seeds}`: enter a seed with the same prompt and settings to get that text again.", seeds=seeds)
    else:
        again = tr("**Seeds (one per sample)** `{seeds}`: enter a seed with the same prompt and settings to get that "
                   "text again.", seeds=seeds)
    return (tr("**Model** {model} \u00b7 **Speed** {speed} \u00b7 **Tokens generated** {tokens}", model=model, speed=speed,
               tokens=tokens) + f"{status}  \n{again}")


def context_markdown(prompt_tokens: int, generated: int, truncated: bool, context_length: int = CONTEXT_LENGTH) -> str:
    """A text meter of the context window: the prompt's tokens, then the generated ones, out of the whole."""
    used = prompt_tokens + generated
    cells_prompt = round(METER_CELLS * prompt_tokens / context_length)
    cells_new = min(METER_CELLS - cells_prompt, round(METER_CELLS * generated / context_length))
    bar = "\u2588" * cells_prompt + "\u2593" * cells_new + "\u2591" * (METER_CELLS - cells_prompt - cells_new)
    prompt = (tr("{n} prompt token", n=prompt_tokens) if prompt_tokens == 1 else
              tr("{n} prompt tokens", n=prompt_tokens))
    new = " + " + tr("{n} new", n=generated) if generated else ""
    text = tr("**Context window** `{bar}` {prompt}{new} = {used} of {total}", bar=bar, prompt=prompt, new=new, used=used,
              total=context_length)
    if used > context_length:
        text = tr("**Context window** `{bar}` {prompt} prompt + {new} new = {used} tokens, more than the {total} the "
                  "model sees at once.  \n**Its window slid:** the oldest tokens (the prompt's beginning first) left "
                  "its view, as in OpenAI's samples; each token's probability is the one the model gave it with the "
                  "tokens it could still see.", bar=bar, prompt=prompt_tokens, new=generated, used=used,
                  total=context_length)
    if truncated:
        text += "  \n" + tr("**Notice:** the prompt was longer than the model can read at once, so its beginning was "
                            "trimmed; GPT-2 only sees the end of it.")
    return text


def show_samples(num_samples) -> list:
    """Fewer samples asked for: the extra boxes go (more appear with their text, never empty)."""
    try:
        shown = int(num_samples)
    except (TypeError, ValueError):
        return [gr.skip()] * MAX_SAMPLES_SHOWN
    return [gr.skip() if i < shown else gr.HighlightedText(visible=False) for i in range(MAX_SAMPLES_SHOWN)]


def empty_meter(models: AppModels) -> str:
    """The meter of an empty prompt, out of the serving model's context (a server not yet asked: GPT-2's)."""
    lm = models.gpt2.current
    context = lm.describe().context if lm is not None else None
    return context_markdown(0, 0, False, context or CONTEXT_LENGTH)


def make_meter(models: AppModels):
    def meter(prompt: str, max_new_tokens: float, request: gr.Request) -> str:
        lm = models.serving(request.session_hash)
        if lm is None:
            return empty_meter(models)
        if not isinstance(prompt, str):
            return context_markdown(0, 0, False, lm.context_length)
        try:
            prepared = lm.prepare_prompt(prompt, room=int(max_new_tokens))
        except (TypeError, ValueError, ModelUnavailableError):  # a bad value, or a model server not reachable now
            return gr.skip()  # the meter keeps the last prompt it could read
        ids = prepared.ids if prompt else []
        return context_markdown(len(ids), 0, prepared.truncated, lm.context_length)

    return meter


def example_values(example: GenerateExample) -> tuple:
    """The prompt and settings an example fills in, in the order of the page's inputs."""
    return (example.prompt, *(getattr(example.settings, name) for name in SETTINGS))


def make_fill(example: GenerateExample):
    def fill() -> tuple:
        return (*example_values(example), f"**{tr(example.label)}.** {tr(example.about)}", example.id)

    return fill


def make_example_note(examples: Examples):
    by_id = {example.id: example for example in examples.generate}
    names = ["prompt", *SETTINGS]

    def note(active: str | None, *values) -> str:
        """The clicked example's note, or what was changed since: its fixed seed replays it only with its settings."""
        example = by_id.get(active)
        if example is None:
            return gr.skip()
        changed = [name for name, mine, theirs in zip(names, values, example_values(example), strict=True)
                   if mine != theirs]
        if not changed:
            return f"**{tr(example.label)}.** {tr(example.about)}"
        return tr("**{label}, changed** ({changed}): the example's own text comes back only with its prompt and "
                  "settings; click it again for them.", label=tr(example.label),
                  changed=", ".join(tr(label) for name, label in LABELS.items() if name in changed))

    return note

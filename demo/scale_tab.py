"""The Scale tab: "what makes GPT-2 worthy of the 2 is massive scale". One prompt and seed on every GPT-2 size this
machine has, side by side, and how surprised each size is by a human-written paragraph, against its parameters.

Sizes run one after another, smallest first: each is loaded, writes, is measured, and is released before the next is
loaded (the model already serving the page is borrowed, not loaded twice), so memory never holds two of them. A size
whose weights exceed the host's budget (--scale-memory) or whose files are not here is listed with the reason and the
fix (gpt2_core/scale.py), in the page's language (SKIP_REASONS; the API keeps gpt2_core's English). One run at a
time for the whole app: it is the heaviest thing the page can ask for. Stop can be pressed from Run's click to the
run's end; a stopped run marks the sizes it did not finish "stopped".
The `/scale(prompt, seed)` API endpoint returns the finished figures and texts as JSON.
"""

from __future__ import annotations

import gc
import html
import threading
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, replace
from functools import partial

import gradio as gr
import pandas as pd
from pandas.io.formats.style import Styler

from demo.api import endpoint
from demo.errors import fields_of, in_page_language, template_patterns, user_facing_errors
from demo.examples import Examples
from demo.i18n import T, language, number, tr
from demo.knobs import page_seed, refuse_empty, typed_values
from demo.links import TabParts, copy_link
from demo.model_panel import bytes_text
from demo.models import AppModels
from demo.save_view import save_png_button
from demo.streams import paced
from gpt2_core import LanguageModel, SamplingParams, load_model
from gpt2_core.devices import resolve_device
from gpt2_core.generate.settings import MAX_SEED, check_int, check_text, shown
from gpt2_core.scale import Planned, bits_per_token, plan

NEW_TOKENS = (10, 100, 40)  # slider: low, high, default (100 fits the bundled mini model's context with a prompt)
DEFAULT_SEED = 2019
STREAM_INTERVAL_S = 0.1  # alone; with generations streaming too, the page's update budget (demo/streams.py)
DOT = " \u00b7 "
SCROLL_TO_RESULTS = """() => {
  const state = document.getElementById('scale-state');
  if (state && state.getBoundingClientRect().top + 200 > window.innerHeight) state.scrollIntoView({block: 'start'});
}"""

INTRO = T("""\
### What scale buys
"What makes GPT-2 worthy of the 2 is massive scale": the same architecture at 82 million to 1.5 billion parameters. \
Here **the same prompt and seed** go to every size this machine has, smallest first, and each size is measured on a \
**human-written paragraph**: its surprise in bits per token (lower: it predicts real text better).
""")
# A size's state as its card names it (the card's class keeps the English one)
STATES = {"waiting": "waiting", "loading": "loading", "writing": "writing", "done": "done",  # i18n: key
          "skipped": "skipped", "failed": "failed", "stopped": "stopped"}  # i18n: key
UNFINISHED = ("waiting", "loading", "writing")  # the states a run leaves behind when it is stopped or fails
# The run's state line while a size is on its way, by that size's state
DOING = {"waiting": "**Starting {model}** ({i} of {n})\u2026 Each size is released before the next one loads.",  # i18n: key
         "loading": "**Loading {model}** ({i} of {n})\u2026 Each size is released before the next one loads.",  # i18n: key
         "writing": "**Writing {model}** ({i} of {n})\u2026 Each size is released before the next one loads."}  # i18n: key
# A run that ended with fewer than two sizes' figures has no chart: what the state line says instead
ONE_SIZE = ("**Done.** One size ran, so there is nothing to compare it with and no chart: the chart of surprise "
            "against size needs at least two.")  # i18n: key
TOO_FEW = "**Done.** Too few sizes ran for a chart (it needs at least two): a failed size's card says why."  # i18n: key
SEE_NOT_RUN = "The sizes under *Not run here* say what each would need."  # i18n: key
X_TITLE, Y_TITLE = "parameters (millions)", "bits per token (lower is better)"  # i18n: key
# Why gpt2_core/scale.py's `plan` leaves a size out, as English templates (keys of demo/locales/scale_tab.json): a note
# that reads as one is shown in the page's language, its command, sizes and numbers as scale.py wrote them, its
# precision (memory.PRECISION_LABELS) translated too. The first template a note reads as is used.
SKIP_REASONS = (
    "not on this machine: `python -m gpt2_core download {source}` fetches it; it would take {size} of memory in "  # i18n: key
    "{precision}",  # i18n: key
    "not on this machine: `python -m gpt2_core download {source}` fetches it",  # i18n: key
    "not on this machine",  # i18n: key
    "needs {size} in {precision}, over this host's budget of {budget} for this tab (--scale-memory {memory} "  # i18n: key
    "would take it)",  # i18n: key
)


@dataclass
class Column:
    """One size as the tab shows it."""

    planned: Planned
    state: str = "waiting"  # waiting, loading, writing, done, skipped, failed
    text: str = ""
    tokens_per_s: float | None = None
    memory_bytes: int | None = None
    bits_per_token: float | None = None
    note: str = ""

    def figures(self) -> dict:
        return {"model": self.planned.source, "parameters": self.planned.parameters, "state": self.state,
                "memory_bytes": self.memory_bytes, "tokens_per_s": self.tokens_per_s,
                "bits_per_token": self.bits_per_token, "text": self.text, "note": self.note}

    @property
    def shown_millions(self) -> float | None:
        """Its parameters in millions, rounded as the figures table and the chart show them."""
        return round(self.planned.parameters / 1e6, 1) if self.planned.parameters else None

    @property
    def shown_bits(self) -> float | None:
        """Its bits per token, rounded as the figures table and the chart show them."""
        return round(self.bits_per_token, 2) if self.bits_per_token is not None else None


def scale_tab(models: AppModels, examples: Examples, *, sources: tuple[str, ...], budget_bytes: int,
              device: str = "cpu") -> TabParts:
    unicorn = examples.unicorn
    human = examples.human[0]
    on_cpu = resolve_device(device).type == "cpu"
    # Each size as the app serves it (a CPU: int8, a quarter of fp32's memory), uncompiled: it runs one generation
    sizes = SizeRunner(models, sources, budget_bytes, human.text,
                       load=partial(models.load_gpt2, device=device, compile=False),
                       precision="int8-cpu" if on_cpu else "fp16")
    with gr.Blocks() as tab:
        gr.Markdown(INTRO)
        with gr.Row(equal_height=False):
            prompt = gr.Textbox(unicorn.prompt, label=T("Prompt"), lines=2, max_lines=6, scale=4, elem_id="scale-prompt")
            with gr.Column(scale=1, min_width=220):
                seed = gr.Number(DEFAULT_SEED, precision=0, label=T("Seed (the same for every size)"),
                                 elem_id="scale-seed")
                tokens = gr.Slider(*NEW_TOKENS[:2], NEW_TOKENS[2], step=1, label=T("New tokens"), elem_id="scale-tokens")
        with gr.Row():
            run = gr.Button(T("Run every size"), variant="primary", elem_id="scale-run")
            stop = gr.Button(T("Stop"), variant="stop", interactive=False, elem_id="scale-stop")  # on while a run goes
        planned = sizes.columns()  # once at start-up: each looks in the Hugging Face cache
        # The plan and the human paragraph's source, in the page's language: written as the page opens (load below)
        state = gr.Markdown("**" + T("Ready.") + "**", elem_id="scale-state")
        cards = gr.HTML("", elem_id="scale-columns")
        with gr.Row(equal_height=False):
            # Its headers break between words only (CSS): each column is as wide as its longest word, and on a phone
            # the table scrolls sideways inside its box (Gradio's break-anywhere wrapping stacked them letter by letter)
            table = gr.Dataframe(label=T("Figures"), interactive=False, wrap=True, elem_id="scale-figures", scale=3)
            with gr.Column(scale=2, visible=False) as chart_box:  # shown with the chart's second point
                chart = gr.LinePlot(x="parameters (millions)", y="bits per token",
                                    label=T("Surprise at human text vs size"), x_title=X_TITLE, y_title=Y_TITLE,
                                    elem_id="scale-chart", visible=False)
                save_png_button("scale-chart", file="gpt2-scale.png", needs=".vega-embed", caption=[
                    "The same prompt and seed on every size: \u201c{#scale-prompt textarea}\u201d, seed "  # i18n: key
                    "{#scale-seed input}, {#scale-tokens input[type=number]} new tokens",  # i18n: key (save_view.py)
                    "{#scale-human}"])
        source = gr.Markdown("", elem_id="scale-human")
        shown = gr.State([])  # the columns as the last run left them: what Stop, or a failure, finds unfinished
        copy_link("scale", {"prompt": prompt, "seed": seed})
        tab.load(lambda: (ready_line(planned), render_cards(planned), figures_table(planned),  # named columns, not 1 2 3
                          tr("The human paragraph: {title}.", title=human.title)),
                 outputs=[state, cards, table, source], api_visibility="private", queue=False)
        # Run off and Stop on at the click, before the run is queued; they turn back at the run's end or Stop (.then,
        # which says "Stopped" for a run cut short) or at its failure (.failure: an error, a request the server never
        # took; Gradio fires it at Stop too)
        busy = [run, stop]
        # raw, and the number typed into New tokens unclamped: check_inputs answers a seed of 1.5 or 500 tokens by name
        event = run.click(running, outputs=busy, api_visibility="private", queue=False, show_progress="hidden").then(
            make_run(sizes), inputs=[prompt, seed, tokens], outputs=[state, cards, table, chart, chart_box, shown],
            api_visibility="private", concurrency_limit=1, concurrency_id="scale", show_progress="hidden",
            preprocess=False, js=typed_values(None, "scale-seed", "scale-tokens"))
        ended = [state, cards, table, shown, *busy]
        event.then(after_run, inputs=shown, outputs=ended, api_visibility="private", queue=False)
        event.failure(not_taken, outputs=busy, api_visibility="private", queue=False)
        run.click(None, js=SCROLL_TO_RESULTS, api_visibility="private")  # the columns, in view at once (phones)
        stop.click(None, cancels=[event], api_visibility="private")  # the run's .then says "Stopped"
        endpoint(make_api(sizes, unicorn.prompt), returns=list, api_name="scale", concurrency_limit=1, concurrency_id="scale")
    return TabParts(tab, {"prompt": prompt, "seed": seed})


class SizeRunner:
    """The sizes of the tab, and running them one at a time."""

    def __init__(self, models: AppModels, sources: tuple[str, ...], budget_bytes: int, human_text: str,
                 load: Callable[..., LanguageModel] = load_model, precision: str = "fp32"):
        self.precision = precision  # what the sizes load in, for their memory
        self._running = threading.Lock()
        self.models = models
        self.load = load
        self.sources = sources
        self.budget_bytes = budget_bytes
        self.human_text = human_text

    def columns(self) -> list[Column]:
        """The plan as it stands now (a model fetched meanwhile shows up at the next run)."""
        return [Column(p, state="skipped" if p.skip else "waiting", note=p.skip or "")
                for p in plan(self.sources, budget_bytes=self.budget_bytes, precision=self.precision)]

    @contextmanager
    def lease(self, planned: Planned) -> Iterator[LanguageModel]:
        """The size's model: the page's own if it is the one serving, else loaded now and released at the end."""
        shared = self.models.gpt2.current
        if shared is not None and self.models.gpt2.source == planned.source:
            with self.models.gpt2.use() as lm:
                yield lm
            return
        lm = self.load(planned.directory)
        lm.name = planned.source
        try:
            yield lm
        finally:
            lm.close()

    def run(self, prompt: str, params: SamplingParams) -> Iterator[list[Column]]:
        """Every runnable size in turn: yields the columns whenever one of them changes. One run at a time."""
        if not self._running.acquire(blocking=False):  # a stopped run may still be releasing its model
            raise ValueError(tr("another Scale run is still finishing; please try again in a few seconds"))
        try:
            columns = self.columns()
            yield columns
            for column in columns:
                if column.state != "skipped":
                    yield from self._run_size(column, columns, prompt, params)
                    gc.collect()  # the size's frame is gone: its weights go now, before the next size loads
        finally:
            self._running.release()

    def _run_size(self, column: Column, columns: list[Column], prompt: str,
                  params: SamplingParams) -> Iterator[list[Column]]:
        """One size: load, write, measure, release (its model lives in this frame only)."""
        column.state = "loading"
        yield columns
        try:
            with self.lease(column.planned) as lm:
                column.state = "writing"
                with closing(paced(lm.stream(prompt, params), last=lambda samples: samples[0].finish_reason is not None,
                                   alone=STREAM_INTERVAL_S)) as updates:  # within the page's update budget
                    for samples in updates:
                        column.text, column.tokens_per_s = samples[0].text, samples[0].tokens_per_second
                        yield columns
                column.memory_bytes = lm.memory_bytes()
                column.bits_per_token = bits_per_token(lm, self.human_text)
                column.state = "done"
        except (ValueError, RuntimeError, OSError) as e:  # one size failing leaves the others running
            column.state, column.note = "failed", str(e)
        yield columns


def summary(columns: list[Column]) -> str:
    ready = [c.planned.source for c in columns if c.planned.skip is None]
    fields = dict(ready=len(ready), total=len(columns), names=", ".join(ready) or tr("none"))
    if len(ready) < len(columns):
        return tr("{ready} of {total} ({names}); the others are listed below with why.", **fields)
    return tr("{ready} of {total} ({names}).", **fields)


def ready_line(columns: list[Column]) -> str:
    """The state line before any run: the sizes this machine has."""
    return tr("**Ready.** Sizes here: {sizes}", sizes=summary(columns))


def check_inputs(prompt, seed, max_new_tokens) -> tuple[str, SamplingParams]:
    """The prompt, and the settings every size samples with: the same seed, DEFAULTS' temperature and top-k."""
    prompt = check_text("prompt", prompt)
    if not prompt.strip():
        raise ValueError(tr("`prompt` has to contain some text: every size continues the same prompt"))
    try:
        seed = check_int("seed", seed, 0, MAX_SEED)
    except ValueError:  # -1 (random) is a seed elsewhere, not here: one message for every seed refused
        raise ValueError(tr("`seed` has to be an integer in [0, {high}]: every size draws with the same seed, but is "
                            "{value}", high=MAX_SEED, value=shown(seed))) from None
    refuse_empty("max_new_tokens", max_new_tokens, *NEW_TOKENS[:2])
    max_new_tokens = check_int("max_new_tokens", max_new_tokens, *NEW_TOKENS[:2])  # the slider's range
    return prompt, SamplingParams(max_new_tokens=max_new_tokens, seed=seed)


def make_run(sizes: SizeRunner):
    def run(prompt: str, seed: float, max_new_tokens: float):
        """Stream every size's text into its column, then its figures."""
        with user_facing_errors():
            prompt, params = check_inputs(prompt, page_seed(seed, random=False), max_new_tokens)
        columns: list[Column] = []
        try:
            with user_facing_errors():  # another run still finishing, or an error past one size's own
                for columns in sizes.run(prompt, params):
                    active = next((c for c in columns if c.state in UNFINISHED), None)
                    ready = [c for c in columns if c.state != "skipped"]
                    points = chart_data(columns)
                    if active is not None:
                        state = tr(DOING[active.state], model=active.planned.source, i=ready.index(active) + 1,
                                   n=len(ready))
                    elif len(points) >= 2:
                        state = tr("**Done.** Compare the texts, then the surprise of each size at the human "
                                   "paragraph.")
                    else:  # no chart: why, and what would give one
                        failed = any(c.state == "failed" for c in columns)
                        state = tr(TOO_FEW if failed else ONE_SIZE)
                        if any(c.state == "skipped" for c in columns):
                            state += " " + tr(SEE_NOT_RUN)
                    chart = gr.LinePlot(points, visible=len(points) >= 2, x_title=tr(X_TITLE), y_title=tr(Y_TITLE))
                    yield (state, render_cards(columns), figures_table(columns), chart,
                           gr.Column(visible=len(points) >= 2),  # one point: no line
                           [replace(c) for c in columns])  # as drawn now (the runner goes on changing its own)
        except gr.Error:  # the sizes it left unfinished say so, then the error says why
            if any(c.state in UNFINISHED for c in columns):
                line, cards, table, shown = cut_short(columns, "failed")
                yield line, cards, table, gr.skip(), gr.skip(), shown
            raise

    return run


def running() -> tuple:
    """Run pressed: no second run meanwhile, and Stop can be pressed (also while the run waits its turn)."""
    return gr.Button(interactive=False), gr.Button(interactive=True)


def after_run(columns: list[Column]) -> tuple:
    """The run's .then, at its end or at Stop (Gradio fires no .then for a run that failed): Run is free again, Stop is
    not. A run that left sizes unfinished was stopped: they say so, and the state line too. A finished run, or one
    that never began (stopped while it waited its turn), keeps what the page shows: nothing to claim stopped."""
    buttons = gr.Button(interactive=True), gr.Button(interactive=False)
    if not any(c.state in UNFINISHED for c in columns):
        return gr.skip(), gr.skip(), gr.skip(), gr.skip(), *buttons
    return *cut_short(columns, "stopped"), *buttons


def not_taken() -> tuple:
    """The run's .failure: it failed (its error says why; the run marked its unfinished sizes), the server never took
    it, or Stop ended it (then after_run follows). Run is free again, Stop is not."""
    return gr.Button(interactive=True), gr.Button(interactive=False)


def cut_short(columns: list[Column], how: str) -> tuple[str, str, Styler, list[Column]]:
    """The state line, cards, table and columns of a run that ended before its sizes did: those say `how` it ended,
    "stopped" or "failed"."""
    columns = [replace(c, state=how) if c.state in UNFINISHED else c for c in columns]
    if how == "failed":
        line = tr("**Not finished:** an error ended the run. The sizes that finished keep their text and figures.")
    elif any(c.state == "done" for c in columns):
        line = tr("**Stopped.** The sizes that finished keep their text and figures.")
    else:
        line = tr("**Stopped** before any size finished.")
    return line, render_cards(columns), figures_table(columns), columns


def make_api(sizes: SizeRunner, default_prompt: str):
    def scale(prompt: str = default_prompt, seed: int = DEFAULT_SEED) -> list[dict]:
        """Every size's text for the prompt and seed (default number of new tokens), with its figures; sizes that
        cannot run here have state "skipped" and the reason in "note"."""
        with user_facing_errors():
            prompt, params = check_inputs(prompt, seed, NEW_TOKENS[2])
            columns = list(sizes.run(prompt, params))[-1]  # the same list, updated to the end
        return [c.figures() for c in columns]

    return scale


def render_cards(columns: list[Column]) -> str:
    """The sizes that run, side by side (each a card with its text and figures), then the ones that do not, listed."""
    cards, skipped = [], []
    for c in columns:
        p = c.planned
        size = tr("{n}M parameters", n=number(p.parameters / 1e6, f",.{1 if p.parameters < 1e7 else 0}f")) \
            if p.parameters else tr("size unknown")  # 4.2M as the figures table has it; 124M (not 124.4M)
        if c.state == "skipped":
            line = tr("{model} ({size}): {why}", model=f"<b>{html.escape(p.source)}</b>", size=size,
                      why=code_spans(reason(c.note)))  # French puts a space before the colon
            skipped.append(f"<li>{line}</li>")
            continue
        figures = []
        if c.memory_bytes is not None:
            figures.append(tr("memory {size}", size=bytes_text(c.memory_bytes)))
        if c.tokens_per_s:
            figures.append(tr("{n} tokens/s", n=number(c.tokens_per_s, ".1f")))
        if c.bits_per_token is not None:
            figures.append(tr("<b>{bits} bits per token</b> on the human paragraph", bits=number(c.bits_per_token, ".2f")))
        text = html.escape(c.text)
        body = f"<p class='scale-text'><span class='scale-prompt'>\u2026</span>{text}</p>" if c.text else ""  # i18n: not shown
        note = f"<p class='scale-note'>{html.escape(reason(c.note))}</p>" if c.note else ""
        cards.append(f"<div class='scale-card scale-{c.state}' data-model='{html.escape(p.source)}'>"  # i18n: not shown
                     f"<h4>{html.escape(p.source)}</h4><p class='scale-size'>{size} \u00b7 "
                     f"<span class='scale-state'>{html.escape(tr(STATES[c.state]))}</span></p>{body}"
                     f"<p class='scale-figures'>{DOT.join(figures)}</p>{note}</div>")
    not_run = html.escape(tr("Not run here"))
    listed = f"<div class='scale-skipped'><p><b>{not_run}</b></p><ul>{''.join(skipped)}</ul></div>"  # i18n: not shown
    return f"<div class='scale-grid'>{''.join(cards)}</div>{listed if skipped else ''}"  # i18n: not shown (markup)


def reason(note: str) -> str:
    """A size's note, written by gpt2_core in English, in the page's language: why it is skipped (SKIP_REASONS), or
    why it failed (gpt2_core's messages that demo/errors.py translates); any other note as it is."""
    for template, pattern in template_patterns(SKIP_REASONS):
        if found := pattern.fullmatch(note):
            fields = fields_of(found)
            if "precision" in fields:
                fields["precision"] = tr(fields["precision"])  # "int8 (fast on CPU)"; fp16 and fp32 as they are
            return tr(template, **fields)
    return in_page_language(note)


def code_spans(text: str) -> str:
    """A note with `commands` in backticks, as HTML with <code>."""
    parts = html.escape(text).split("`")
    return "".join(f"<code>{part}</code>" if i % 2 else part for i, part in enumerate(parts))


def figures_table(columns: list[Column]) -> Styler:
    """The figures of the sizes that ran, its column names and numbers in the request's language (the cells keep
    their values, so a column still sorts by number; the page shows each as the language writes it)."""
    rows = [{tr("model"): c.planned.source,
             tr("parameters (M)"): c.shown_millions,
             tr("memory"): bytes_text(c.memory_bytes) if c.memory_bytes else "",
             tr("tokens/s"): round(c.tokens_per_s, 1) if c.tokens_per_s else None,
             tr("bits per token"): c.shown_bits,
             tr("state"): tr(STATES[c.state])} for c in columns if c.state != "skipped"]
    frame = pd.DataFrame(rows)
    lang = language()  # the request's, read here: Gradio writes the cells out later, outside the request
    specs = {tr("parameters (M)"): ",.1f", tr("tokens/s"): ",.1f", tr("bits per token"): ".2f"}
    return frame.style.format({name: partial(number, spec=spec, lang=lang) for name, spec in specs.items()
                               if name in frame}, na_rep="")


def chart_data(columns: list[Column]) -> pd.DataFrame:
    """The chart's points, rounded as the figures table shows them (a point's tooltip shows its values as they are)."""
    done = [c for c in columns if c.bits_per_token is not None and c.planned.parameters]
    return pd.DataFrame({"parameters (millions)": [c.shown_millions for c in done],
                         "bits per token": [c.shown_bits for c in done],
                         "model": [c.planned.source for c in done]})


CSS = """
.scale-grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(230px, 1fr)); gap: 12px; }
.scale-card { border: 1px solid var(--border-color-primary); border-radius: 8px; padding: 10px 12px; }
.scale-card h4 { margin: 0; font-size: 1.15rem; }
.scale-card p { margin: 4px 0; }
.scale-size, .scale-note { color: var(--body-text-color-subdued); font-size: 0.9rem; }
.scale-skipped { margin-top: 10px; color: var(--body-text-color-subdued); }
.scale-skipped ul { margin: 0; }
.scale-writing, .scale-loading { border: 2px solid var(--color-accent); }
.scale-text { white-space: pre-wrap; }
.scale-prompt { color: var(--body-text-color-subdued); }
#scale-figures th .header { word-break: normal; overflow-wrap: normal; hyphens: none; }
"""

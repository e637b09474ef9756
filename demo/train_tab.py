"""The Build your own tab: train a tiny GPT-2 from nothing, or fine-tune the loaded one, on a text, and watch it learn.

The loss curve (training and held-out validation) and a sample from a fixed prompt arrive up to 20 times over the run
(as often as a quarter of its time allows, demo/training.py), the samples stacked so that the class sees noise turn into
words. One run at a time, beside serving (demo/training.py); on when the app serves only this machine, off for others
unless --allow-training. At the end, the model downloads as a zip.
The status counts time from the press of Start, the preparation (starting, the vocabulary or GPT-2's weights) included,
and the time left from the run's own step count and pace once it knows them. Stop can be pressed while the visitor's
run goes on (the run's updates turn it on and off); once pressed, the status says the run is stopping until it has
saved, then that it was stopped.
"""

from __future__ import annotations

import functools
import html
import json
import math
import re
import time
from pathlib import Path

import gradio as gr
import pandas as pd

from demo.errors import in_page_language, markdown_text, message_markdown, page_error, page_info, user_facing_errors
from demo.i18n import SOURCE, T, language, tr
from demo.knobs import refuse_empty, typed_values
from demo.links import TRAIN_MINUTES, TabParts
from demo.model_panel import ModelPanel, refresh
from demo.models import AppModels
from demo.save_view import save_png_button
from demo.training import BUSY, EXIT_CODE, TrainingBusyError, TrainingJobs, seconds_left
from gpt2_core.checkpoint import BUNDLED
from gpt2_core.generate.settings import check_int
from gpt2_core.train.loop import SIZES

TEXTS = Path(__file__).resolve().parent.parent / "assets" / "texts"
# The choices' English labels are also their values, which the handlers read (the page shows them translated)
BUNDLED_TEXT = "Shakespeare's plays (bundled, 5 MB)"  # i18n: key
OWN_TEXT = "My own text (paste or upload below)"  # i18n: key
SCRATCH = "From scratch: a tiny GPT-2 (4M parameters) and its own vocabulary"  # i18n: key
FINE_TUNE = "Fine-tune the model that serves this page"  # i18n: key
MAX_TEXT_CHARS = 5_000_000  # a few MB: seconds to tokenize, and a run of minutes sees most of it
MIN_TEXT_CHARS = 20_000  # shorter texts cannot be split into training and validation windows
POLL_S = 1.0
TRAINING_OFF = ("**Training is off on this server**: it serves many visitors, and a training run takes its processor "
                "for minutes. The host can turn it on with `--allow-training`.")  # i18n: key
X_TITLE, Y_TITLE, LEGEND_TITLE = "training step", "cross-entropy (nats per token)", "split"  # i18n: key
# A from-scratch run that ends above this validation loss still writes mostly noise (the bundled model's samples were
# words from 5.14, its first evaluation under it): the status says how far it has to go. A 1-minute run on a busy
# 2-core machine ended at 7.12, its samples line breaks and pieces of words, and a teacher was not told why.
WORDS_LOSS = 5.5
STILL_NOISE = ("Its samples are still mostly noise: from scratch they turn into words below a validation loss of about "
               "{loss:.1f} (the bundled model's run was there by step {steps}), so more minutes show more.")  # i18n: key
SAMPLES_CSS = "pre { white-space: pre-wrap; overflow-wrap: anywhere; }"  # a long sample line wraps, never overflows

INTRO = """\
### Build your own GPT-2
"How to build OpenAI's GPT-2": train a small one here. **From scratch**, a tiny GPT-2 starts from random weights and \
a vocabulary learned from the text: watch its samples go from noise to words (getting subject and verb to agree is a \
feat). **Fine-tune** starts from the pre-trained GPT-2 instead: the same minutes on the same text, and what \
pre-training buys shows in the curve. The text's last tenth is held out to measure it (validation loss).
"""  # i18n: key


def train_tab(models: AppModels, jobs: TrainingJobs | None, panel: ModelPanel) -> TabParts:
    with gr.Blocks() as tab:
        gr.Markdown(T(INTRO))
        if jobs is None:
            gr.Markdown(T(TRAINING_OFF), elem_id="train-off")
            return TabParts(tab, {})
        with gr.Row(equal_height=False):
            with gr.Column(scale=2):
                source = gr.Radio([(T(BUNDLED_TEXT), BUNDLED_TEXT), (T(OWN_TEXT), OWN_TEXT)], value=BUNDLED_TEXT,
                                  label=T("Text"), elem_id="train-source")
                # The placeholder's key has the number in it (a T() text has no fields): the page test checks the key
                own = gr.Textbox(label=T("Your text"), lines=4, max_lines=8, elem_id="train-text",
                                 placeholder=T(f"At least {MIN_TEXT_CHARS:,} characters; a .txt file can be uploaded."))
                upload = gr.UploadButton(T("Upload a .txt"), file_types=[".txt"], size="sm", elem_id="train-upload")
                start_from = gr.Radio([(T(SCRATCH), SCRATCH), (T(FINE_TUNE), FINE_TUNE)], value=SCRATCH,
                                      label=T("Start"), elem_id="train-init")
                minutes = gr.Slider(*TRAIN_MINUTES, 2, step=1, label=T("Minutes to train"), elem_id="train-minutes")
                with gr.Row():
                    start = gr.Button(T("Start training"), variant="primary", elem_id="train-start")
                    stop = gr.Button(T("Stop"), variant="stop", interactive=False, elem_id="train-stop")
                status = gr.Markdown(T("**Ready.**"), elem_id="train-status")
                with gr.Row():
                    use = gr.Button(T("Use this model in my tabs"), interactive=False, size="sm", elem_id="train-use")
                    download = gr.DownloadButton(T("Download the model (.zip)"), interactive=False, size="sm",
                                                 elem_id="train-download")
                use_status = gr.Markdown(elem_id="train-use-status")
                shared = gr.Button(T("Back to the shared GPT-2"), visible=False, size="sm", elem_id="train-unuse")
            with gr.Column(scale=3):
                # Formats: a lone first point's axes would otherwise read "0.000000" and "8.300000". The page does not
                # translate a plot's titles: a translated page gets them from the load event below
                curve = gr.LinePlot(x="step", y="loss", color="split", label=T("Loss (lower is better)"),
                                    x_title=tr(X_TITLE), y_title=tr(Y_TITLE), x_axis_format="d", y_axis_format=".1f",
                                    elem_id="train-curve")
                save_png_button("train-curve", file="gpt2-training-loss.png", needs=".vega-embed",
                                caption=["{#train-status}"])  # the run: its steps, time and loss
                samples = gr.HTML(css_template=SAMPLES_CSS, js_on_load=None, elem_id="train-samples")
        tab.load(plot_titles, outputs=curve, api_visibility="private", queue=False, show_progress="hidden")
        upload.upload(read_upload, inputs=upload, outputs=[own, source], api_visibility="private")
        start.click(make_run(models, jobs), inputs=[source, own, start_from, minutes],
                    outputs=[status, curve, samples, download, use, stop], api_visibility="private", concurrency_limit=2,
                    show_progress="hidden", preprocess=False,  # minutes as typed, checked with the project's message
                    js=typed_values(None, None, None, "train-minutes"))
        stop.click(make_stop(jobs), outputs=[status, stop], api_visibility="private", queue=False)
        # The page's model panel (rendered elsewhere on the page) is redrawn by the same events
        use.click(make_use(models, jobs), outputs=[use_status, shared, *panel.shows], api_visibility="private",
                  concurrency_limit=1, show_progress="minimal")
        shared.click(make_use_shared(models), outputs=[use_status, shared, *panel.shows], api_visibility="private",
                     queue=False)
    return TabParts(tab, {"minutes": minutes})


def plot_titles():
    """The loss curve's titles in the page's language (the page translates labels, not a plot's titles)."""
    if language() == SOURCE:
        return gr.skip()
    return gr.LinePlot(x_title=tr(X_TITLE), y_title=tr(Y_TITLE), color_title=tr(LEGEND_TITLE))


def read_upload(file) -> tuple[str, str]:
    with user_facing_errors():
        try:
            text = Path(file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise ValueError(tr("`file` has to be a UTF-8 text file, but could not be read: {why}", why=e)) from e
        check_text_size(text)
    return text, OWN_TEXT


def check_text_size(text: str) -> None:
    """The text's length in characters, each run of spaces and line breaks counted as one: 30,000 spaces are no text
    to train on, and would pass a plain count only to fail in the trainer."""
    length = len(" ".join(text.split()))
    if not MIN_TEXT_CHARS <= length <= MAX_TEXT_CHARS:
        raise ValueError(tr("`text` has to be {low:,} to {high:,} characters long (a run of spaces counts as one), "
                            "but has {length:,}", low=MIN_TEXT_CHARS, high=MAX_TEXT_CHARS, length=length))


STOPPING = ("**Stopping:** measuring the loss one last time and saving the model as it is\u2026 "  # i18n: key
            "{seconds:.0f} s so far.")
STILL_RUNNING = ("Your run is still going, with the text and the {minutes} minutes it started with. Press "  # i18n: key
                 "**Stop** to save it, then **Start training** for another.")


def make_run(models: AppModels, jobs: TrainingJobs):
    def run(source: str, own: str, start_from: str, minutes: float, request: gr.Request):
        """Start (or follow) this visitor's run; redraw its curve and samples until it ends. Stop can be pressed
        while it goes on and no stop was asked (by this page or another event that follows the same run)."""
        try:
            with user_facing_errors():
                text = (TEXTS / "shakespeare-plays.txt").read_text(encoding="utf-8") if source == BUNDLED_TEXT else own
                check_text_size(text or "")
                refuse_empty("minutes", minutes, *TRAIN_MINUTES)
                minutes = check_int("minutes", minutes, *TRAIN_MINUTES)
                init = "tiny" if start_from == SCRATCH else models.gpt2.source
                running = jobs.current(request.session_hash)
                if running is not None and not running.finished:  # Start again while it runs: it goes on as it started
                    page_info(tr(STILL_RUNNING, minutes=f"{running.minutes:g}"))
                try:
                    job = jobs.start(request.session_hash, text, init=init, minutes=float(minutes))
                except TrainingBusyError as e:
                    raise page_error(tr(BUSY, seconds=e.seconds)) from None
        except gr.Error as e:  # the status line says it too, where the eyes are (the toast is in a corner)
            yield (tr("**Not started.** {why}", why=message_markdown(e.message)), *[gr.skip()] * 5)
            raise
        seen, seen_at = None, time.monotonic()  # evaluations drawn so far, and when the last of them arrived
        while True:
            finished = job.finished
            saved = finished and jobs.model_dir(request.session_hash) is not None
            archive = jobs.zip(request.session_hash) if saved else None  # seconds on a busy host: the time shown counts them
            evaluations, now = list(job.evaluations), time.monotonic()  # a copy: the run's reader appends to it
            new = len(evaluations) != seen
            if new:
                seen, seen_at = len(evaluations), now
            status = progress(job, evaluations, finished, elapsed_s=now - job.started, since_eval_s=now - seen_at)
            # The curve and samples are sent when they change: a plot sent again is drawn again, and flickers. Until
            # the first evaluation the plot is cleared, not drawn without data (its lines and y title would then be
            # missing from the picture, though in the page, until the window is resized)
            if new:
                curve, samples = plotted(evaluations), samples_of(evaluations)
            else:
                curve, samples = gr.skip(), gr.skip()
            yield (status, curve, samples,
                   gr.DownloadButton(value=archive, interactive=saved),
                   gr.Button(interactive=saved), gr.Button(interactive=not finished and not job.stop_asked))
            if finished:
                return
            time.sleep(POLL_S)

    return run


def make_use(models: AppModels, jobs: TrainingJobs):
    def use(request: gr.Request) -> tuple:
        """This page's other tabs use the model just trained; other visitors keep the shared one."""
        with user_facing_errors():
            run = jobs.current(request.session_hash)
            out_dir = jobs.model_dir(request.session_hash)
            if run is None or out_dir is None:
                raise ValueError(tr("there is no finished model of yours to use: train one first"))
            start = tr("from scratch") if run.init in SIZES else tr("fine-tuned {model}", model=Path(run.init).name)
            steps = run.evaluations[-1]["step"] if run.evaluations else 0
            name = tr("your model ({start}, {steps} steps)", start=start, steps=steps)  # in the language of its page
            models.own.adopt(request.session_hash, str(out_dir), name)
        return (tr("**{name}** now serves Generate, Next word, Spot the machine, BERT vs GPT-2, Inside and Layers **on "
                   "this page only**: other visitors keep the shared GPT-2. Reloading the page also goes back to it.",
                   name=name),
                gr.Button(visible=True), *refresh(models, request.session_hash))

    return use


def make_use_shared(models: AppModels):
    def use_shared(request: gr.Request) -> tuple:
        models.own.drop(request.session_hash)
        return (tr("This page uses the shared GPT-2 again."), gr.Button(visible=False),
                *refresh(models, request.session_hash))

    return use_shared


def make_stop(jobs: TrainingJobs):
    def stop(request: gr.Request) -> tuple:
        """Ask this visitor's run to stop; the run's own updates go on until it has saved. With no run going (the
        button is off then) nothing is stopped, and the status is left as it is."""
        run = jobs.stop(request.session_hash)
        if run is None:
            return gr.skip(), gr.Button(interactive=False)
        return tr(STOPPING, seconds=time.monotonic() - run.started), gr.Button(interactive=False)

    return stop


def progress(job, evaluations: list[dict], finished: bool, *, elapsed_s: float, since_eval_s: float) -> str:
    """The run's state. `elapsed_s` counts from the press of Start, preparation included; `since_eval_s` is the time
    since the last evaluation arrived. Once Stop was pressed, the run is stopping until it ends, then stopped."""
    last = evaluations[-1] if evaluations else None
    if job.errors:
        return tr("**Training failed:** {why}", why=markdown_text(failure(job.errors[-1])))
    if job.stop_asked and finished:
        if last is None:  # stopped before the trainer could catch the signal: it saved nothing
            return tr("**Stopped** before its first step: there is no model to save.")
        return tr("**Stopped** after {steps} steps and {seconds:.0f} s, preparation included: validation loss "
                  "{loss:.2f}. The model is saved as it was: download it below.", steps=last["step"],
                  seconds=elapsed_s, loss=last["val_loss"])
    if job.stop_asked:
        return tr(STOPPING, seconds=elapsed_s)
    if finished and last:
        done = tr("**Done** after {steps} steps and {seconds:.0f} s, preparation included: validation loss {loss:.2f}. "
                  "Download the model below.", steps=last["step"], seconds=elapsed_s, loss=last["val_loss"])
        if job.init in SIZES and last["val_loss"] > WORDS_LOSS and (steps := steps_to_words()):
            done += " " + tr(STILL_NOISE, loss=WORDS_LOSS, steps=steps)
        return done
    if last is None:
        if job.init in SIZES:
            return tr("**Preparing:** reading the text and building the vocabulary\u2026 {seconds:.0f} s so far.",
                      seconds=elapsed_s)
        return tr("**Preparing:** reading the text and loading GPT-2's weights\u2026 {seconds:.0f} s so far.",
                  seconds=elapsed_s)
    left = seconds_left(evaluations, job.minutes, elapsed_s=elapsed_s, since_eval_s=since_eval_s)
    values = {"step": last["step"], "total": last.get("total_steps"), "loss": last["val_loss"],
              "speed": last["tokens_per_s"], "seconds": elapsed_s, "left": left}
    if last["step"] == 0:  # no step yet, so no speed: the loss of the untrained (or not yet fine-tuned) model
        return tr("**Training\u2026** validation loss at the start {loss:.2f}; the first steps are timed to fit the "
                  "minutes. {seconds:.0f} s so far with the preparation, about {left:.0f} s left. **Stop** saves it as "
                  "it is.", **values)
    if values["total"]:
        return tr("**Training\u2026** step {step} of {total}, validation loss {loss:.2f}, {speed:,} tokens/s; "
                  "{seconds:.0f} s so far with the preparation, about {left:.0f} s left. **Stop** saves it as it is.",
                  **values)
    return tr("**Training\u2026** step {step}, validation loss {loss:.2f}, {speed:,} tokens/s; {seconds:.0f} s so far "
              "with the preparation, about {left:.0f} s left. **Stop** saves it as it is.", **values)


@functools.cache
def steps_to_words() -> int | None:
    """The steps the bundled model's own run (the same tiny GPT-2, on the plays) took to a validation loss of
    WORDS_LOSS, from its training record; None where the record cannot be read."""
    try:
        curve = json.loads((BUNDLED["mini-gpt2"] / "training.json").read_text(encoding="utf-8"))["curve"]
        return next(e["step"] for e in curve if e["val_loss"] <= WORDS_LOSS)
    except (OSError, ValueError, KeyError, TypeError, StopIteration):
        return None


def failure(line: str) -> str:
    """The last line the training process wrote on failing, in the page's language where it is one of gpt2_core's
    messages ("python -m gpt2_core train: error: `text` is too short to train on: ...") or the exit code."""
    command, said, message = line.rpartition(": error: ")
    if said:
        return command + said + in_page_language(message)
    return in_page_language(line, (EXIT_CODE,))


def curve_of(evaluations: list[dict]) -> pd.DataFrame:
    """The loss curve's points, typed from the first (an empty frame's object columns would make the axes labels)."""
    rows = [(e["step"], e[key], name) for e in evaluations
            for key, name in (("train_loss", tr("training")), ("val_loss", tr("validation (held out)")))]
    return pd.DataFrame(rows, columns=["step", "loss", "split"]).astype(
        {"step": "int64", "loss": "float64", "split": "string"})


def plotted(evaluations: list[dict]):
    """The plot's update: its points, and while there is one evaluation a y range around it (Vega's own range around
    two equal losses labels its axis "8.3" five times)."""
    if not evaluations:
        return None
    curve = curve_of(evaluations)
    low, high = curve["loss"].min(), curve["loss"].max()
    if len(evaluations) > 1 or not (math.isfinite(low) and math.isfinite(high)):
        return gr.LinePlot(value=curve, y_lim=None)
    top = math.ceil(high)
    return gr.LinePlot(value=curve, y_lim=[min(top - 2, math.floor(low)), top])


def shown_sample(sample: str) -> str:
    """A sample as the page shows it: at most 300 characters, without the replacement characters that a UTF-8
    character cut between tokens decodes to, and 3 or more line breaks in a row written as one line "⏎×9": an early
    model writes mostly line breaks (the plays' commonest token), and a 1-minute run's samples made the page 3,000 px
    tall, words far apart."""
    text = sample.replace("\ufffd", "").strip()[:300]
    return re.sub(r"(?:[ \t]*\n){3,}", lambda run: f"\n\u23ce\u00d7{run.group().count(chr(10))}\n", text)


def samples_of(evaluations: list[dict]) -> str:
    if not evaluations:
        return ""
    blocks = [tr("<p><strong>Step {step}</strong> (validation loss {loss:.2f})</p>", step=e["step"], loss=e["val_loss"])
              + f"<pre>{html.escape(shown_sample(e['sample']), quote=False)}</pre>"
              for e in reversed(evaluations)]  # the newest first: the class watches the text improve
    return tr("<h4>Samples from the same prompt, newest first</h4>") + "".join(blocks)

"""The model panel: which GPT-2 is loaded (size, device, precision, memory), and a picker over the GPT-2 family.

The picker offers OpenAI's sizes (and distilgpt2, and the model the app started with), each with its estimated
weight memory per precision. Other checkpoints come only from the command line or environment, never from the page.
A switch is shared by everyone on the app: requests already running finish on the old model (see demo/models.py).
So switching is a teacher's control: on when the app serves only this machine, off when it serves others (--host 0.0.0.0,
Spaces) unless the host allows it (AppConfig.model_switch_allowed). Off, the page shows the model and no picker, and
no switch event exists. Every page re-reads which model serves every REFRESH_S seconds, so a switch shows everywhere.
A visitor who chose their own trained model (Build your own) sees it named here, on their page only.
"""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from demo.errors import markdown_text, size_text, user_facing_errors
from demo.i18n import T, number, tr
from demo.models import LOAD_ERRORS, AppModels, ModelBusyError
from demo.precision_notes import COMPILING, int8_line, meaning
from gpt2_core import PRESETS
from gpt2_core.checkpoint import BUNDLED
from gpt2_core.memory import PRECISION_LABELS, PRECISIONS, estimate_weight_bytes, readable_bytes
from gpt2_core.scale import locate

REFRESH_S = 15  # how often a page re-reads which model is serving


@dataclass
class ModelPanel:
    blocks: gr.Blocks
    shows: list  # the banner and the info line, as `refresh` returns them (other tabs' events may redraw them)


def model_panel(models: AppModels, *, allow_switch: bool) -> ModelPanel:
    """The banner, the info line and the memory table are written in the page's language by the page's load event
    (`refresh`, and `memory_table`); as built here, they hold at most one text for the browser to translate each."""
    with gr.Blocks() as panel:
        first = unavailable_markdown(models, layout=True)
        banner = gr.Markdown(first, visible=bool(first), elem_id="model-unavailable")
        info = gr.Markdown(startup_info(models), elem_id="model-info")
        if allow_switch:
            with gr.Accordion(T("Switch model (for everyone using this app)"), open=False, elem_id="model-picker"):
                table = gr.Markdown()
                with gr.Row(equal_height=True):
                    choice = gr.Dropdown(picker_choices(models, layout=True), value=current_choice(models),
                                         label=T("GPT-2 model"), scale=3, elem_id="model-choice")
                    load = gr.Button(T("Load model"), scale=1, elem_id="load-model")
                status = gr.Markdown(elem_id="model-switch-status")
            load.click(make_switch(models), inputs=choice, outputs=[banner, info, status, choice],
                       api_visibility="private", concurrency_limit=1, show_progress="full")
            panel.load(memory_table, outputs=table, api_visibility="private", queue=False, show_progress="hidden")
        elif models.public and not models.gpt2.error:
            gr.Markdown(T(SWITCH_OFF_LINE), elem_id="model-switch-off")
        gr.on([panel.load, gr.Timer(REFRESH_S).tick], make_refresh(models), outputs=[banner, info],
              api_visibility="private", queue=False, show_progress="hidden")
    return ModelPanel(panel, [banner, info])


def startup_info(models: AppModels) -> str:
    """The info line as the page is built: the model's name (one translated word: Gradio's page translates one marker
    per text); the page's load event writes the whole line in its language at once."""
    lm = models.gpt2.current
    return "**" + T("Model") + f"** `{lm.name if lm is not None else models.gpt2.source}`"


def make_refresh(models: AppModels):
    def refresh_page(request: gr.Request) -> tuple[gr.Markdown, str]:
        return refresh(models, request.session_hash)

    return refresh_page


def refresh(models: AppModels, session: str | None = None) -> tuple[gr.Markdown, str]:
    """The banner and the info line as they are now (another visitor may have switched the model)."""
    banner = unavailable_markdown(models)
    return gr.Markdown(banner, visible=bool(banner)), info_markdown(models, session)


def make_switch(models: AppModels):
    def switch(choice: str, request: gr.Request = None, progress: gr.Progress = gr.Progress()) -> tuple:  # noqa: B008
        """(banner, info, status, picker): a failed switch says which model still serves and resets the picker."""
        session = getattr(request, "session_hash", None)
        with user_facing_errors():
            if choice not in models.choices:
                raise ValueError(tr("`model` has to be one of {choices}, but is {choice!r}",
                                    choices=", ".join(models.choices), choice=choice))
            if choice == models.gpt2.source and models.gpt2.current is not None:
                return (*refresh(models, session), tr("**{name}** is already loaded.", name=choice), gr.skip())
            progress(0.1, desc=tr("Loading {name}: the first time, its weights are downloaded\u2026", name=choice))
            try:
                models.gpt2.switch(choice)
            except (*LOAD_ERRORS, ModelBusyError) as e:
                serving = models.gpt2.current
                still = (tr("**{name}** is still serving.", name=serving.name) if serving is not None
                         else tr("No model is loaded."))
                failed = tr("Could not load **{name}**: {why}", name=choice, why=markdown_text(str(e)))
                return (*refresh(models, session), f"{failed}  \n{still}",
                        gr.Dropdown(choices=picker_choices(models), value=current_choice(models)))
        return (*refresh(models, session),
                tr("Loaded **{name}**. New requests use it; running ones finish on the old model.", name=choice),
                gr.skip())

    return switch



def info_markdown(models: AppModels, session: str | None = None) -> str:
    own = models.own.holder(session)
    lm = own.current if own is not None else models.gpt2.current
    if lm is None:
        return tr("**Model** `{name}`: not loaded", name=models.gpt2.source)
    d = lm.describe()  # the backend's own description: local or on a model server
    whose = (tr(" (on this page only; **Back to the shared GPT-2** in Build your own)") if own is not None else "")
    parts = [tr("**Model** `{name}`", name=d.name) + whose]
    if d.parameters:
        parts.append(tr("**{millions}M** parameters", millions=number(d.parameters / 1e6, ".1f")))
    parts.append(tr("**runs on** {where}", where=d.where) if d.remote else tr("**device** {where}", where=d.where))
    if d.precision:
        parts.append(tr("**precision** {meaning}", meaning=meaning(d)))  # one line: what it is and what it means
    if d.memory_bytes:
        parts.append(tr("**memory** {size}", size=bytes_text(d.memory_bytes)))
    if d.remote and d.context:
        parts.append(tr("**context** {n} tokens", n=d.context))
    if d.decoding == "compiling":
        parts.append(tr(COMPILING))
    return " \u00b7 ".join(parts)


FALLBACK_LINE = "A small model trained on Shakespeare serves here, not GPT-2"  # i18n: key
# The banner's texts, each whole (the page as built translates one marker per text, so each is one key)
FALLBACK_PUBLIC = ("A small model trained on Shakespeare serves here, not GPT-2: GPT-2 could not be loaded on "  # i18n: key
                   "this server.")
FALLBACK_WHY = "A small model trained on Shakespeare serves here, not GPT-2: why"  # i18n: key
FALLBACK_ABOUT = ("It is a 4M-parameter GPT-2 this project trained on Shakespeare's plays (context 128 tokens): "  # i18n: key
                  "it writes verse-like text, not GPT-2's. Fix the above and restart the app for GPT-2.")
SERVER_PROBLEM = "GPT-2's model server cannot be used right now"  # i18n: key
SERVER_PROBLEM_AFTER = ("The page stays up: Generate and the other tabs work again as soon as this is fixed "  # i18n: key
                        "(this note goes away by itself).")
NOT_AVAILABLE_PUBLIC = ("### GPT-2 is not available\nGPT-2 could not be loaded on this server. The page works, but "  # i18n: key
                        "Generate and Compare need a model.")
NOT_AVAILABLE = "The page works, but Generate and Compare need a model: fix the above and restart the app."  # i18n: key
SWITCH_OFF_LINE = ("Switching the model is off on this shared page: one switch would change it for everyone here "  # i18n: key
                   "(the host can allow it with `--allow-model-switch`).")


def unavailable_markdown(models: AppModels, *, layout: bool = False) -> str:
    """What the banner above the tabs says: nothing while GPT-2 serves. A page served to others gets no host details
    (paths, errors, commands): only this machine's own page shows why and the fix. `layout`: the banner as the page is
    built, with one text for the browser to translate (the load event then writes all of it in the page's language)."""
    say = T if layout else tr
    lm = models.gpt2.current
    if lm is not None and lm.describe().remote:
        problem = lm.probe()  # asks the server again only while it is failing, at most every few seconds
        if problem:
            after = "" if layout else f"\n\n{tr(SERVER_PROBLEM_AFTER)}"
            return "### " + say(SERVER_PROBLEM) + f"\n{problem}{after}"
        return ""
    if models.gpt2.error is None:
        if models.gpt2.notice and models.gpt2.current is not None and models.gpt2.current.name in BUNDLED:
            if models.public:
                return str(say(FALLBACK_PUBLIC))
            about = "" if layout else f"\n\n{tr(FALLBACK_ABOUT)}"
            return "<details><summary>" + say(FALLBACK_WHY) + f"</summary>\n\n{models.gpt2.notice}{about}</details>"
        return ""
    if models.public:
        return str(say(NOT_AVAILABLE_PUBLIC))
    heading = ("### " + T("GPT-2 is not available") + f": `{models.gpt2.source}`" if layout else
               tr("### The GPT-2 model `{name}` is not available", name=models.gpt2.source))
    return f"{heading}\n{models.gpt2.error}" + ("" if layout else f"\n\n{tr(NOT_AVAILABLE)}")


def bytes_text(n: int) -> str:
    """A size as the page shows it: 1.57 GB, 497 MB; 1,57 GB in Spanish; 1,57 Go in French."""
    return size_text(readable_bytes(n))


def memory_table() -> str:
    names = [PRECISION_LABELS.get(p, p) for p in PRECISIONS]
    rows = [f"| {tr('Model')} | {tr('Parameters')} | " + " | ".join(names) + " |", "|---" * (2 + len(PRECISIONS)) + "|"]
    for name, config in PRESETS.items():
        sizes = " | ".join(bytes_text(estimate_weight_bytes(config, p)) for p in PRECISIONS)
        rows.append(f"| {name} | {number(config.num_parameters() / 1e6, '.0f')}M | {sizes} |")
    return (tr("Estimated weight memory per precision. A CPU runs **int8 (fast on CPU)** by default: int8 weights read "
               "a quarter of the bytes, so it decodes several times faster, with {int8}; `--exact` serves fp32. "
               "A GPU runs fp16, or int8 / nf4 (bitsandbytes) to fit a bigger model:", int8=int8_line())
            + "\n\n" + "\n".join(rows))


def picker_choices(models: AppModels, *, layout: bool = False) -> list[tuple[str, str]]:
    """The picker's (label, model): a size whose files are not on this machine says so (loading it downloads it, from
    the Hugging Face Hub, where the machine reaches it). `layout`: for the page as it is built (the browser translates)."""
    def label(name: str) -> str:
        if locate(name) is not None:
            return name
        return f"{name} (" + T("not downloaded") + ")" if layout else tr("{name} (not downloaded)", name=name)

    return [(label(name), name) for name in models.choices]


def current_choice(models: AppModels) -> str | None:
    return models.gpt2.source if models.gpt2.source in models.choices else None


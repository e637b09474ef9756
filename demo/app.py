"""The whole page: the model panel on top, then the tabs (Generate, Next word, Spot the machine, BERT vs GPT-2, Inside,
Layers, Scale, Build your own, Lesson), each built in its module; the Lesson's steps open the others.

    demo = build_demo(AppConfig.from_env_and_args())        # loads GPT-2 (or notes why it cannot)
    demo.launch(**config.launch_kwargs())

Tests pass `models=start_models(config, load_gpt2=..., load_bert=...)` to build on tiny checkpoints.
"""

from __future__ import annotations

import logging
from functools import partial

import gradio as gr
from starlette.middleware import Middleware

from demo import attention_maps, errors, i18n, lens_pictures, plot_aria, save_view, tokens
from demo.compare_tab import compare_tab
from demo.config import LOCAL_HOSTS, AppConfig
from demo.examples import load_examples
from demo.explore_tab import CSS as EXPLORE_CSS
from demo.explore_tab import explore_tab
from demo.generate_tab import CSS as GENERATE_CSS
from demo.generate_tab import generate_tab
from demo.i18n import LANGUAGES, T, tr
from demo.inside_tab import INTRO as INSIDE_INTRO
from demo.inside_tab import inside_tab
from demo.knobs import KEEP_TYPED
from demo.layers_tab import INTRO as LAYERS_INTRO
from demo.layers_tab import layers_tab
from demo.lesson_tab import CSS as LESSON_CSS
from demo.lesson_tab import Why, lesson_tab
from demo.links import TabParts, link_values, linked_inputs, note_markdown, opens_a_tab, read_link
from demo.model_panel import model_panel
from demo.models import AppModels, start_models
from demo.request_limits import SESSIONS, BodyLimit, body_limit
from demo.scale_tab import CSS as SCALE_CSS
from demo.scale_tab import INTRO as SCALE_INTRO
from demo.scale_tab import scale_tab
from demo.score_tab import score_tab
from demo.train_tab import INTRO as TRAIN_INTRO
from demo.train_tab import TRAINING_OFF, train_tab
from demo.training import TrainingJobs
from demo.unavailable import not_available, unavailable_tab
from demo.workspace import Workspace
from gpt2_core import threads
from gpt2_core.backend import ATTENTION, LENS, SCALE, TRAINING

log = logging.getLogger(__name__)

TITLE = "GPT-2 Playground"
TAB_LABELS = {"generate": "Generate", "explore": "Next word", "score": "Spot the machine",  # i18n: key
              "compare": "BERT vs GPT-2", "inside": "Inside", "layers": "Layers", "scale": "Scale",  # i18n: key
              "train": "Build your own", "lesson": "Lesson"}  # i18n: key
CSS = """
#model-unavailable { border-left: 4px solid #2563eb; padding: 0 0.75rem; background: #eff6ff; }  /* a calm line */
#model-unavailable:has(h3) { border: 2px solid #dc2626; border-radius: 8px; padding: 0 1rem; background: #fef2f2; }
#model-unavailable summary { cursor: pointer; }
.chart .bar { height: 14px; min-width: 3px; }  /* gr.Label's bars, thick enough to read from the back row */
/* Headings and status lines alone in a Markdown block: Gradio's block scrolls (overflow: auto), and bold text can be
   a pixel taller than it, a region that scrolls with nothing to focus (axe's scrollable-region-focusable; Scale's
   "Done." line did so now and then) */
#lesson-intro, #inside-gpt2-title, #inside-bert-title, #run-state, #stats, #scale-state, #train-status,
#train-use-status, #layers-note, #layers-summary, #explore-cut, #explore-drawn, #example-about
{ overflow: visible !important; }
#title h1 { margin: 0; font-size: 1.6rem; overflow-wrap: normal; word-break: keep-all; hyphens: none; }
#title { min-width: min(100%, 19rem) !important; }  /* on a phone "Large text" goes below, never into a word */
#title p { margin: 0; }
#languages { align-self: center; font-size: 15px; white-space: nowrap; }
#languages a { margin-right: 0.8em; }
#languages a[aria-current] { font-weight: 700; text-decoration: none; color: inherit; }
#run-state, #run-state p { font-size: 20px; min-height: 1.6em; }
.chart .label { font-size: 20px; }  /* a chart's words, from the back row */
.large-text .gradio-container { zoom: 1.25; }  /* "Large text": the page's 16 px become 20 px */
/* An event's error: its toast says what and why. Gradio also stamps "Error" over each of the event's outputs, which
   covered a tab's headings and text in red (a review, for a word of two tokens in Layers); those badges are hidden. */
.block > .wrap:has(> .error) { display: none !important; }
/* A phone: the 9 tab names in 3 rows (Gradio's 16 px on each side of a name took 4, 5 in Spanish, a fifth of the
   screen); each name is still a 32 px high target */
@media (max-width: 480px) { #page-tabs [role=tab] { padding-left: 5px; padding-right: 5px; font-size: 15px; } }
/* The keyboard's radio or checkbox: Gradio draws no ring on either (a Lesson step chosen with the arrows looked as
   before) */
.block label:has(input:is([type=radio], [type=checkbox]):focus-visible) { outline: 3px solid #1e3a8a;
  outline-offset: 2px; }
/* A parameter's name in a toast (errors.TOAST_CODE_JS), drawn as the run state's Markdown draws it */
[data-testid=toast-text] code { font-family: var(--font-mono); background: var(--code-background-fill);
  border-radius: var(--radius-sm); padding: 1px 4px; }
""" + (tokens.CSS + attention_maps.CSS + lens_pictures.CSS + SCALE_CSS + EXPLORE_CSS + GENERATE_CSS + LESSON_CSS
       + save_view.CSS)


# "Large text" for a projector: the choice is kept in this browser (localStorage) and applied as the page opens.
TOGGLE_LARGE_TEXT = """() => {
  const on = document.documentElement.classList.toggle('large-text');
  try { localStorage.setItem('gpt2-playground-large-text', on ? '1' : '0'); } catch (e) {}
}"""
# The language links keep the page's other link parameters (a lesson step, a share link's prompt) and mark the current
# language (Gradio has set <html lang> by the time the page script runs)
LANGUAGE_LINKS = """() => {
  const links = document.querySelectorAll('#languages a[data-lang]');
  const current = () => (document.documentElement.lang || 'en').split('-')[0];
  const mark = () => links.forEach((a) => {
    const params = new URLSearchParams(location.search);
    params.set('lang', a.dataset.lang);
    a.href = '?' + params.toString();
    if (a.dataset.lang === current()) a.setAttribute('aria-current', 'true'); else a.removeAttribute('aria-current');
  });
  mark();
  new MutationObserver(mark).observe(document.documentElement, {attributes: true, attributeFilter: ['lang']});
}"""
# A button turned off while it has the keyboard's focus (Generate as it starts to write, Stop when the run ends; Scale's
# Run and Stop, Build your own's) dropped the focus to the page's start, and a keyboard had to come back from the top.
# The focus goes to the button beside it that works instead (in its row), where it was the last thing focused.
HAND_FOCUS_ON = """() => {
  let last = null;
  document.addEventListener('focusin', (e) => { last = e.target; });
  // A click on the page's blank parts takes the focus to its body: the focus is not the button's to hand on then
  document.addEventListener('pointerdown', (e) => { if (last && !last.contains(e.target)) last = null; }, true);
  new MutationObserver((records) => {
    for (const {target: button} of records) {
      if (button !== last || !button.disabled) continue;
      const active = document.activeElement;
      if (active && active !== button && active !== document.body) continue;  // the focus went on elsewhere
      const next = [...(button.closest('.row')?.querySelectorAll('button') || [])]
        .find((other) => other !== button && !other.disabled && other.offsetParent);
      if (next) next.focus({preventScroll: true});  // a reader scrolled down to the text stays there
    }
  }).observe(document.body, {attributes: true, attributeFilter: ['disabled'], subtree: true});
}"""  # i18n: not shown (JavaScript)
# Gradio names each radio on its own ("radio-19", "radio-20"): every choice of a Radio was a Tab stop of its own
# (Inside's "Follow a word" had 17), and the arrows moved nowhere. As a radio group is meant to work: one Tab stop
# (the chosen radio, or the first), and the arrows choose the next or previous choice.
ROVE_RADIOS = """() => {
  const groups = new Map();
  document.querySelectorAll('.block input[type=radio]').forEach((radio) => {
    const block = radio.closest('.block');
    groups.set(block, [...(groups.get(block) || []), radio]);
  });
  groups.forEach((radios) => {  // a stop still chosen stays (Gradio unchecks the last choice only after the change)
    const stop = radios.find((r) => r.checked && r.tabIndex === 0) || radios.find((r) => r.checked) || radios[0];
    radios.forEach((radio) => { const index = radio === stop ? 0 : -1; if (radio.tabIndex !== index) radio.tabIndex = index; });
  });
}"""  # i18n: not shown (JavaScript)
RADIO_ARROWS = """() => {
  const choose = (chosen) => chosen.closest('.block').querySelectorAll('input[type=radio]')
    .forEach((radio) => { radio.tabIndex = radio === chosen ? 0 : -1; });
  document.addEventListener('change', (event) => {
    if (event.target.type === 'radio' && event.target.closest('.block')) choose(event.target);
  }, true);
  document.addEventListener('keydown', (event) => {
    const radio = event.target, step = {ArrowRight: 1, ArrowDown: 1, ArrowLeft: -1, ArrowUp: -1}[event.key];
    if (!step || event.altKey || event.ctrlKey || event.metaKey || event.shiftKey) return;  // Alt+Left: Back
    if (!(radio instanceof HTMLInputElement) || radio.type !== 'radio' || !radio.closest('.block')) return;
    const radios = [...radio.closest('.block').querySelectorAll('input[type=radio]')].filter((r) => !r.disabled);
    const next = radios[(radios.indexOf(radio) + step + radios.length) % radios.length];
    event.preventDefault();
    next.click();
    next.focus();
  }, true);
}"""  # i18n: not shown (JavaScript)
PAGE_JS = """() => {
  try {
    if (localStorage.getItem('gpt2-playground-large-text') === '1') document.documentElement.classList.add('large-text');
  } catch (e) {}
  (""" + KEEP_TYPED + """)();
  (""" + tokens.REMEMBER_CLICKED_TOKEN + """)();
  (""" + tokens.watch_page(tokens.NAME_BLANK_TOKENS, tokens.JOIN_TOKENS, tokens.FIRST_CHOSEN_TOKEN_STOP,
                            errors.toast_titles_js(), errors.TOAST_CODE_JS, i18n.DRAWN_NUMBERS, ROVE_RADIOS,
                            plot_aria.NAME_PLOTS) + """)();
  (""" + RADIO_ARROWS + """)();
  (""" + save_view.INSTALL + """)();
  (""" + HAND_FOCUS_ON + """)();
  (""" + LANGUAGE_LINKS + """)();
}"""


class Playground(gr.Blocks):
    """The app's Blocks: closing it also ends a training run and removes the app's temporary files."""

    def __init__(self, *args, workspace: Workspace, jobs: TrainingJobs | None, **kwargs):
        super().__init__(*args, **kwargs)
        self.workspace = workspace
        self.jobs = jobs

    def launch(self, *args, **kwargs):  # type: ignore[override]  # (Blocks.launch's many parameters, passed on)
        """Blocks.launch, with the limits of demo/request_limits.py however it is launched (app.py, tests, a host's
        own script): request bodies no larger than the page sends, and a bounded number of remembered sessions."""
        limit = body_limit(training=self.jobs is not None)
        app_kwargs = dict(kwargs.pop("app_kwargs", None) or {})
        app_kwargs["middleware"] = [*app_kwargs.get("middleware", []), Middleware(BodyLimit, max_bytes=limit)]
        kwargs.setdefault("max_file_size", limit)
        kwargs.setdefault("state_session_capacity", SESSIONS)
        return super().launch(*args, app_kwargs=app_kwargs, **kwargs)

    def close(self, verbose: bool = True) -> None:
        super().close(verbose)
        if self.jobs is not None:
            self.jobs.close()
        self.workspace.remove()


def build_demo(config: AppConfig, *, models: AppModels | None = None) -> Playground:
    models = models or start_models(config)
    examples = load_examples()
    workspace = Workspace()
    jobs = TrainingJobs(workspace) if config.training_allowed and not models.unavailable(TRAINING) else None
    # Built apart, placed with .render(); a model server serves the model it was started with: no switching
    panel = model_panel(models, allow_switch=config.model_switch_allowed and not config.backend)
    tabs = {"generate": generate_tab(models, examples, deadline_s=config.deadline_s, workspace=workspace),
            "explore": explore_tab(models, workspace=workspace),
            "score": score_tab(models, examples, workspace=workspace),
            "compare": compare_tab(models, examples)}
    here = "on ZeroGPU" if config.zero_gpu and not config.backend else "with this model server"  # i18n: key
    cannot: dict[str, Why] = {}  # tab -> the line it shows in place of its controls, for the lesson's steps that open it
    if reason := models.unavailable(ATTENTION):
        cannot["inside"] = partial(not_available, reason, here)  # remote mode: the server reports tokens, not attention
        tabs["inside"] = unavailable_tab(INSIDE_INTRO, reason, elem_id="inside-unavailable", api_name="attention",
                                         api_inputs=dict(text=str, layer=int, head=int), here=here)
    else:
        tabs["inside"] = inside_tab(models)
    if reason := models.unavailable(LENS):  # remote mode: the server reports the last layer's tokens only
        cannot["layers"] = partial(not_available, reason, here)
        tabs["layers"] = unavailable_tab(LAYERS_INTRO, reason, elem_id="layers-unavailable", api_name="layers",
                                         api_inputs=dict(text=str, target=str), here=here)
    else:
        tabs["layers"] = layers_tab(models, workspace=workspace)
    if reason := models.unavailable(SCALE):  # remote mode and ZeroGPU: no other sizes are loaded here
        cannot["scale"] = partial(not_available, reason, here)
        tabs["scale"] = unavailable_tab(SCALE_INTRO, reason, elem_id="scale-unavailable", api_name="scale",
                                        api_inputs=dict(prompt=str, seed=int), here=here)
    else:
        tabs["scale"] = scale_tab(models, examples, sources=config.scale_models,
                                  budget_bytes=config.scale_budget_bytes, device=config.device)
    if reason := models.unavailable(TRAINING):
        cannot["train"] = partial(not_available, reason, here)
        tabs["train"] = unavailable_tab(TRAIN_INTRO, reason, elem_id="train-unavailable", here=here)
    else:
        if jobs is None:
            cannot["train"] = partial(tr, TRAINING_OFF)
        tabs["train"] = train_tab(models, jobs, panel)
    lesson = lesson_tab(models, labels=TAB_LABELS, unavailable=cannot)
    tabs["lesson"] = lesson.parts
    # delete_cache: Gradio's copies of uploads and downloads older than an hour go hourly, and all at shutdown
    with Playground(title=TITLE, analytics_enabled=False, delete_cache=(3600, 3600), workspace=workspace,
                    jobs=jobs) as demo:
        with gr.Row(equal_height=False):
            # A translated subtitle also says that GPT-2's own text stays English (it learned from English pages):
            # one line more on those pages, none on the English one
            gr.Markdown(f"# {TITLE}\n" + T("OpenAI's GPT-2 (2019) writes one token at a time, each drawn from its "
                                             "predicted probabilities: see which, and why."), elem_id="title")
            with gr.Column(scale=0, min_width=280), gr.Row(elem_id="page-tools"):
                gr.HTML(" ".join(f'<a data-lang="{code}" lang="{code}" href="?lang={code}" title="{name}" '
                                 f'aria-label="{name}">{code.upper()}</a>' for code, name in LANGUAGES.items()),
                        min_width=130, elem_id="languages")
                gr.Button(T("Large text"), size="sm", min_width=120, elem_id="large-text").click(
                    None, js=TOGGLE_LARGE_TEXT, api_visibility="private")
        panel.blocks.render()
        link_note = gr.Markdown(visible=False, elem_id="link-note")
        with gr.Tabs(overflow_behavior="wrap", elem_id="page-tabs") as tab_strip:  # on a phone: all in view, wrapped
            for tab_id, parts in tabs.items():
                with gr.Tab(T(TAB_LABELS[tab_id]), id=tab_id) as tab_item:
                    parts.blocks.render()
                if parts.on_open is not None:
                    parts.on_open(tab_item)
        lesson.wire(tab_strip, tabs)
        demo.load(make_fill_from_link(tabs), outputs=[tab_strip, link_note, *linked_inputs(tabs)],
                  api_visibility="private", queue=False)
        demo.unload(make_forget_page(models, jobs))
    # Beyond the running events (Generate 16, Compare 4, others 4 at a time), `queue_size` more may wait; the next
    # visitor is told at once "This application is currently busy. Please try again." (Gradio's text for a full queue).
    demo.queue(default_concurrency_limit=4, max_size=config.queue_size)
    return demo


def make_forget_page(models: AppModels, jobs: TrainingJobs | None):
    def forget_page(request: gr.Request) -> None:
        """A closed page lets the model its visitor trained go (it closes when its last request ends), and its
        training run with its files."""
        models.own.drop(request.session_hash)
        if jobs is not None:
            jobs.forget(request.session_hash)

    return forget_page


def make_fill_from_link(tabs: dict[str, TabParts]):
    def fill_from_link(request: gr.Request) -> list:
        """The tab and inputs a share link asks for (demo/links.py), and a note naming any value it could not use."""
        link = read_link(dict(request.query_params))
        note = gr.Markdown(note_markdown(link.problems), visible=bool(link.problems))
        # Without a tab in the link, the tab strip is left alone: a visitor may have clicked a tab meanwhile
        selected = gr.Tabs(selected=link.tab) if opens_a_tab(request.query_params) else gr.skip()
        return [selected, note, *link_values(link, tabs)]

    return fill_from_link


def use_cpu_threads(config: AppConfig) -> None:  # i18n: not shown (the host's console)
    """Give PyTorch the CPU threads that `config.cpu_threads` decides (app.py, before any model loads)."""
    cores = threads.cpu_threads()
    chosen = config.cpu_threads(cores)
    if chosen is None or chosen == cores:
        return
    threads.use_cpu_threads(chosen)
    why = ("one core is left for the browser on this machine (--threads to choose)" if config.threads is None
           else "as --threads (GPT2_THREADS) says")
    log.info("PyTorch's CPU threads: %d, not %d: %s", chosen, cores, why)


def startup_message(demo: gr.Blocks, config: AppConfig) -> str:  # i18n: not shown (the host's console)
    """What the console says once the page is served: where, how to share it, and who may switch the model."""
    lines = [f"* Running on local URL:  {demo.local_url}"]
    if demo.share_url:
        lines.append(f"* Temporary public link: {demo.share_url}")
    else:
        lines.append("* For a temporary public link, restart with --share (or GPT2_SHARE=1).")
    where = 'this machine only' if config.host in LOCAL_HOSTS else 'other machines too'
    if config.backend:
        lines.append(f"* Serving {where}; GPT-2 runs on the model server at {config.backend} (remote mode).")
    elif config.zero_gpu:
        lines.append(f"* Serving {where}; GPT-2 runs on ZeroGPU, lent a GPU per request; training, the Scale tab and "
                     "switching the model are off.")
    else:
        switching = "on" if config.model_switch_allowed else "off (--allow-model-switch turns it on)"
        lines.append(f"* Serving {where}; switching the model from the page is {switching}.")
    return "\n".join(lines)


FONT_WEIGHTS = (400, 700)  # the font files the page loads: regular and bold (see launch_options)


def launch_options() -> dict:  # i18n: not shown (font names)
    """Look of the page, passed to launch() (Gradio 6 takes theme and CSS there); fonts are served locally."""
    # Served from Gradio's own static files. Its semibold (600) files hold a few dozen letters only (SourceSansPro-
    # SemiBold.woff2: 5 KB, "A", "B", a space, some Cyrillic), so a heading was drawn in two fonts; without a 600 face
    # the browser draws 600 from the whole 700 file (CSS picks the nearest heavier weight)
    fonts = dict(
        font=[gr.themes.LocalFont("Source Sans Pro", weights=FONT_WEIGHTS), "ui-sans-serif", "sans-serif"],
        font_mono=[gr.themes.LocalFont("IBM Plex Mono", weights=FONT_WEIGHTS), "ui-monospace", "monospace"])
    theme = gr.themes.Default(text_size="lg", **fonts).set(
        block_info_text_color="*neutral_600",  # the settings' explanations, readable on a projector
        body_text_color_subdued="*neutral_600",  # slider ends, the footer: Gradio's grey is 1.9:1
        block_label_text_color="*neutral_800",
        block_label_text_weight="600",
        # White on Gradio's orange is 2.8:1; a washed-out projector needs WCAG's 4.5:1 at least
        button_primary_background_fill="*primary_700",  # orange 700: 5.2:1
        button_primary_background_fill_hover="*primary_800",
        button_primary_text_color="white",
        color_accent="*primary_700",  # a chart's clicked bar and its word
        button_cancel_background_fill="#b91c1c",  # red 700: 6.5:1
        button_cancel_background_fill_hover="#991b1b",
        button_cancel_text_color="white",
    )
    # A link's ?lang= chooses the page's language: i18n.LinkLanguage sets it before Gradio starts
    return dict(theme=theme, css=CSS, js=PAGE_JS, i18n=i18n.i18n(), app_kwargs={"middleware": [Middleware(i18n.LinkLanguage)]})

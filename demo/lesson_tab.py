"""The Lesson tab: a guided lesson through GPT-2's story in the app's own tabs, one step at a time.

Each step (demo/lesson_steps.py) shows one idea, one action and one question, its answer behind a <details>; "Open in
<tab>" switches to the step's tab with its inputs filled, through the share links' reading and checking
(demo/links.py). Back, Next and the step list move through the steps; `?lesson=3` opens step 3, and "Copy link to this
step" writes that link, with `lock=1` when the teacher ticks the lock. On a page opened with `lock=1`, the texts a step
fills cannot be edited there (links.link_values' `locked`): the page's own state, never another visitor's.
A step whose tab cannot run here (remote mode, training off, ZeroGPU) says why instead of offering its button.

A step is shown in the page's language: its view is written by the server for each page (`tr`), the first one by the
tab's load event (the step a `?lesson=N` link asks for, else 1). Gradio's page translates only the first T() marker
of a text, and a step's card holds several, so the view is not built at start-up; the step list's names are T().

Gradio's gr.Walkthrough (5.45+) was tried first: its stepper disables every step after the current one, so a class
could not jump ahead, and those greyed labels are too faint to read; the step list here is a gr.Radio.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import gradio as gr

from demo.i18n import T, number, tr
from demo.lesson_steps import STEPS, Step
from demo.links import TabParts, copy_link, link_values, linked_inputs, read_link
from demo.models import AppModels
from demo.unavailable import as_markdown, bert_missing
from gpt2_core.checkpoint import BUNDLED

BUNDLED_NOTE = ("**Here** `{name}` serves, a small model this project trained on Shakespeare's plays, not "  # i18n: key
                "GPT-2: its list has {vocab} tokens, not 50,257, so it cuts more words into pieces, and it writes "  # i18n: key
                "like a play. The steps describe GPT-2.")  # i18n: key
INTRO = "### " + T("Lesson: how GPT-2 writes, step by step (each step one idea, one thing to try, one question)")
Why = Callable[[], str]  # the line saying why a tab cannot run here, written when called (in a request's language)
LOCKED_NOTE = "\N{LOCK} " + T("**Your teacher locked this lesson's texts:** the prompts a step opens cannot be edited "
                              "on this page. The settings and the tabs' buttons still work.")
COPY_STEP_LINK = "Copy link to this step"  # i18n: key
COPY_STEP_PLACEHOLDER = "Copy link to this step: a link that opens this lesson at this step"  # i18n: key
CSS = """
#lesson-counter { text-align: center; align-self: center; flex: 0 0 max-content !important;
  width: max-content !important; min-width: max-content !important; }  /* the buttons give way, never the count */
#lesson-counter p { font-size: 20px; margin: 0; white-space: nowrap; }
#lesson-step p, #lesson-question p, #lesson-question summary { font-size: 18px; }  /* read out to a class */
@media (max-width: 480px) {  /* a phone: Back, the count and Next on one line */
  #lesson-counter p { font-size: 16px; }
  #lesson-nav button { padding-left: 4px; padding-right: 4px; white-space: nowrap; }
}
"""
NEXT_JS = f"(n) => Math.min((n || 1) + 1, {len(STEPS)})"
BACK_JS = "(n) => Math.max((n || 1) - 1, 1)"
SHOW_STEP = "() => { const s = document.getElementById('lesson-step'); if (s && s.getBoundingClientRect().top < 0) " \
            "s.scrollIntoView({block: 'start'}); }"  # Next at the foot of a long step: the new one from its top
# The opened tab from its top: the tab strip at the top of the screen unless it is near there already (once the tab
# is drawn: until then the page may be too short to scroll). The focus goes to the opened tab's panel, named after
# the tab, so the next Tab goes to its first control (it fell to the page's start: the 9 tab names again); not to
# that control itself, a text box that would open a phone's keyboard over the step.
SHOW_TAB = """() => requestAnimationFrame(() => requestAnimationFrame(() => {
  const strip = document.getElementById('page-tabs');
  if (!strip) return;
  const top = strip.getBoundingClientRect().top;
  if (top < 0 || top > window.innerHeight / 3) strip.scrollIntoView({block: 'start'});
  const panel = [...strip.querySelectorAll(':scope > [role=tabpanel]')].find((p) => p.offsetParent !== null);
  if (!panel) return;
  panel.tabIndex = -1;
  panel.setAttribute('aria-label', strip.querySelector('[role=tab][aria-selected=true]')?.textContent.trim() || '');
  panel.focus({preventScroll: true});
}))"""


@dataclass
class Lesson:
    parts: TabParts  # its Blocks, and the inputs a link fills: the step and the lock
    step: gr.Radio
    locked: gr.State
    open_button: gr.Button

    def wire(self, tab_strip: gr.Tabs, tabs: dict[str, TabParts]) -> None:
        """Inside the page's Blocks, once every tab is placed: "Open in <tab>" selects the step's tab and fills it."""
        self.open_button.click(make_open(tabs), inputs=[self.step, self.locked],
                               outputs=[tab_strip, *linked_inputs(tabs)], api_visibility="private", queue=False,
                               show_progress="hidden").then(None, js=SHOW_TAB, api_visibility="private")


def lesson_tab(models: AppModels, *, labels: Mapping[str, str], unavailable: Mapping[str, Why]) -> Lesson:
    """`labels`: each tab's English name (the tables translate it); `unavailable`: for a tab that cannot run here, the
    line it shows why (Markdown, written in the language of the request being served)."""
    show = make_show(models, labels, unavailable)
    with gr.Blocks() as tab:
        gr.Markdown(INTRO, elem_id="lesson-intro")
        lock_note = gr.Markdown(LOCKED_NOTE, visible=False, elem_id="lesson-lock-note")
        with gr.Row(equal_height=False):
            with gr.Column(scale=3, min_width=320):
                with gr.Row(equal_height=True, elem_id="lesson-nav"):  # at the top: in view whatever the step's length
                    back = gr.Button("\N{LEFTWARDS ARROW} " + T("Back"), interactive=False, scale=1, min_width=80,
                                     elem_id="lesson-back")
                    counter = gr.Markdown("", elem_id="lesson-counter")  # a step's texts: from the load event
                    forward = gr.Button(T("Next") + " \N{RIGHTWARDS ARROW}", scale=1, min_width=80, elem_id="lesson-next")
                card = gr.Markdown("", elem_id="lesson-step")
                note = gr.Markdown(visible=False, elem_id="lesson-unavailable")
                open_button = gr.Button("", visible=False, variant="primary", elem_id="lesson-open")
                question = gr.Markdown("", elem_id="lesson-question")
            with gr.Column(scale=2, min_width=280):
                step = gr.Radio([(f"{n}. " + T(s.title), n) for n, s in enumerate(STEPS, 1)], value=1,
                                label=T("All steps (pick one to jump to it)"), elem_id="lesson-steps")
                lock = gr.Checkbox(label=T("Lock the texts for the class"), elem_id="lesson-lock",
                                   info=T("The link then opens tabs whose prompts the class cannot edit."))
                copy_link("lesson", {"lesson": step, "lock": lock}, label=COPY_STEP_LINK,
                          placeholder=COPY_STEP_PLACEHOLDER)
        locked = gr.State(False)  # this page was opened with lock=1

        shown = [counter, card, note, open_button, question, back, forward]
        tab.load(make_first_view(show), outputs=shown, api_visibility="private", queue=False, show_progress="hidden")
        back.click(None, inputs=step, outputs=step, js=BACK_JS, api_visibility="private")
        forward.click(None, inputs=step, outputs=step, js=NEXT_JS, api_visibility="private")
        step.change(show, inputs=step, outputs=shown, api_visibility="private", queue=False, show_progress="hidden").then(
            None, js=SHOW_STEP, api_visibility="private")
        # A locked page says so, and its own copied links stay locked
        locked.change(lambda on: (gr.Markdown(visible=on), gr.Checkbox(value=True, interactive=False) if on
                                  else gr.skip()),
                      inputs=locked, outputs=[lock_note, lock], api_visibility="private", queue=False)
    return Lesson(TabParts(tab, {"lesson": step, "lock": locked}), step, locked, open_button)


def make_show(models: AppModels, labels: Mapping[str, str], unavailable: Mapping[str, Why]):
    def show(n: int) -> tuple:
        """Step `n`'s view, in the language of the request being served."""
        view = StepView.of(n, models, labels, unavailable)
        return (view.counter, view.card, gr.Markdown(view.why, visible=bool(view.why)),
                gr.Button(view.open_label, visible=view.can_open), view.question,
                gr.Button(interactive=view.number > 1), gr.Button(interactive=view.number < len(STEPS)))

    return show


def make_first_view(show):
    def first_view(request: gr.Request) -> tuple:
        """As the page opens: the step its link asks for (the link also sets the step list, which shows the same)."""
        link = read_link(dict(request.query_params))
        return show(link.values.get("lesson", 1) if link.tab == "lesson" else 1)

    return first_view


@dataclass(frozen=True)
class StepView:
    """What the lesson shows of step `number`: its card, why its tab cannot run here (Markdown, empty if it can),
    the Open button, and its question."""

    number: int
    counter: str
    card: str
    why: str
    can_open: bool
    open_label: str
    question: str

    @classmethod
    def of(cls, n: object, models: AppModels, labels: Mapping[str, str], unavailable: Mapping[str, Why]) -> StepView:
        """In the language of the request being served (English outside one)."""
        index = step_number(n)
        step = STEPS[index - 1]
        label = tr(labels[step.tab])
        why, can_open = "", step.tab not in unavailable
        if not can_open:
            why = tr("**The {tab} tab cannot run here.**", tab=label) + f" {unavailable[step.tab]()}"
        elif step.tab == "inside" and (missing := bert_missing(models)) is not None:
            why = tr("**BERT is missing here**, so the Inside tab shows GPT-2's triangle only.") + " " + as_markdown(
                missing.text)
        lm = models.gpt2.current
        here = ""  # the offline classroom: what the tabs show is not GPT-2's
        if lm is not None and lm.name in BUNDLED:
            here = tr(BUNDLED_NOTE, name=lm.name, vocab=number(len(lm.tokenizer)))
        return cls(index, tr("Step {n} of {total}", n=index, total=len(STEPS)),
                   card_markdown(step, label if can_open else None, here), why, can_open,
                   tr("Open in {tab}", tab=label), question_markdown(step))


def step_number(n: object) -> int:
    """The step the step list sends (one of its choices, 1 to N); anything else is the first."""
    return n if isinstance(n, int) and 1 <= n <= len(STEPS) else 1


def card_markdown(step: Step, tab_label: str | None, here: str = "") -> str:
    """The title, the idea (and `here`, what differs where another model serves), and what to do (in the opened tab,
    when it opens here); `tab_label` and `here` already translated."""
    try_it = tr("Try it in {tab}.", tab=tab_label) if tab_label else tr("Try it.")
    idea = f"{tr(step.idea)}\n\n{here}" if here else tr(step.idea)
    return f"## {tr(step.title)}\n\n{idea}\n\n**{try_it}** {tr(step.action)}"


def question_markdown(step: Step) -> str:
    return (f"**{tr('Ask the class.')}** {tr(step.question)}\n\n"
            f"<details><summary>{tr('What to notice')}</summary>\n\n{tr(step.notice)}\n\n</details>")


def make_open(tabs: dict[str, TabParts]):
    def open_step(n: int, locked: bool) -> list:
        """The step's tab selected and its inputs filled as its share link would fill them (locked: read-only)."""
        s = STEPS[step_number(n) - 1]
        link = read_link(s.query)
        assert not link.problems, link.problems  # the steps' links are checked by the tests
        return [gr.Tabs(selected=s.tab), *link_values(link, tabs, locked=bool(locked))]

    return open_step

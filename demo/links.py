"""Share links: a page URL that carries the tab and its inputs, so a class can open the same example.

    http://127.0.0.1:7860/?tab=generate&prompt=In%20a%20shocking%20finding&temperature=0.7&top_k=40&seed=2019
    http://127.0.0.1:7860/?lesson=3&lock=1       (the Lesson tab at its step 3, the lesson's prompts locked)

Opening a link fills the page; it never generates by itself. Every value is checked as the page checks it (the slider
ranges of demo/knobs.py, a seed, a text of at most MAX_LINK_CHARS characters). A bad one falls back to its default,
and a note on the page names it with the reason; a link only ever sets text and numbers in the page's own inputs.
Each tab puts a "Copy link" button beside its result (`copy_link`), which builds the link in the browser.

`lock=1` is the lesson's link option (demo/lesson_tab.py): the texts a lesson's step fills in a tab are then not
editable on that page (`link_values(..., locked=True)`), and say so. It is the page's own state, per visitor: another
visitor, or the same class without `lock=1`, gets an ordinary page. It keeps a class on the same text; it is no
security control.

`lang` (`?lang=es`) is the page's language, read by demo/i18n.py: it belongs to every tab, and the links the page
builds keep it, so a class opens a shared link in the language of the page it came from.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import gradio as gr

from demo.errors import in_page_language, markdown_text
from demo.i18n import LANGUAGES, T, tables, tr
from demo.knobs import KNOBS, page_seed, typed_values
from demo.lesson_steps import STEPS
from gpt2_core.generate.settings import check_int, check_seed, check_text, shown

TRAIN_MINUTES = (1, 10)  # Build your own's slider
MAX_LINK_CHARS = 4000  # of a text in a link: a long paste makes a link some browsers and chats cut
TABS = ("generate", "explore", "score", "compare", "inside", "layers", "scale", "train", "lesson")
TEXT, SEED, STEP, LOCK, MINUTES = "text", "seed", "step", "lock", "minutes"
FIELDS: dict[str, dict[str, str]] = {  # per tab: parameter -> kind ("text", "seed" or a knob's name)
    "generate": {"prompt": TEXT, "max_new_tokens": "max_new_tokens", "temperature": "temperature",
                 "top_k": "top_k", "top_p": "top_p", "repetition_penalty": "repetition_penalty", "seed": SEED,
                 "num_samples": "num_samples"},
    "explore": {"prompt": TEXT, "temperature": "temperature", "top_k": "top_k", "top_p": "top_p"},
    "score": {"text": TEXT},
    "compare": {"sentence": TEXT},
    "inside": {"text": TEXT},
    "layers": {"text": TEXT, "target": TEXT},
    "scale": {"prompt": TEXT, "seed": SEED},
    "train": {"minutes": MINUTES},
    "lesson": {"lesson": STEP, "lock": LOCK},  # ?lesson=3 alone opens the Lesson tab too
}
LOCKED_INFO = "\N{LOCK} Locked by your teacher for this lesson: the text cannot be edited here."  # i18n: key
LANG = "lang"  # the page's language (demo/i18n.py), in any link
COPY_LINK = "Copy link"  # i18n: key
COPY_PLACEHOLDER = "Copy link: a link to this tab with these settings"  # i18n: key


@dataclass
class TabParts:
    """A tab's Blocks and the inputs a share link fills, by parameter name (FIELDS' order)."""

    blocks: gr.Blocks
    inputs: dict[str, gr.components.Component] = field(default_factory=dict)
    # buttons that write other texts into the tab's (an example, "Fill with..."): off where a lesson locked them
    fillers: list[gr.Button] = field(default_factory=list)
    on_open: Callable[[gr.Tab], object] | None = None  # wires events to the tab's opening (its `select`)


@dataclass(frozen=True)
class Link:
    tab: str
    values: dict[str, Any]  # checked values of this tab's parameters that the link gave
    problems: list[str]  # one sentence per value that was refused or ignored


def read_link(query: Mapping[str, str]) -> Link:
    """The tab and checked values a URL's query asks for; what is bad or unknown is listed in `problems` (in the
    language of the request being served)."""
    problems = []
    tab = query.get("tab", "lesson" if "lesson" in query else "generate")
    if tab not in TABS:
        problems.append(tr("`tab` has to be one of {tabs}, but is {value}", tabs=", ".join(TABS), value=shown(tab)))
        tab = "generate"
    values = {}
    for name, raw in query.items():
        if name == "tab":
            continue
        if name == LANG:  # the page's language: demo/i18n.py reads it, and one it lacks is named here
            if raw.strip().lower() not in LANGUAGES:
                problems.append(tr("`lang` has to be one of {languages}, but is {value}, so the page is in your "
                                   "browser's language", languages=", ".join(LANGUAGES), value=shown(raw)))
            continue
        if name not in FIELDS[tab]:
            problems.append(tr("`{name}` is not a setting of this tab, so it was ignored", name=name))
            continue
        try:
            values[name] = parse(FIELDS[tab][name], name, raw)
        except ValueError as e:  # gpt2_core's message (English), or one of this module's (translated already)
            problems.append(in_page_language(str(e)))
    return Link(tab, values, problems)


def opens_a_tab(query: Mapping[str, str]) -> bool:
    """Whether the link chooses the tab (without one, the tab strip is left as the visitor has it)."""
    return "tab" in query or "lesson" in query


def parse(kind: str, name: str, raw: str) -> Any:
    if kind == TEXT:
        return check_text(name, raw, MAX_LINK_CHARS)
    if kind == LOCK:
        if raw not in ("0", "1"):
            raise ValueError(tr("`{name}` has to be 1 (the lesson's texts locked) or 0, but is {value}", name=name,
                                value=shown(raw)))
        return raw == "1"
    number = number_of(raw)
    if kind == SEED:
        seed = check_seed(page_seed(number))
        return -1 if seed is None else seed  # the page's box writes random as -1
    if kind == STEP:
        return check_int(name, number, 1, len(STEPS))  # counted from 1, as the page shows the steps
    if kind == MINUTES:
        return check_int(name, number, *TRAIN_MINUTES)
    return KNOBS[kind].range.check(name, number)  # (a link's empty value: its range, not "no number in its box")


def number_of(raw: str) -> Any:
    """"40" -> 40, "0.7" -> 0.7; anything else stays text, for the check to refuse by name."""
    try:
        return int(raw)
    except ValueError:
        pass
    try:
        return float(raw)
    except ValueError:
        return raw


def note_markdown(problems: list[str]) -> str:
    if not problems:
        return ""
    lines = "\n".join(f"- {markdown_text(p)}" for p in problems)  # a link's text is shown as written
    return "**" + tr("This link had values the page cannot use; their defaults are shown instead:") + f"**\n{lines}"


def link_values(link: Link, tabs: dict[str, TabParts], *, locked: bool = False) -> list:
    """The update for each linkable input of every tab, in `linked_inputs` order (skip: leave as it is).

    `locked` (a lesson opened with lock=1): the texts the link fills are made read-only on this page, and say so;
    the tab's fillers are turned off (an example would write its own text over the locked one).
    """
    def value(tab_id: str, name: str) -> Any:
        if tab_id != link.tab or name not in link.values:
            return gr.skip()
        if locked and FIELDS[tab_id][name] == TEXT:
            return gr.update(value=link.values[name], interactive=False, info=tr(LOCKED_INFO))
        return link.values[name]

    def filler(tab_id: str) -> Any:
        texts = [name for name in link.values if FIELDS[tab_id].get(name) == TEXT]
        return gr.Button(interactive=False) if locked and tab_id == link.tab and texts else gr.skip()

    return [update for tab_id, parts in tabs.items()
            for update in [*(value(tab_id, name) for name in parts.inputs), *(filler(tab_id) for _ in parts.fillers)]]


def linked_inputs(tabs: dict[str, TabParts]) -> list:
    """The components link_values updates, in its order: each tab's inputs, then its fillers."""
    return [component for parts in tabs.values() for component in [*parts.inputs.values(), *parts.fillers]]


def copy_link(tab: str, inputs: dict[str, gr.components.Component], *, label: str = COPY_LINK,
              placeholder: str = COPY_PLACEHOLDER) -> None:
    """A "Copy link" button and the link it made, for the current values of `inputs`, built in the browser
    (a checkbox's True is written 1, its False left out; the page's `lang`, if its link has one, kept).

    A link the page would refuse on opening is not made: a text past MAX_LINK_CHARS, or a number typed into a
    slider's box beyond its range (the box shows the bound; Generate refuses it by name). The link's box says why,
    in the page's language (LINK_MESSAGES), and nothing is copied.

    `label` and `placeholder` (what the link's box says while empty) are English texts of the tables (mark them
    `# i18n: key`): the browser shows them translated. Each is one T() (Gradio's page translates one per text)."""
    longest = max(len(label), *(len(table.get(label, label)) for table in tables().values()))  # in any language
    with gr.Row(equal_height=True):
        button = gr.Button(T(label), size="sm", scale=0, min_width=max(120, 9 * longest), elem_id=f"{tab}-copy-link")
        link = gr.Textbox(label=T(placeholder), show_label=False, placeholder=T(placeholder),  # read out, not "Textbox"
                          interactive=False, container=False, scale=4, elem_id=f"{tab}-link")
    sliders = [c.elem_id if isinstance(c, gr.Slider) else None for c in inputs.values()]
    boxes = [c.elem_id if isinstance(c, (gr.Slider, gr.Number)) else None for c in inputs.values()]
    button.click(None, inputs=list(inputs.values()), outputs=link, api_visibility="private",
                 js=LINK_JS % (typed_values(*boxes), json.dumps(tab), json.dumps(list(inputs)), json.dumps(sliders),
                               MAX_LINK_CHARS, json.dumps(LINK_MESSAGES), json.dumps(link_messages(), ensure_ascii=False)))


# What a refused link's box says, translated in the browser by the page's <html lang> (as save_view.js's messages)
LINK_MESSAGES = ("No link made: `{name}` has {length} characters, and a link carries at most {limit}.",  # i18n: key
                 "No link made: `{name}` is {value}, beyond this page's range [{low}, {high}].")  # i18n: key


def link_messages() -> dict[str, dict[str, str]]:
    return {lang: {m: table.get(m, m) for m in LINK_MESSAGES} for lang, table in tables().items()}


LINK_JS = r"""(...raw) => {
  const values = (%s)(...raw);  // a slider's number as typed, not the bound its box was clamped to
  const tab = %s, names = %s, sliders = %s, limit = %d, [tooLong, beyond] = %s, messages = %s;
  const shown = (document.documentElement.lang || 'en').split('-')[0].toLowerCase();  // the page's language
  const say = (text, fields) => ((messages[shown] || {})[text] || text).replace(/{(\w+)}/g, (m, key) => fields[key])
    .replace(/`/g, '');  // a plain text box: no Markdown's backticks around the parameter's name
  for (let i = 0; i < names.length; i++) {
    const value = values[i], box = sliders[i] && document.querySelector('#' + sliders[i] + ' input[type=number]');
    const length = typeof value === 'string' ? [...value].length : 0;  // characters, as Python counts them
    if (length > limit)
      return say(tooLong, {name: names[i], length: length.toLocaleString(shown), limit: limit.toLocaleString(shown)});
    if (box && !(Number(box.min) <= value && value <= Number(box.max)))
      return say(beyond, {name: names[i], value: value, low: box.min, high: box.max});
  }
  const url = new URL(window.location.href);
  const lang = url.searchParams.get('lang');  // the page's language, as its own link chose it
  url.search = ''; url.hash = '';
  url.searchParams.set('tab', tab);
  names.forEach((name, i) => {
    const value = values[i];
    if (value === null || value === undefined || value === '' || value === false) return;
    url.searchParams.set(name, value === true ? 1 : value);
  });
  if (lang) url.searchParams.set('lang', lang);
  const link = url.toString();
  if (navigator.clipboard && window.isSecureContext) navigator.clipboard.writeText(link).catch(() => {});
  return link;
}"""

"""The page's sampling knobs: each slider's range, built once and used for the slider, its check and share links.

Gradio's slider clamps a number typed into its box to the range when the box loses the focus, so the box showed the
bound and nobody learned that what they typed was refused; and once it showed the bound, nothing could tell a typed 5
from a 1 put back by the slider's ↺ or an example. `KEEP_TYPED` (the page's JavaScript, see demo/app.py) lets the box
keep what was typed, so it always shows what is sent. `typed_values` (JavaScript run before an event) sends the box's
number as it shows it, and the event checks it against the same range with gpt2_core's message naming the parameter:
"`max_new_tokens` has to be an integer in [1, 512], but is 5000". The Python API keeps gpt2_core's wider ranges.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Real
from typing import Any

import gradio as gr
from gradio.i18n import I18nData

from demo.i18n import tr
from gpt2_core import DEFAULTS, SamplingParams
from gpt2_core.generate.settings import MAX_SEED, RANGES, Range, cut

NO_NUMBER = "`{name}` has no number in its box: type one in {range}"  # i18n: key


def refuse_empty(name: str, value: Any, low: float, high: float, *, low_open: bool = False) -> None:
    """A box emptied, or holding no number a browser can send (1e309), comes as None or "": refused by name with the
    box's range, not with gpt2_core's "but is None" (Generate's knobs, Scale's New tokens, Build your own's minutes)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise ValueError(tr(NO_NUMBER, name=name, range=f"{'(' if low_open else '['}{low:g}, {high:g}]"))


@dataclass(frozen=True)
class Knob:
    """A slider for one of SamplingParams' fields: its range is gpt2_core's (RANGES), narrowed where the page shows
    less (`low`, `high`), its default gpt2_core's DEFAULTS."""

    name: str  # the field's name, as in gpt2_core and the API
    step: float
    low: float | None = None  # the page's own bounds, within gpt2_core's (None: gpt2_core's)
    high: float | None = None

    @property
    def range(self) -> Range:
        wide = RANGES[self.name]
        return Range(wide.low if self.low is None else self.low, wide.high if self.high is None else self.high,
                     integer=wide.integer, low_open=wide.low_open and self.low is None)

    @property
    def default(self) -> float:
        return getattr(DEFAULTS, self.name)

    def check(self, value: Any) -> float | int:
        """`value` if it is in the page's range; else ValueError naming the parameter and the range (an emptied box,
        or one whose text is no number the browser can send, comes as None or "": said so, not "but is None")."""
        allowed = self.range
        refuse_empty(self.name, value, allowed.low, allowed.high, low_open=allowed.low_open)
        return allowed.check(self.name, value)

    def slider(self, label: str | I18nData, *, elem_id: str, info: str | I18nData | None = None) -> gr.Slider:
        """The knob's slider; `label` and `info` as the page shows them (T(...), translated by the browser)."""
        allowed = self.range
        low = allowed.low + self.step if allowed.low_open else allowed.low  # (low, high]: one step above low
        return gr.Slider(low, allowed.high, self.default, step=self.step, label=label, info=info, elem_id=elem_id)


KNOBS = {k.name: k for k in [
    Knob("temperature", 0.05),
    Knob("top_k", 1, high=200),
    Knob("top_p", 0.01),
    Knob("max_new_tokens", 1, high=512),
    Knob("repetition_penalty", 0.05, low=0.5, high=2),
    Knob("num_samples", 1, high=4),  # boxes on the page
]}


# The largest whole number a browser's number box keeps exactly (JavaScript's numbers are doubles): a seed typed
# beyond it would be rounded to another seed before it is sent, so the page refuses it by name (page_seed), and says
# this one range for any seed it refuses
PAGE_MAX_SEED = 2**53 - 1
PAGE_SEED_RANGE = ("`seed` has to be -1 (random) or an integer in [0, {high}] on this page (a browser keeps whole "  # i18n: key
                   "numbers exact up to there; the API takes seeds up to {api}), but is {value}")  # i18n: key
# Scale's: every size draws with the same seed, so no random one
PAGE_FIXED_SEED_RANGE = ("`seed` has to be an integer in [0, {high}] on this page (a browser keeps whole numbers "  # i18n: key
                         "exact up to there; the API takes seeds up to {api}), but is {value}")  # i18n: key


def page_seed(value: Any, *, random: bool = True) -> Any:
    """A seed from the page: None or -1 (random, unless `random` is False: Scale's), or an integer in [0,
    PAGE_MAX_SEED]; any other number, or the digits of one that typed_values sent as typed (where JavaScript would
    have rounded them), is refused by name with the page's range. Anything else is left to the seed's own check."""
    digits = isinstance(value, str) and value.strip().lstrip("+-").isdigit()
    number = isinstance(value, Real) and not isinstance(value, bool)
    whole = number and (isinstance(value, int) or (math.isfinite(value) and value == int(value)))  # 10**400: an int
    exact = whole and ((random and value == -1) or 0 <= value <= PAGE_MAX_SEED)
    if digits or (number and not exact):
        message = PAGE_SEED_RANGE if random else PAGE_FIXED_SEED_RANGE
        raise ValueError(tr(message, high=str(PAGE_MAX_SEED), api=str(MAX_SEED), value=cut(str(value).strip())))
    return value


def page_params(**values: Any) -> SamplingParams:
    """The settings as the page sends them (SamplingParams' fields), checked against the page's ranges: the one
    SamplingParams the page passes on."""
    for name, value in values.items():
        if name in KNOBS:
            KNOBS[name].check(value)
    if "seed" in values:
        page_seed(values["seed"])
    return SamplingParams(**values)


def typed_values(*elem_ids: str | None, then: str = "") -> str:  # i18n: not shown (JavaScript for an event)
    """JavaScript for an event's `js`: its inputs as sent, except that each slider named by elem_id (None for an
    input that is neither a slider nor a number box) sends the number its box shows, unclamped (an emptied box, or one
    whose number the browser could not read, such as 1e309, sends ''), and a whole number typed into a named box
    beyond JavaScript's exact integers (PAGE_MAX_SEED) is sent as its digits, not rounded to another number. `then`
    runs first (e.g. scrolling)."""
    ids = ", ".join("null" if i is None else repr(i) for i in elem_ids)
    return f"""(...args) => {{
  {then}
  const ids = [{ids}];
  return args.map((value, i) => {{
    const box = ids[i] && document.querySelector('#' + ids[i] + ' input[type=number]');
    if (!box) return value;
    const text = box.value.trim();
    if (/^[+-]?\\d+$/.test(text) && !Number.isSafeInteger(Number(text))) return text;
    if (!box.closest('.block')?.querySelector('input[type=range]')) return value;  // a number box, no slider
    return text !== '' && Number.isFinite(Number(text)) ? Number(text) : text;
  }});
}}"""


# Gradio's slider clamps its box's number to the range on blur: stopped before it reaches the box (capture phase), so
# a slider's box keeps what was typed (the module's docstring says why)
KEEP_TYPED = """() => {
  document.addEventListener('blur', (event) => {
    const box = event.target;
    if (box instanceof HTMLInputElement && box.type === 'number'
        && box.closest('.block')?.querySelector('input[type=range]')) event.stopImmediatePropagation();
  }, true);
}"""

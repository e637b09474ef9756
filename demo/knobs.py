"""The page's sampling knobs: each slider's range, built once and used for the slider, its check and share links.

A number typed into a slider's box beyond its range is clamped by the browser (the box then shows the bound), so
nobody would learn that it was refused. `REMEMBER_TYPED` (the page's JavaScript, see demo/app.py) keeps what was typed;
`typed_values` (JavaScript run before an event) sends that instead of the bound it was clamped to, and the event checks
it against the same range with gpt2_core's message naming the parameter:
"`max_new_tokens` has to be an integer in [1, 512], but is 5000". The Python API keeps gpt2_core's wider ranges.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from gpt2_core import DEFAULTS
from gpt2_core.generate.settings import check_float, check_int


@dataclass(frozen=True)
class Knob:
    name: str  # the parameter's name, as in gpt2_core and the API
    low: float
    high: float
    step: float
    default: float
    integer: bool = False
    low_open: bool = False  # (low, high]: the slider starts one step above low

    def check(self, value: Any) -> float | int:
        """`value` if it is in the page's range; else ValueError naming the parameter and the range."""
        if self.integer:
            return check_int(self.name, value, int(self.low), int(self.high))
        return check_float(self.name, value, self.low, self.high, low_open=self.low_open)

    def slider(self, label: str, *, elem_id: str, info: str | None = None) -> gr.Slider:
        low = self.low + self.step if self.low_open else self.low
        return gr.Slider(low, self.high, self.default, step=self.step, label=label, info=info, elem_id=elem_id)


KNOBS = {k.name: k for k in [
    Knob("temperature", 0, 2, 0.05, DEFAULTS.temperature),
    Knob("top_k", 0, 200, 1, DEFAULTS.top_k, integer=True),
    Knob("top_p", 0, 1, 0.01, DEFAULTS.top_p, low_open=True),
    Knob("max_new_tokens", 1, 512, 1, DEFAULTS.max_new_tokens, integer=True),
    Knob("repetition_penalty", 0.5, 2, 0.05, DEFAULTS.repetition_penalty),
    Knob("num_samples", 1, 4, 1, DEFAULTS.num_samples, integer=True),  # boxes on the page
]}


def typed_values(*elem_ids: str | None, then: str = "") -> str:
    """JavaScript for an event's `js`: its inputs as sent, except that each slider named by elem_id (None for an
    input that is no slider) sends the number its box shows, unclamped. `then` runs first (e.g. scrolling)."""
    ids = ", ".join("null" if i is None else repr(i) for i in elem_ids)
    return f"""(...args) => {{
  {then}
  const ids = [{ids}];
  return args.map((value, i) => {{
    const box = ids[i] && document.querySelector('#' + ids[i] + ' input[type=number]');
    if (!box) return value;
    const shown = box.value, typed = box.dataset.typed;
    const clamped = typed !== undefined && typed !== shown && [box.min, box.max].includes(shown);
    const text = (clamped ? typed : shown).trim();
    if (text === '') return value;
    return Number.isFinite(Number(text)) ? Number(text) : text;
  }});
}}"""


# What was last typed into a slider's number box (dragging the slider forgets it), for `typed_values`.
REMEMBER_TYPED = """() => {
  document.addEventListener('input', (event) => {
    const box = event.target;
    if (!(box instanceof HTMLInputElement)) return;
    if (box.type === 'number') box.dataset.typed = box.value;
    if (box.type === 'range') {
      const number = box.closest('.block')?.querySelector('input[type=number]');
      if (number) delete number.dataset.typed;
    }
  }, true);
}"""

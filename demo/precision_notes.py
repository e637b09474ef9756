"""What the page says about the precision a model serves in (gpt2_core/precision.py chooses it).

The model panel says which precision serves and what that means in a few words; where the probabilities that the
explanations show come from the fast int8 path rather than the exact fp32 engine, those explanations say so too.
"""

from __future__ import annotations

from demo.i18n import number, tr
from gpt2_core.backend import ModelDescription
from gpt2_core.precision import INT8_TOP1_AGREEMENT

MEANINGS = {  # a precision's name as the model panel shows it: short, so the panel stays one line on a laptop
    "float32": "fp32 (exact: transformers' numbers)",  # i18n: key
    "float16": "fp16 (fp32's next words but at near-ties)",  # i18n: key
    "bfloat16": "bf16 (fp32's next words but at near-ties)",  # i18n: key
    "nf4": "nf4 (4-bit, to fit a bigger model; next words differ more often)",  # i18n: key
}
COMPILING = "getting faster (compiling in the background)"  # i18n: key


def int8_line() -> str:
    """How often int8 picks fp32's next word, in the language of the request (a share, e.g. "97%")."""
    return tr("the same next word as fp32 at {share} of places", share=number(INT8_TOP1_AGREEMENT, ".0%"))


def meaning(d: ModelDescription) -> str:
    """The precision serving and what it means, in a few words."""
    if d.precision == "int8":
        return f"int8 ({int8_line()})" if d.where == "cpu" else tr("int8 (bitsandbytes; fp32's next words nearly always)")
    if d.precision in MEANINGS:
        return tr(MEANINGS[d.precision])
    return d.precision or tr("not reported")


def source_note(d: ModelDescription) -> str:
    """Who computed the probabilities an explanation shows: "`gpt2`", and the fast path's caveat where it serves."""
    if d.precision == "int8" and d.where == "cpu":
        return tr("`{name}` (int8 weights, the fast path: {line})", name=d.name, line=int8_line())
    return f"`{d.name}`"

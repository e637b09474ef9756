"""What the page says about the precision a model serves in (gpt2_core/precision.py chooses it).

The model panel says which precision serves and what that means in a few words; where the probabilities that the
explanations show come from the fast int8 path rather than the exact fp32 engine, those explanations say so too.
"""

from __future__ import annotations

from gpt2_core.backend import ModelDescription
from gpt2_core.precision import INT8_TOP1_AGREEMENT

INT8_LINE = f"the same next word as fp32 at {INT8_TOP1_AGREEMENT:.0%} of places"
MEANINGS = {  # a precision's name as the model panel shows it: short, so the panel stays one line on a laptop
    "float32": "fp32 (exact: transformers' numbers)",
    "float16": "fp16 (fp32's next words but at near-ties)",
    "bfloat16": "bf16 (fp32's next words but at near-ties)",
    "nf4": "nf4 (4-bit, to fit a bigger model; next words differ more often)",
}
COMPILING = "getting faster (compiling in the background)"


def meaning(d: ModelDescription) -> str:
    """The precision serving and what it means, in a few words."""
    if d.precision == "int8":
        return f"int8 ({INT8_LINE})" if d.where == "cpu" else "int8 (bitsandbytes; fp32's next words nearly always)"
    return MEANINGS.get(d.precision or "", d.precision or "not reported")


def source_note(d: ModelDescription) -> str:
    """Who computed the probabilities an explanation shows: "`gpt2`", and the fast path's caveat where it serves."""
    if d.precision == "int8" and d.where == "cpu":
        return f"`{d.name}` (int8 weights, the fast path: {INT8_LINE})"
    return f"`{d.name}`"

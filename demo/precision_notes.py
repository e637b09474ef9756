"""What the page says about the precision a model serves in (gpt2_core/precision.py chooses it).

One line in the model panel says which precision serves and what that means; where the probabilities that the
explanations show come from the fast int8 path rather than the exact fp32 engine, those explanations say so too.
"""

from __future__ import annotations

from gpt2_core.backend import ModelDescription
from gpt2_core.precision import INT8_TOP1_AGREEMENT

INT8_LINE = f"the same next word as fp32 at {INT8_TOP1_AGREEMENT:.0%} of places"
MEANINGS = {
    "float32": "fp32: the exact engine, the same numbers as transformers' GPT-2",
    "float16": "fp16: a GPU's half precision, the next words of fp32 but for near-ties",
    "bfloat16": "bf16: half precision, the next words of fp32 but for near-ties",
    "nf4": "nf4: 4-bit weights (bitsandbytes) to fit a bigger model; next words differ from fp32's more often",
}
DECODING = {"compiling": "getting faster: the decoding step compiles in the background",
            "compiled": "compiled decoding step", "cuda-graphs": "CUDA graphs"}


def meaning(d: ModelDescription) -> str | None:
    """One line: the precision serving and what it means (None: a server that does not say)."""
    if d.precision is None:
        return None
    if d.precision == "int8":
        line = (f"int8 weights, the fast path on a CPU: {INT8_LINE}, about 4x faster" if d.where == "cpu"
                else "int8 (bitsandbytes LLM.int8) to fit a bigger model: next words nearly always fp32's")
    else:
        line = MEANINGS.get(d.precision, d.precision)
    if d.decoding in DECODING:
        line += f" \u00b7 {DECODING[d.decoding]}"
    return line


def source_note(d: ModelDescription) -> str:
    """Who computed the probabilities an explanation shows: "`gpt2`", and the fast path's caveat where it serves."""
    if d.precision == "int8" and d.where == "cpu":
        return f"`{d.name}` (int8 weights, the fast path: {INT8_LINE})"
    return f"`{d.name}`"

"""Estimated weight memory of a GPT-2 size at each precision, for the README table and the UI's model picker.

Quantization (int8, nf4) applies to the transformer blocks' linear layers only; embeddings (the tied LM head included),
LayerNorms and biases stay 16-bit. nf4 keeps one scale per 64 weights, itself quantized to 8 bits (bitsandbytes'
double quantization, on by default).
"""

from __future__ import annotations

from gpt2_core.config import GPTConfig

PRECISIONS = ("fp32", "fp16", "int8", "nf4")


def linear_weight_count(config: GPTConfig) -> int:
    """Weights of the quantizable matrices: c_attn, attn.c_proj, c_fc, mlp.c_proj in every block (biases excluded)."""
    d = config.n_embd
    return config.n_layer * (3 * d * d + d * d + 4 * d * d + 4 * d * d)


def estimate_weight_bytes(config: GPTConfig, precision: str) -> int:
    if precision not in PRECISIONS:
        raise ValueError(f"`precision` has to be one of {', '.join(PRECISIONS)}, but is {precision!r}")
    total = config.num_parameters()
    if precision == "fp32":
        return 4 * total
    if precision == "fp16":
        return 2 * total
    linear = linear_weight_count(config)
    rest = 2 * (total - linear)  # embeddings, norms and biases in fp16
    if precision == "int8":
        return rest + linear + _int8_scales(config)
    return rest + linear // 2 + linear // 64


def _int8_scales(config: GPTConfig) -> int:
    """LLM.int8 keeps one fp32 scale per output row of each quantized matrix."""
    d = config.n_embd
    return 4 * config.n_layer * (3 * d + d + 4 * d + d)

"""Estimated weight memory of a GPT-2 size at each precision, for the README table and the UI's model picker.

On a GPU, quantization (int8: LLM.int8, nf4) applies to the transformer blocks' linear layers only; embeddings (the tied
LM head included), LayerNorms and biases stay 16-bit. nf4 keeps one scale per 64 weights, itself quantized to 8 bits
(bitsandbytes' double quantization, on by default). On a CPU, int8 ("int8-cpu", quantize.py) stores every block
matrix and the tied embedding / LM head as int8 with a bf16 scale per row; positions, LayerNorms and biases stay fp32.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

from gpt2_core.config import GPTConfig

PRECISIONS = ("fp32", "fp16", "int8-cpu", "int8", "nf4")
PRECISION_LABELS = {"int8-cpu": "int8 (fast on CPU)", "int8": "int8 (GPU)"}


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
    if precision == "int8-cpu":
        d, L, V = config.n_embd, config.n_layer, config.vocab_size
        rows = L * 9 * d  # output rows of the block matrices: c_attn 3d, attn.c_proj d, c_fc 4d, mlp.c_proj d
        bf16 = rows + V  # one scale per row of each int8 matrix and of the tied table
        fp32 = rows + config.block_size * d + L * 4 * d + 2 * d  # biases, positions, LayerNorms
        return linear + V * d + 2 * bf16 + 4 * fp32
    rest = 2 * (total - linear)  # embeddings, norms and biases in fp16
    if precision == "int8":
        return rest + linear + _int8_scales(config)
    return rest + linear // 2 + linear // 64


def kv_cache_row_bytes(config: GPTConfig, element_bytes: int) -> int:
    """One sample's KV cache: keys and values of every layer for the whole context, as the engine allocates a row
    (gpt2 in fp32: 75 MB; gpt2-xl: 629 MB)."""
    return 2 * config.n_layer * config.block_size * config.n_embd * element_bytes


def _int8_scales(config: GPTConfig) -> int:
    """LLM.int8 keeps one fp32 scale per output row of each quantized matrix."""
    d = config.n_embd
    return 4 * config.n_layer * (3 * d + d + 4 * d + d)


def readable_bytes(n: int) -> str:
    """A size as the page and the messages show it: GB from 1 GB on, MB below."""
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB"


def return_freed_memory() -> None:
    """Hand the memory freed while loading back to the system (glibc keeps freed heap for reuse; on Linux only).

    Loading int8 reads the fp32 weights first: without this, gpt2's process stayed at 790 MiB after an int8 load
    instead of 464 MiB (measured), which counts on an 8 GB laptop.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):  # another C library (musl): nothing to trim
        pass

"""The precision and decode step a model gets when its loader is not told: the fast path where it is safe.

    load_model("gpt2")                  # a CPU: int8 weights, the decode step compiled in the background
    load_model("gpt2", dtype="fp32")    # the exact fp32 engine, proven equal to transformers (the app's --exact)

On a CPU, with neither `dtype` nor `quantize` given, the weights are int8 (quantize.py). Measured on gpt2's shape
(README, Performance), they decode 2.7x as fast as transformers' fp32 `generate()` eagerly and 4.8x compiled. On the
bundled model and held-out Macbeth, the top-1 next token is fp32's at about 97% of places: 96.8% where AVX2
multiplies int8 by int8 (int8_kernel.py), 97.7% on PyTorch's kernel (tests/test_quantize.py asserts at least 95%).

`compile="auto"` compiles the decode step in the background when three things hold. Decoding is eager until the
compile is ready. The three:
- the model runs int8 on a CPU: the path where compiling was measured to pay (about 2x);
- the model is big enough to need it: below MIN_COMPILE_PARAMETERS, eager int8 already decodes faster than anyone
  reads (the bundled mini model: hundreds of tokens a second), and the compile would only cost a warm-up of both
  cores and a gigabyte of memory;
- the memory available now holds what compiling adds (`compile_growth_bytes`) with HEADROOM_BYTES to spare. A
  student's 8 GB laptop with little free memory still starts, eager.
A GPU or Apple MPS keeps fp16 and eager steps (CUDA graphs wait for a measurement on a GPU).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from gpt2_core.config import GPTConfig
from gpt2_core.devices import resolve_dtype
from gpt2_core.memory import estimate_weight_bytes, kv_cache_row_bytes, readable_bytes
from gpt2_core.quantize import Quantize, validate_quantize

log = logging.getLogger(__name__)

Compile = Literal["now", "background", "no"]

INT8_TOP1_AGREEMENT = 0.97  # int8's top-1 equals fp32's at this share of places (README; tests/test_quantize.py)
MIN_COMPILE_PARAMETERS = 50_000_000  # distilgpt2 (82M) and up; the bundled mini model (3M) decodes fast eagerly
HEADROOM_BYTES = 1 << 30  # memory left over for requests, BERT and the page after a compile
# Compiling int8 gpt2 grew the process by 1.1 GB on the reference machine (README, Performance): Inductor's
# machinery, about 0.8 GB whatever the size, plus its frozen copy of the weights (and buffers). The graph for batches
# (generate/compiled.py) freezes another copy. Taken as that plus three times the weights, rounded up.
COMPILE_FIXED_BYTES = 900 << 20


@dataclass(frozen=True)
class Precision:
    """What a model loads in, and why (one line for the log and the model panel)."""

    dtype: torch.dtype  # the activations' and unquantized tensors' dtype
    quantize: Quantize | None
    compile: Compile  # "now": before load_model returns; "background": decode eagerly until ready; "no"
    why: str


def choose_precision(config: GPTConfig, device: torch.device, *, dtype: str | torch.dtype = "auto",
                     quantize: str | None = "auto", compile: bool | str = "auto",
                     available_bytes: int | None = None) -> Precision:
    """The precision for `config` on `device`, given what the caller asked for ("auto": decide here).

    compile: True compiles before returning, "background" while decoding eagerly, False never, "auto" as above.
    available_bytes: the memory free now (None: measure it, `available_memory_bytes`).
    """
    if compile not in (True, False, "auto", "background"):
        raise ValueError(f"`compile` has to be True, False, 'auto' or 'background', but is {compile!r}")
    fast_default = device.type == "cpu" and dtype == "auto" and quantize == "auto"
    chosen: Quantize | None = "int8" if fast_default else (None if quantize == "auto" else validate_quantize(quantize))
    dt = resolve_dtype(dtype, device)
    if chosen == "int8" and device.type == "cpu":  # it keeps the rest in fp32 (bf16 activations measured no faster)
        if dtype != "auto" and dt != torch.float32:  # (it was served in fp32 without a word)
            raise ValueError(f"`dtype` has to be fp32 or left out with int8 on a CPU (its int8 layers keep the rest "
                             f"in fp32), but is {str(dt).removeprefix('torch.')}")
        dt = torch.float32
    why = ("int8 weights, chosen on a CPU for speed (dtype='fp32' or --exact for the exact engine)" if fast_default
           else f"{chosen or str(dt).removeprefix('torch.')}, as asked")
    if compile is True or compile == "background":
        asked: Compile = "now" if compile is True else "background"
        return Precision(dt, chosen, asked if compilable(chosen, device) else "no", why)
    if compile is False or not (chosen == "int8" and device.type == "cpu"):
        return Precision(dt, chosen, "no", why)
    if config.num_parameters() < MIN_COMPILE_PARAMETERS:
        return Precision(dt, chosen, "no", why + "; not compiled: small enough to be fast eagerly")
    need = compile_growth_bytes(config) + HEADROOM_BYTES
    free = available_memory_bytes() if available_bytes is None else available_bytes
    if free < need:
        return Precision(dt, chosen, "no", why + f"; not compiled: {readable_bytes(free)} of memory free, "
                                                  f"compiling needs {readable_bytes(need)}")
    return Precision(dt, chosen, "background", why + "; compiling in the background")


def cache_rows(config: GPTConfig, device: torch.device, dtype: torch.dtype, *, wanted: int, reserved: int = 0,
               available_bytes: int | None = None) -> int:
    """How many samples the engine may decode at once: `wanted`, or as many whole-context KV cache rows as the memory
    free now holds, less `reserved` (a compile to come) and HEADROOM_BYTES; at least one. Requests beyond wait their
    turn. Without this, a class pressing Generate on gpt2-xl (629 MB of cache a sample in fp32) could take 10 GB.
    A GPU's free memory is its own; Apple MPS reports none, so it gets `wanted`."""
    if device.type == "cuda":
        free = torch.cuda.mem_get_info(device)[0] if available_bytes is None else available_bytes
    elif device.type == "cpu":
        free = available_memory_bytes() if available_bytes is None else available_bytes
    else:
        return wanted
    row = kv_cache_row_bytes(config, dtype.itemsize)
    return max(1, min(wanted, (free - reserved - HEADROOM_BYTES) // row))


def compilable(quantize: str | None, device: torch.device) -> bool:
    """Whether the decode step compiles: plain models, and CPU int8 (bitsandbytes' layers do not trace)."""
    return quantize is None or (quantize == "int8" and device.type == "cpu")


def compile_growth_bytes(config: GPTConfig) -> int:
    """What compiling the int8 decode step adds to the process (an estimate from the measurement above)."""
    return COMPILE_FIXED_BYTES + 3 * estimate_weight_bytes(config, "int8-cpu")


def available_memory_bytes() -> int:
    """Memory free for this process now: Linux's MemAvailable, capped by a container's limit (cgroup v2, as on
    Spaces); elsewhere half of the physical memory (a guess on the safe side)."""
    try:
        meminfo = Path("/proc/meminfo").read_text()
    except OSError:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
    available = next((int(line.split()[1]) * 1024 for line in meminfo.splitlines() if line.startswith("MemAvailable:")),
                     0)
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = int(Path("/sys/fs/cgroup/memory.current").read_text())
    except (OSError, ValueError):
        return available
    return min(available, int(limit) - used) if limit.isdigit() else available

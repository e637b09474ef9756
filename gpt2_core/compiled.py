"""torch.compile for the single-sequence decode step, the case a laptop or a lone student spends its time in.

At batch 1 GPT-2 is held back by per-step overhead, not arithmetic: dozens of small kernels, Python between them and
matrix-vector products that reach half the memory bandwidth. Inductor fuses the small ops and, with freezing, prepacks
the weights for oneDNN/MKL, which is what makes the CPU decode step ~1.4x faster (see benchmarks/README.md).
Batched steps (several users at once) stay eager: they are already bound by the matrix products.

On CUDA the step attends over the whole (masked) position table so every shape is static, and CUDA graphs replay it
(mode "reduce-overhead").

Compiling needs a C++ compiler (CPU) or Triton (CUDA). If it fails, the engine logs why and stays eager.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch

from gpt2_core.model import GPT, KVCache

log = logging.getLogger(__name__)

DecodeOne = Callable[[torch.Tensor, KVCache, int], torch.Tensor]


def compile_decode(model: GPT, device: torch.device) -> DecodeOne:
    """A compiled `decode` for one sequence (cache row 0): (idx (1, 1), cache, position) -> logits (1, vocab)."""
    if device.type == "cuda":
        step = torch.compile(model.decode_step, mode="reduce-overhead", fullgraph=True, dynamic=False)
        block = model.config.block_size

        def decode_one(idx: torch.Tensor, cache: KVCache, position: int) -> torch.Tensor:
            pos = torch.tensor([position], device=device)
            k, v = [t[:1] for t in cache.k], [t[:1] for t in cache.v]
            return step(idx, pos, k, v, block, True).clone()  # clone: CUDA-graph outputs are reused next replay
    else:
        step = torch.compile(model.decode_step, dynamic=True, fullgraph=True, options={"freezing": True})

        def decode_one(idx: torch.Tensor, cache: KVCache, position: int) -> torch.Tensor:
            pos = torch.tensor([position], device=device)
            k, v = [t[:1] for t in cache.k], [t[:1] for t in cache.v]
            return step(idx, pos, k, v, position + 1, False)

    return decode_one


def warm_up(model: GPT, decode_one: DecodeOne, *, device: torch.device, dtype: torch.dtype) -> None:
    """Compile now (at load time, not on the first user's request), at two lengths so the length is dynamic."""
    cache = KVCache(model.config, 1, model.config.block_size, device=device, dtype=dtype)
    with torch.inference_mode():
        for position in (8, 40, 41):
            decode_one(torch.zeros(1, 1, dtype=torch.long, device=device), cache, position)

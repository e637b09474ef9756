"""torch.compile for the single-sequence decode step, the case a laptop or a lone student spends its time in.

At batch 1 GPT-2 is held back by per-step overhead, not arithmetic: dozens of small kernels, Python between them and
matrix-vector products that reach half the memory bandwidth. Inductor fuses the small ops and, with freezing, prepacks
the weights for oneDNN/MKL, which is what makes the CPU decode step ~1.4x faster (see benchmarks/README.md).
Batched steps (several users at once) stay eager: they are already bound by the matrix products.

On CUDA the same compiled step fuses the small kernels. CUDA graphs (mode "reduce-overhead") are not used: they are
recorded per thread and per cache address, while the engine's cache is written in place on its own thread and grows
with the batch; each change would re-record, so plain compiled kernels serve better here.

Compiling needs a C++ compiler (CPU) or Triton (CUDA). If it fails, the engine logs why and stays eager.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
import torch._inductor.config as inductor_config

from gpt2_core.model import GPT, KVCache

log = logging.getLogger(__name__)

DecodeOne = Callable[[torch.Tensor, KVCache, int], torch.Tensor]


def compile_decode(model: GPT, device: torch.device) -> DecodeOne:
    """A compiled `decode` for one sequence (cache row 0): (idx (1, 1), cache, position) -> logits (1, vocab)."""
    # Freezing (weights as constants, prepacked for oneDNN/MKL) is what pays on the CPU; CUDA keeps cuBLAS's layouts.
    # It is set around each call because compilation happens lazily, at a call (torch.compile's options= ignores it).
    freezing = inductor_config.patch(freezing=device.type == "cpu")
    step = torch.compile(model.decode_step, dynamic=None, fullgraph=True)

    def decode_one(idx: torch.Tensor, cache: KVCache, position: int) -> torch.Tensor:
        pos = torch.tensor([position], device=device)
        with freezing:
            return step(idx, pos, cache.k, cache.v, position + 1, False)

    return decode_one


def warm_up(model: GPT, decode_one: DecodeOne, *, device: torch.device, dtype: torch.dtype) -> None:
    """Compile now (at load time, not on the first user's request).

    Two lengths and two cache sizes make both dynamic, so a lone request after a busy spell (a bigger cache) or a
    longer text never stalls everyone for a recompile.
    """
    with torch.inference_mode():  # as in the engine thread: its cache tensors are inference tensors too
        small, big = (KVCache(model.config, n, model.config.block_size, device=device, dtype=dtype) for n in (1, 2))
        for cache, position in ((small, 8), (small, 40), (big, 41), (big, 90)):
            decode_one(torch.zeros(1, 1, dtype=torch.long, device=device), cache, position)

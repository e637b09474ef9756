"""torch.compile for the decode step: one sequence (a laptop, a lone student) and padded batches (a class).

At small batches GPT-2 is held back by per-step overhead, not arithmetic: dozens of small kernels, Python between them
and matrix-vector products that reach half the memory bandwidth. Inductor fuses the small ops and, with freezing,
prepacks the weights for oneDNN/MKL, which is what makes the CPU decode step ~1.4x faster (README, Performance).

On CUDA the same compiled step fuses the small kernels. CUDA graphs (mode "reduce-overhead") are not used: they are
recorded per thread and per cache address, while the engine's cache is written in place on its own thread and grows
with the batch; each change would re-record, so plain compiled kernels serve better here.

Compiling needs a C++ compiler (CPU) or Triton (CUDA). If it fails, the engine logs why and stays eager.
"""

from __future__ import annotations

import logging
import types
from collections.abc import Callable

import torch
import torch._inductor.config as inductor_config

from gpt2_core.model import GPT, KVCache

log = logging.getLogger(__name__)

Decode = Callable[[torch.Tensor, KVCache, list[int]], torch.Tensor]  # GPT.decode's signature


def batch_buckets(max_batch: int) -> list[int]:
    """The batch sizes compiled for several sequences: powers of two, then max_batch (a batch is padded up to one)."""
    sizes, n = [], 2
    while n < max_batch:
        sizes.append(n)
        n *= 2
    return sizes + [max_batch] if max_batch > 1 else []


def compile_decode(model: GPT, device: torch.device, *, max_batch: int) -> Decode:
    """A compiled `GPT.decode`: (idx (B, 1), cache, positions) -> logits (B, vocab), the same numbers as eager.

    One sequence gets its own graph. On the CPU a batch is padded up to a bucket of `batch_buckets` (the padding rows
    write into unused cache rows, at position 0), each bucket with a static batch size: a dynamic one would keep
    inductor from prepacking the weights. Only the cache length is dynamic. On CUDA batches stay eager.
    """
    # Freezing (weights as constants, prepacked for oneDNN/MKL) is what pays on the CPU; CUDA keeps cuBLAS's layouts.
    # It is set around each call because compilation happens lazily, at a call (torch.compile's options= ignores it).
    freezing = inductor_config.patch(freezing=device.type == "cpu")
    buckets = batch_buckets(max_batch) if device.type == "cpu" else []
    step = torch.compile(_private_copy(GPT.decode_step).__get__(model), dynamic=None, fullgraph=True,
                         recompile_limit=4 + 2 * len(buckets))

    def decode(idx: torch.Tensor, cache: KVCache, positions: list[int]) -> torch.Tensor:
        B = len(positions)
        if B == 1:
            with freezing:
                return step(idx, torch.tensor(positions, device=device), cache.k, cache.v, positions[0] + 1, False)
        size = next((n for n in buckets if n >= B and n <= cache.batch_size), None)
        if size is None:
            return model.decode(idx, cache, positions)
        padded = torch.cat([idx, idx.new_zeros(size - B, 1)])  # (size, 1)
        pos = torch.tensor(positions + [0] * (size - B), device=device)  # (size,)
        torch._dynamo.mark_static(padded, 0)
        torch._dynamo.mark_static(pos, 0)
        with freezing:
            return step(padded, pos, cache.k, cache.v, max(positions) + 1, True)[:B]

    return decode


def _private_copy(function: types.FunctionType) -> types.FunctionType:
    """The same function with its own code object.

    torch.compile keeps compiled graphs per code object: with one code object for every model, each model loaded (a
    switch in the app, a test) would add its graphs to the same list and push the next model past the recompile
    limit, silently back to eager. (PyTorch still keeps a closed model's frozen graphs, and its weights, alive: see
    README, Security and limits.)
    """
    return types.FunctionType(function.__code__.replace(), function.__globals__, function.__name__,
                              function.__defaults__, function.__closure__)


def warm_up(model: GPT, decode: Decode, *, device: torch.device, dtype: torch.dtype, max_batch: int) -> None:
    """Compile now (at load time or in the background, not on a user's request).

    Two lengths and two cache sizes make both dynamic, so a lone request after a busy spell (a bigger cache) or a
    longer text never stalls everyone for a recompile; then each batch bucket once.
    """
    with torch.inference_mode():  # as in the engine thread: its cache tensors are inference tensors too
        small, big = (KVCache(model.config, n, model.config.block_size, device=device, dtype=dtype) for n in (1, 2))
        for cache, position in ((small, 8), (small, 40), (big, 41), (big, 90)):
            decode(torch.zeros(1, 1, dtype=torch.long, device=device), cache, [position])
        for size in batch_buckets(max_batch) if device.type == "cpu" else []:
            cache = KVCache(model.config, size, model.config.block_size, device=device, dtype=dtype)
            for length in (30, 70):
                decode(torch.zeros(size, 1, dtype=torch.long, device=device), cache, [length - i for i in range(size)])

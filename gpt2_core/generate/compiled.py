"""torch.compile for the single-sequence decode step, the case a laptop or a lone student spends its time in.

At batch 1 GPT-2 is held back by per-step overhead, not arithmetic: dozens of small kernels, Python between them
and matrix-vector products that reach half the memory bandwidth. Inductor fuses the small ops and, on the CPU,
freezes the weights and picks the fastest matrix-vector kernel per shape (`CPU_OPTIONS`), which is what makes the CPU
decode step faster (README, Performance).

On CUDA the same compiled step fuses the small kernels. CUDA graphs (mode "reduce-overhead") are not used: they are
recorded per thread and per cache address, while the engine's cache is written in place on its own thread and grows
with the batch; each change would re-record, so plain compiled kernels serve better here.

Compiling needs a C++ compiler (CPU) or Triton (CUDA). If it fails, the engine logs why and stays eager.
"""

from __future__ import annotations

import logging
import types
from collections.abc import Callable
from typing import Any

import torch
import torch._inductor.config as inductor_config

from gpt2_core.model import GPT, KVCache

log = logging.getLogger(__name__)

Decode = Callable[[torch.Tensor, KVCache, list[int]], torch.Tensor]  # GPT.decode's signature


def compile_decode(model: GPT, device: torch.device) -> Decode:
    """A compiled `GPT.decode`: (idx (B, 1), cache, positions) -> logits (B, vocab), the same numbers as eager.

    One sequence runs the compiled graph; a batch runs eager. Compiled batches (padded to static sizes) were measured
    too: no faster end to end, for another copy of the weights each.

    One graph serves every lone step, so it is compiled once (the cold compile is most of the app's time to its fast
    path): the attended length is symbolic from the first call (dynamic=True), and the graph sees only the cache's
    first row, where a lone sequence runs, whatever the rows the cache has (a 1-row cache and a bigger one after a
    busy spell would be two graphs: PyTorch specializes sizes of 1).
    """
    # Set around each call because compilation happens lazily, at a call (torch.compile's options= ignores them).
    freezing = inductor_config.patch(CPU_OPTIONS if device.type == "cpu" else {})
    step = torch.compile(_private_copy(GPT.decode_step).__get__(model), dynamic=True, fullgraph=True)

    def decode(idx: torch.Tensor, cache: KVCache, positions: list[int]) -> torch.Tensor:
        if len(positions) > 1:
            return model.decode(idx, cache, positions)
        with freezing:
            logits: torch.Tensor = step(idx, torch.tensor(positions, device=device), [k[:1] for k in cache.k],
                                        [v[:1] for v in cache.v], positions[0] + 1, False)
            return logits

    return decode


# Inductor's settings for the CPU decode step. Freezing makes the weights constants, prepacked for oneDNN/MKL, and
# max-autotune lets Inductor's C++ GEMM template multiply them: for one token at a time it beats ATen's kernels. For
# CPU int8 it reads the int8 rows and widens them in registers, where `_weight_int8pack_mm` reached about two thirds
# of the memory bandwidth. Measured on gpt2 (README, Performance; the same greedy tokens): int8 65 -> 103-118 tok/s,
# fp32 38 -> 44-49, bf16 57 -> 74-78. The template is chosen outright ("CPP"), not timed against ATen for each shape:
# the timing cost a third of a cold compile and bought no speed (gpt2 int8 on 2 cores: ready in 70 s
# instead of 112, at the same speed). A shape the template cannot serve falls back to ATen's kernel instead of
# failing the compile.
CPU_OPTIONS: dict[str, Any] = dict(freezing=True, max_autotune=True, max_autotune_gemm_backends="CPP",
                                   autotune_fallback_to_aten=True)


def _private_copy(function: Callable[..., Any]) -> types.FunctionType:
    """The same function with its own code object.

    torch.compile keeps compiled graphs per code object: with one code object for every model, each model loaded (a
    switch in the app, a test) would add its graphs to the same list and push the next model past the recompile
    limit, silently back to eager. (PyTorch still keeps a closed model's frozen graphs, and its weights, alive: see
    README, Security and limits.)
    """
    assert isinstance(function, types.FunctionType)  # a plain function (a method as read from its class)
    return types.FunctionType(function.__code__.replace(), function.__globals__, function.__name__,
                              function.__defaults__, function.__closure__)


def warm_up(model: GPT, decode: Decode, *, device: torch.device, dtype: torch.dtype) -> None:
    """Compile now (at load time or in the background, not on a user's request).

    The first call compiles; the others, at other lengths and in a bigger cache (as after a busy spell), check that
    the graph serves them without a recompile, which would stall everyone while it ran.
    """
    with torch.inference_mode():  # as in the engine thread: its cache tensors are inference tensors too
        small, big = (KVCache(model.config, n, model.config.block_size, device=device, dtype=dtype) for n in (1, 2))
        for cache, position in ((small, 8), (small, 40), (big, 41), (big, 90)):
            decode(torch.zeros(1, 1, dtype=torch.long, device=device), cache, [position])

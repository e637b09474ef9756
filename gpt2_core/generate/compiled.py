"""torch.compile for the decode step: first a lone sequence's, the case a laptop or a lone student spends its time
in, then a batch's.

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


class CompiledDecode:
    """A compiled `GPT.decode`: (idx (B, 1), cache, positions) -> logits (B, vocab), the same numbers as eager.

    Two graphs: one for a lone sequence (only the cache length and size are dynamic), compiled first, since a lone
    student spends their time there; then one for batches (the batch size dynamic too), so that 8 callers are not
    sent back to the eager path that one caller left. Until the batch graph is warm, batches run eagerly.
    """

    def __init__(self, model: GPT, device: torch.device):
        self.model = model
        self.device = device
        # Set around each call because compilation happens lazily, at a call (torch.compile's options= ignores them).
        self._options = inductor_config.patch(CPU_OPTIONS if device.type == "cpu" else {})
        self._single = torch.compile(_private_copy(GPT.decode_step).__get__(model), dynamic=None, fullgraph=True)
        self._batch = torch.compile(_private_copy(GPT.decode_step).__get__(model), dynamic=None, fullgraph=True)
        self.batches_compiled = False  # set by warm_up once the batch graph is ready

    def __call__(self, idx: torch.Tensor, cache: KVCache, positions: list[int]) -> torch.Tensor:
        if len(positions) > 1 and not self.batches_compiled:
            return self.model.decode(idx, cache, positions)
        return self._run(self._single if len(positions) == 1 else self._batch, idx, cache, positions)

    def _run(self, step: Callable[..., torch.Tensor], idx: torch.Tensor, cache: KVCache,
             positions: list[int]) -> torch.Tensor:
        # A batch always masks each row's own length (ragged), equal lengths too: one graph, not one per case.
        with self._options:
            logits: torch.Tensor = step(idx, torch.tensor(positions, device=self.device), cache.k, cache.v,
                                        max(positions) + 1, len(positions) > 1)
            return logits

    def warm_up(self, *, dtype: torch.dtype) -> None:
        """Compile the lone sequence's graph now (at load time or in the background, not on a user's request).

        Two lengths and two cache sizes make both dynamic, so a lone request after a busy spell (a bigger cache) or a
        longer text never stalls everyone for a recompile.
        """
        config, device = self.model.config, self.device
        with torch.inference_mode():  # as in the engine thread: its cache tensors are inference tensors too
            small, big = (KVCache(config, n, config.block_size, device=device, dtype=dtype) for n in (1, 2))
            for cache, position in ((small, 8), (small, 40), (big, 41), (big, 90)):
                self._run(self._single, torch.zeros(1, 1, dtype=torch.long, device=device), cache, [position])

    def warm_up_batches(self, *, dtype: torch.dtype) -> None:
        """Compile the batch graph, then send batches through it: three batch sizes and lengths make them dynamic."""
        config, device = self.model.config, self.device
        with torch.inference_mode():
            rows = KVCache(config, 8, config.block_size, device=device, dtype=dtype)
            for positions in ([8, 5], [40, 40, 40], [90, 3, 60, 7, 33, 21, 2, 50]):
                idx = torch.zeros(len(positions), 1, dtype=torch.long, device=device)
                self._run(self._batch, idx, rows, positions)
        self.batches_compiled = True


# Inductor's settings for the CPU decode step. Freezing makes the weights constants, prepacked for oneDNN/MKL.
# Max-autotune times Inductor's C++ GEMM template against ATen's kernel for each matrix shape and keeps the faster;
# for one token at a time the template wins. For CPU int8 it reads the int8 rows and widens them in registers, where
# `_weight_int8pack_mm` reached about two thirds of the memory bandwidth. Measured on gpt2 (README, Performance; the
# same greedy tokens): int8 65 -> 103-118 tok/s, fp32 38 -> 44-49, bf16 57 -> 74-78 (tuned and untuned alternated in
# one session). Tuning adds 10-30 s to the warm-up, which the app runs in the background. CUDA keeps cuBLAS's kernels.
CPU_OPTIONS: dict[str, Any] = dict(freezing=True, max_autotune=True, max_autotune_gemm_backends="CPP,ATEN")


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

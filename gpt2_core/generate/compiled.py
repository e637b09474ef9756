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

import contextlib
import dataclasses
import logging
import os
import shlex
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch._dynamo.config as dynamo_config
import torch._inductor.config as inductor_config
from torch._inductor.custom_graph_pass import CustomGraphPass
from torch._inductor.runtime.cache_dir_utils import default_cache_dir

from gpt2_core.cache import cache_home, cpu_kind
from gpt2_core.model import GPT, KVCache

log = logging.getLogger(__name__)

Decode = Callable[[torch.Tensor, KVCache, list[int]], torch.Tensor]  # GPT.decode's signature


class CompiledDecode:
    """`GPT.decode` compiled: (idx (B, 1), cache, positions) -> logits (B, vocab), the same numbers as eager.

    One graph serves every lone step, so it is compiled once (the cold compile is most of the app's time to its fast
    path): the attended length is symbolic from the first call (dynamic=True), and the graph sees only the cache's
    first row, where a lone sequence runs, whatever the rows the cache has (a 1-row cache and a bigger one after a
    busy spell would be two graphs: PyTorch specializes sizes of 1).

    Batches run eagerly unless `batches`: then a second graph, compiled after the first (`warm_up_batches`), serves
    every batch of 2 rows or more (the batch size symbolic, rows of any lengths, masked). On a CPU without native
    bf16 (AVX2) an eager 8-row int8 step emulates its bf16 arithmetic, and the graph halved it; it costs a second
    compile and another frozen copy of the weights (README, Performance). On AVX-512 its int8 products are multiplied
    in 4-row blocks, twice as fast for 8 rows as Inductor's own choice; on AVX2 the lone graph's in 48-column ones
    (`int8_blocking`).

    The compiler's settings (`_compiling`) are set only while a warm-up compiles: they are global, and the engine
    thread runs the lone graph while the batch graph compiles in another thread.
    """

    def __init__(self, model: GPT, device: torch.device, *, batches: bool = False):
        self.model, self.device = model, device

        # On a CPU the graphs are frozen (CPU_OPTIONS): the weights, and every other attribute of the model's modules,
        # are constants compiled into them, so Dynamo's guards on those modules check nothing a graph could honour.
        # Checking them cost 0.3-0.5 ms of a 6-7 ms lone gpt2 step on 2 AVX2 cores; the cache and the step's
        # arguments stay guarded. (A model is never changed after it compiles: one that is, a fine-tuned one, is
        # another model, with graphs of its own.)
        frozen = {"guard_filter_fn": torch.compiler.skip_guard_on_all_nn_modules_unsafe} if device.type == "cpu" else None

        def compiled() -> Any:  # a graph of its own (see _private_copy), compiled at its first call
            return torch.compile(_private_copy(GPT.decode_step).__get__(model), dynamic=True, fullgraph=True,
                                 options=dict(frozen) if frozen else None)  # (a copy: torch.compile pops from it)

        self.lone = compiled()
        self.batch = compiled() if batches else None
        self.batches_ready = False

    def __call__(self, idx: torch.Tensor, cache: KVCache, positions: list[int]) -> torch.Tensor:
        B = len(positions)
        if B > 1 and not self.batches_ready:  # (only ever True with a batch graph)
            return self.model.decode(idx, cache, positions)
        return self._run(self.lone if B == 1 else self.batch, idx, cache, positions)

    def _run(self, step: Any, idx: torch.Tensor, cache: KVCache, positions: list[int]) -> torch.Tensor:
        """One step through a graph, given the cache's first B rows (the batch's; B > 1: masked, as rows may differ)."""
        B = len(positions)
        pos = torch.tensor(positions, device=self.device)
        logits: torch.Tensor = step(idx, pos, [k[:B] for k in cache.k], [v[:B] for v in cache.v], max(positions) + 1,
                                    B > 1)
        return logits

    def warm_up(self, *, dtype: torch.dtype) -> None:
        """Compile the lone step now (at load time or in the background, not on a user's request).

        The first call compiles; the others, at other lengths and in a bigger cache (as after a busy spell), check that
        the graph serves them without a recompile, which would stall everyone while it ran.
        """
        with self._compiling(), int8_blocking(self.device, "lone"):
            small, big = (self._cache(n, dtype) for n in (1, 2))
            for cache, position in ((small, 8), (small, 40), (big, 41), (big, 90)):
                self(torch.zeros(1, 1, dtype=torch.long, device=self.device), cache, [position])

    def warm_up_batches(self, *, dtype: torch.dtype) -> None:
        """Compile the batch graph (batches=True), then serve batches with it: 2 rows of different lengths, then 3 and
        4 (of equal lengths) in a bigger cache, which reuse the graph."""
        if self.batch is None:
            return
        with self._compiling(), int8_blocking(self.device, "batch"):
            small, big = (self._cache(n, dtype) for n in (2, 4))
            for cache, positions in ((small, [40, 30]), (big, [50, 60, 70]), (big, [45] * 4)):
                self._run(self.batch, torch.zeros(len(positions), 1, dtype=torch.long, device=self.device), cache,
                          positions)
        self.batches_ready = True

    @contextlib.contextmanager
    def _compiling(self) -> Iterator[None]:
        """The settings a warm-up compiles under (on a CPU, CPU_OPTIONS), in inference mode: the engine thread's cache
        holds inference tensors.

        The model's float attributes (LayerNorm's eps, nn.Embedding's norm_type) are constants of the graph
        (specialize_float). Left symbolic, as `dynamic=True` would, they became tensors inside the graph, and the one
        that cannot (norm_type) made Dynamo trace the whole step twice: about 11 s of a 70 s cold compile on 2 cores.
        """
        options = CPU_OPTIONS if self.device.type == "cpu" else {}
        with inductor_config.patch(options), dynamo_config.patch(specialize_float=True), torch.inference_mode():
            yield

    def _cache(self, rows: int, dtype: torch.dtype) -> KVCache:
        return self.model.new_cache(rows, self.model.config.block_size, device=self.device, dtype=dtype)


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


class Int8Blocking(NamedTuple):
    """A register blocking (rows, columns, depth) for Inductor's C++ template on int8 weights by bf16 activations, put
    in place of one group of torch 2.13's configurations: those for `isa` (Inductor's vector instruction set class)
    that `replaces` (the group's extra_check function) admits."""
    isa: str
    replaces: str
    blocking: tuple[int, int, int]


# Measured on gpt2's 49 products (benchmarks/bench_int8_kernels.py; README, Performance, "4-row blocks for batches"
# and "48-column blocks for a lone row on AVX2"):
# - "lone", the lone graph on an AVX2 CPU: one row, fixed, gets Inductor's small-row blockings, (2, 16, 64) or
#   (4, 16, 64): two 8-wide vectors of columns, so each k step has two FMAs in flight on two accumulators. Six vectors
#   (48 columns) multiply the 48 block products of one row in 5.1 ms instead of 6.4 (2 AVX2 cores).
# - "batch", the batch graph on an AVX-512 CPU: rows symbolic, Inductor offers (8, 48), (8, 32) and (16, 16) and
#   picks an 8-row block for 8 rows or more, whose inner loop the compiler cannot keep in registers: 8 rows of the
#   step's products took 24 ms, in 4-row blocks 12 ms (6 ms for 4 rows and 1.9 ms for 2 either way).
# The others are left as Inductor has them: AVX2's batch blocks have 4 rows already, and AVX-512's lone graph was not
# measured faster otherwise.
INT8_BLOCKINGS: dict[str, Int8Blocking] = {
    "lone": Int8Blocking("VecAVX2", "check_int8_woq_small_m_dim", (2, 48, 64)),
    "batch": Int8Blocking("VecAVX512", "do_not_use_with_small_m_for_int8_woq", (4, 48, 1)),
}


class _Keyed(CustomGraphPass):
    """A post-grad pass that changes nothing and keys Inductor's graph cache on the blocking: the cache does not see
    the micro-kernel's configurations, so a graph compiled with Inductor's own blocking (an older app, or a torch where
    the swap is not made) must not serve one compiled with ours, nor the other way round."""

    def __init__(self, graph: str, blocking: tuple[int, int, int]):
        self.graph, self.blocking = graph, blocking

    def __call__(self, graph: torch.fx.Graph) -> None:
        pass

    def uuid(self) -> str:
        return f"gpt2-playground int8 {self.graph} blocking {self.blocking}"


@contextlib.contextmanager
def int8_blocking(device: torch.device, graph: str) -> Iterator[None]:
    """While a graph ("lone" or "batch") compiles on a CPU whose instruction set INT8_BLOCKINGS[graph] is for: its
    blocking instead of Inductor's group it replaces. Inductor has no setting for it, so its list of configurations is
    swapped for the compile, and restored after. Where the list is not as torch 2.13 has it, nothing is changed."""
    chosen, group = INT8_BLOCKINGS[graph], []
    if device.type == "cpu":
        try:
            import torch._inductor.compile_fx  # noqa: F401  (first: the codegen modules import each other through it)
            from torch._inductor.codegen import cpp_micro_gemm as micro
            from torch._inductor.cpu_vec_isa import pick_vec_isa

            configs = micro.micro_gemm_configs[micro.CppMicroGemmFP32Vec]
            check = getattr(micro, chosen.replaces)
            group = [c for c in configs if c.vec_isa_cls.__name__ == chosen.isa and c.extra_check is check
                     and c.input_dtype == torch.bfloat16 and c.input2_dtype == torch.int8]
            if group and not isinstance(pick_vec_isa(), group[0].vec_isa_cls):
                group = []  # another CPU's configurations: Inductor would not use them, and the cache key stays
        except (ImportError, AttributeError, KeyError) as e:
            log.info("the %s graph keeps Inductor's own int8 blocking: %s", graph, e)
    if not group:
        yield
        return
    saved = list(configs)
    ours = dataclasses.replace(group[0], register_blocking=type(group[0].register_blocking)(*chosen.blocking))
    configs[:] = [c for c in configs if c not in group] + [ours]
    try:
        with inductor_config.patch(post_grad_custom_post_pass=_Keyed(graph, chosen.blocking)):
            yield
    finally:
        configs[:] = saved


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


def keep_compiled_graphs() -> Path | None:
    """Have Inductor keep its compiled graphs in the user's cache folder, unless the host chose another folder with
    TORCHINDUCTOR_CACHE_DIR: the folder in use, or None where it cannot be written (Inductor's default then). Call it
    before the first compile.

    A start that finds its graphs there has its fast path in half the time of a cold compile or less (README,
    Performance). Inductor's default folder is in the temp directory, which many systems empty at each boot (a tmpfs
    /tmp: Debian 13, Fedora, Arch), so a class's laptop would compile cold every morning. The folder is one per kind
    of CPU (`cache.cpu_kind`): Inductor's key for a cached graph does not include the instruction set its kernels were
    written for (torch 2.13), so a cache on shared storage could otherwise hand one CPU's code to another.
    """
    chosen = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if chosen and Path(chosen) != Path(default_cache_dir()):  # (importing torch._dynamo sets it to the default)
        return Path(chosen)
    folder = cache_home() / "torchinductor" / cpu_kind()
    if shlex.split(str(folder)) != [str(folder)]:  # Inductor splits its g++ command line as a shell would (torch 2.13)
        log.info("compiled graphs stay in Inductor's temporary folder: its compiler cannot use %s", folder)
        return None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o700)  # code the app will run: the user's alone, a folder made before included
    except OSError as e:  # a read-only home (some containers): compiling still works, cold each start
        log.warning("cannot keep compiled graphs in %s (%s): Inductor's temporary folder it is", folder, e)
        return None
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(folder)
    return folder

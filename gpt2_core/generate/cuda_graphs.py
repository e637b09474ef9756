"""CUDA graphs for the batched decode step: on a GPU, batch-1 decoding of gpt2 is bound by kernel launches, not math.

A graph records one decode step's kernels once and replays them with a single launch. Graphs need fixed shapes and
fixed addresses, so (as vLLM does):
- graphs are captured for a set of padded batch sizes (GRAPH_SIZES); a running batch of B rows is padded up to the next
  captured size P, the padding rows decoding a dummy token into cache rows no request uses (the engine keeps its live
  rows first, 0..B-1), and only the first B rows of the logits are read;
- the step attends over the whole cache with a per-row mask (`GPT.decode_step(..., kv_len=max_len, ragged=True)`)
  instead of over the longest row, so its shapes never change;
- inputs go into static buffers before each replay; the KV cache is the engine's, whose address stays fixed until
  the engine grows it, when the graphs are captured again for the new cache.
Graphs are captured lazily in the engine's own thread (where they replay). A size that the cache cannot hold, or a
capture that fails, runs eagerly (the failure is logged once). On a CPU the same padding runs without graphs (`capture`
False), which is how the padding and the row mapping are tested without a GPU.
Attending over the whole cache reads more of it per step than eager decoding does (for gpt2 at batch 16, about as many
bytes as the weights), so whether graphs win has to be measured on a GPU before they are turned on by default.
"""

from __future__ import annotations

import logging

import torch

from gpt2_core.model import GPT, KVCache

log = logging.getLogger(__name__)

GRAPH_SIZES = (1, 2, 4, 8, 16)


def padded_size(batch: int, capacity: int, sizes: tuple[int, ...] = GRAPH_SIZES) -> int | None:
    """The captured size a batch of `batch` rows runs at: the smallest size >= batch that the cache holds (None: none)."""
    return next((size for size in sizes if batch <= size <= capacity), None)


class GraphedDecode:
    """`GPT.decode`'s signature, (idx (B, 1), cache, positions) -> logits (B, vocab), through padded static steps."""

    pads_batch = True  # runs batches padded to GRAPH_SIZES: the engine grows its cache in powers of two

    def __init__(self, model: GPT, device: torch.device, *, capture: bool | None = None,
                 sizes: tuple[int, ...] = GRAPH_SIZES):
        self.model = model
        self.device = device
        self.capture = device.type == "cuda" if capture is None else capture
        self.sizes = sizes
        self._cache: KVCache | None = None  # the cache the graphs were captured on
        self._graphs: dict[int, torch.cuda.CUDAGraph] = {}
        self._failed = False
        self.replays = 0  # steps that ran padded (graphed on a GPU), for tests and logs
        self.sizes_used: set[int] = set()
        n = max(sizes)
        self._idx = torch.zeros(n, 1, dtype=torch.long, device=device)  # static inputs
        self._pos = torch.zeros(n, dtype=torch.long, device=device)
        self._logits: dict[int, torch.Tensor] = {}  # static outputs, per size

    def __call__(self, idx: torch.Tensor, cache: KVCache, positions: list[int]) -> torch.Tensor:
        B = len(positions)
        size = padded_size(B, cache.batch_size, self.sizes)
        if size is None or self._failed:
            return self.model.decode(idx, cache, positions)
        if cache is not self._cache:  # a new (grown) cache: graphs point at the old one's addresses
            self._cache, self._graphs, self._logits = cache, {}, {}
        self._idx[:B].copy_(idx)
        self._idx[B:size].zero_()
        self._pos[:B].copy_(torch.tensor(positions))
        self._pos[B:size].zero_()  # padding rows write position 0 of rows no request uses
        if not self.capture:
            logits = self._static_step(size, cache)
        else:
            graph = self._graphs.get(size) or self._record(size, cache)
            if graph is None:
                return self.model.decode(idx, cache, positions)
            graph.replay()
            logits = self._logits[size]
        self.replays += 1
        self.sizes_used.add(size)
        return logits[:B].clone()

    def _static_step(self, size: int, cache: KVCache) -> torch.Tensor:
        return self.model.decode_step(self._idx[:size], self._pos[:size], cache.k, cache.v, cache.max_len, True)

    def _record(self, size: int, cache: KVCache) -> torch.cuda.CUDAGraph | None:
        try:
            stream = torch.cuda.Stream(self.device)  # type: ignore[no-untyped-call]  # torch leaves Stream.__new__ untyped
            stream.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(stream):  # warm up on a side stream, as torch.cuda.graphs asks
                for _ in range(2):
                    self._static_step(size, cache)
            torch.cuda.current_stream(self.device).wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, capture_error_mode="thread_local"):  # other threads may use CUDA meanwhile
                self._logits[size] = self._static_step(size, cache)
        except Exception as e:  # capture fails in platform-specific ways; eager always works
            log.warning("CUDA graph capture failed, decoding stays eager: %s", e)
            self._failed = True
            return None
        self._graphs[size] = graph
        log.info("captured a CUDA graph for decode batches of %d", size)
        return graph

"""The memory plan of a training run: the window, the micro-batch and the planned peak, chosen before anything is
allocated, or a refusal that names the flags which make the run fit.

    plan = plan_training(config, context=256, batch=16, bf16=True)   # raises WontFitError if it cannot fit

The estimate (bytes), after nanoGPT's and ZeRO's accounting of mixed-precision Adam training:
  states       16 per parameter: fp32 weights 4 + gradients 4 + AdamW's two moments 8 (+2: bf16 copies under autocast)
  optimizer    the single-tensor AdamW's temporaries: two fp32 copies of the largest parameter (the embedding table)
  activations  per micro-batch token, per layer 17 floats of the width (LayerNorm in and out, q/k/v, attention out,
               MLP in, 4x hidden and its GELU) and a float per head (flash attention keeps no T x T matrix), plus
               the embeddings; measured on this machine at 0.5-0.8 of this (the estimate errs high)
  loss chunk   one chunk of logits (GPT.loss): bf16 and fp32 logits, log-softmax and their gradients, 16 per logit
  overhead     Python, torch, the tokenizer and the allocator's slack, measured (benchmarks/results/train-cpu.md)
glibc's malloc raises its mmap threshold as large blocks are freed (up to 32 MB), after which freed activations and
logits chunks stay in the heap, fragmented: a 3.4M-parameter fine-tune peaked at 1.18 GB that way and at 0.50 GB
with the threshold fixed. `fix_mmap_threshold` fixes it; the CLI calls it (it is process-wide).
Memory available is the least of MemAvailable (/proc/meminfo) and the cgroup's limit minus its usage, or --max-memory.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from dataclasses import dataclass
from pathlib import Path

from gpt2_core.config import GPTConfig
from gpt2_core.memory import readable_bytes
from gpt2_core.model import loss_chunk_rows

FINE_TUNE_CONTEXT = 256  # the default training window of a loaded model (its own context may be 1024)
ACTIVATION_BUDGET = 2**30  # the micro-batch is the largest whose activations stay under this (1 GiB)
OVERHEAD_BYTES = 600 * 2**20  # Python, torch, transformers' tokenizer, allocator slack: measured 340-550 MiB
MMAP_THRESHOLD = 128 * 1024  # glibc's default; fixing it stops the dynamic raise
FLOATS_PER_LAYER_WIDTH = 17  # activations kept for backward, per token, per layer, in units of n_embd floats


class WontFitError(ValueError):
    """The run would need more memory than there is; the message names the flags that make it fit."""


@dataclass(frozen=True)
class TrainingPlan:
    context: int  # training window in tokens
    micro_batch: int  # windows per forward/backward pass (the last of a step's may have fewer)
    accumulation: int  # micro-batches per optimizer step
    batch: int  # windows per optimizer step (the effective batch)
    parameters: int
    planned_peak_bytes: int  # the estimate of the process's peak memory
    available_bytes: int  # what the plan had to fit in
    memory_source: str  # where `available_bytes` came from: "MemAvailable", "cgroup" or "--max-memory"

    def as_dict(self) -> dict[str, object]:
        """The plan as the CLI's --json prints it: {"plan": this}."""
        return {"context": self.context, "micro_batch": self.micro_batch, "accumulation": self.accumulation,
                "batch": self.batch, "parameters": self.parameters,
                "planned_peak_gb": round(self.planned_peak_bytes / 1e9, 3),
                "available_gb": round(self.available_bytes / 1e9, 3), "memory_source": self.memory_source}

    def describe(self) -> str:
        last = self.batch - self.micro_batch * (self.accumulation - 1)
        split = f" (the last of {last})" if last != self.micro_batch else ""
        return (f"plan: {self.parameters / 1e6:.1f}M parameters, a {self.context}-token window, micro-batch "
                f"{self.micro_batch} x {self.accumulation}{split} accumulated = batch {self.batch}; planned peak memory "
                f"{readable_bytes(self.planned_peak_bytes)} of {readable_bytes(self.available_bytes)} available "
                f"({self.memory_source})")


def estimate_peak_bytes(config: GPTConfig, *, context: int, micro_batch: int, bf16: bool) -> int:
    """The planned peak memory of training `config` on micro-batches of `micro_batch` x `context` tokens."""
    params = config.num_parameters()
    states = (16 + (2 if bf16 else 0)) * params
    optimizer = 2 * 4 * config.vocab_size * config.n_embd
    return states + optimizer + activation_bytes(config, context=context, micro_batch=micro_batch) + \
        loss_chunk_bytes(config) + OVERHEAD_BYTES


def activation_bytes(config: GPTConfig, *, context: int, micro_batch: int) -> int:
    per_layer = 4 * (FLOATS_PER_LAYER_WIDTH * config.n_embd + config.n_head)
    per_token = config.n_layer * per_layer + 4 * 4 * config.n_embd  # + embeddings, final LayerNorm, their gradients
    return micro_batch * context * per_token


def loss_chunk_bytes(config: GPTConfig) -> int:
    return 16 * loss_chunk_rows(config.vocab_size) * config.vocab_size


def plan_training(config: GPTConfig, *, context: int, batch: int, bf16: bool, micro_batch: int | None = None,
                  max_memory_gb: float | None = None, context_fixed: bool = False) -> TrainingPlan:
    """Choose the micro-batch (unless given): the largest that divides `batch`, keeps its activations
    under ACTIVATION_BUDGET and fits the memory available; refuse with WontFitError if even the smallest does not fit.
    A given micro-batch that does not divide `batch` makes the last micro-batch of each step smaller.
    `context_fixed`: the window cannot change (a resumed run), so a refusal does not offer a shorter --context."""
    if micro_batch is not None and not (isinstance(micro_batch, int) and 1 <= micro_batch <= batch):
        raise ValueError(f"`micro_batch` has to be an integer in [1, {batch}] (it splits a step's batch of {batch} "
                         f"windows), but is {micro_batch!r}")
    available, source = available_memory(max_memory_gb)
    if micro_batch is None:
        candidates = [m for m in range(batch, 0, -1) if batch % m == 0]
        within = [m for m in candidates
                  if activation_bytes(config, context=context, micro_batch=m) <= ACTIVATION_BUDGET] or [1]
        fitting = [m for m in within if estimate_peak_bytes(config, context=context, micro_batch=m, bf16=bf16)
                   <= available]
        micro_batch = fitting[0] if fitting else 1
    accumulation = -(-batch // micro_batch)
    peak = estimate_peak_bytes(config, context=context, micro_batch=micro_batch, bf16=bf16)
    plan = TrainingPlan(context, micro_batch, accumulation, batch, config.num_parameters(), peak, available, source)
    if peak > available:
        advice = _what_fits(config, context=context, micro_batch=micro_batch, bf16=bf16, available=available,
                            context_fixed=context_fixed)
        raise WontFitError(f"training would not fit in memory: {plan.describe().removeprefix('plan: ')}. {advice}")
    return plan


def _what_fits(config: GPTConfig, *, context: int, micro_batch: int, bf16: bool, available: int,
               context_fixed: bool) -> str:
    """The advice of a plan that does not fit: only the settings that would (micro-batch 1 was offered at 1, and
    over the memory there was; a shorter --context to a resumed run, which refuses it)."""
    one = estimate_peak_bytes(config, context=context, micro_batch=1, bf16=bf16)
    short = estimate_peak_bytes(config, context=min(context, 64), micro_batch=1, bf16=bf16)
    more = "or allow more with --max-memory GB if the machine has it"
    if micro_batch > 1 and one <= available:
        return f"Ask for a smaller --micro-batch (1 plans {readable_bytes(one)}), {more}"
    if context_fixed:
        return (f"Even micro-batch 1 plans {readable_bytes(one)} (a resumed run keeps its {context}-token window): "
                f"free memory, {more}")
    if context > 64 and short <= available:
        return f"Ask for a shorter --context (64 tokens at micro-batch 1 plans {readable_bytes(short)}), {more}"
    return (f"Even micro-batch 1 with a {min(context, 64)}-token context plans {readable_bytes(short)}, mostly the "
            f"model and its optimizer: free memory, {more}")


def available_memory(max_memory_gb: float | None = None) -> tuple[int, str]:
    """(bytes, source): --max-memory if given, else the least of MemAvailable and the cgroup's limit minus usage."""
    if max_memory_gb is not None:
        return int(max_memory_gb * 1e9), "--max-memory"
    candidates = [(_meminfo_available(), "MemAvailable"), (_cgroup_available(), "cgroup")]
    found = [(n, source) for n, source in candidates if n is not None]
    if not found:
        raise WontFitError("cannot tell how much memory is available (no /proc/meminfo or cgroup): "
                           "give it with --max-memory GB")
    return min(found)


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024  # kB
    except OSError:
        return None
    return None


def _cgroup_available() -> int | None:
    """The cgroup's limit minus its usage (cgroup v2, else v1); None where no limit is set."""
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            limit, usage = Path(limit_file).read_text().strip(), Path(usage_file).read_text().strip()
        except OSError:
            continue
        if limit == "max" or int(limit) >= 2**60:  # v1 writes "no limit" as a huge number
            return None
        return max(0, int(limit) - int(usage))
    return None


def fix_mmap_threshold() -> bool:
    """Keep glibc's malloc from raising its mmap threshold, so freed large blocks go back to the system; False where
    the C library is not glibc."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        mallopt = libc.mallopt if libc is not None else None
    except (OSError, AttributeError):
        return False
    M_MMAP_THRESHOLD = -3
    return mallopt is not None and bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD))

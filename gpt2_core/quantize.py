"""Quantization of the linear layers: int8 on a CPU (the project's kernel or PyTorch's), and bitsandbytes on a GPU.

"int8" on a CPU keeps each linear layer's weight of the blocks and the LM head as int8 with one scale per output
channel. A CPU decoding a token at a time is bound by the bytes of weights it reads, and int8 reads a quarter of
fp32's. Two kernels multiply them:
- on Linux x86-64 with AVX2, the project's own (int8_kernel.py, Int8RowsLinear): each activation row rounded to int8
  with its own scale, int8 by int8 with exact int32 sums, so a row's products are the same alone or in a batch, and
  a batch of 8 rows costs far less than 8 lone rows;
- elsewhere PyTorch's `_weight_int8pack_mm` (Int8Linear, as gpt-fast does it): the activations rounded to bf16 (its
  fast path), the weights widened to floats.
Both stay close to fp32's outputs (the same next word at about 97% of places on the bundled model). The token
embedding reads the LM head's int8 table (GPT-2 ties them), so the whole model is about a quarter of its fp32 size;
positions, LayerNorms and biases stay fp32. The alternatives, PyTorch's dynamic
quantization (which also quantizes activations) and torchao's eager int8, are measured in benchmarks/bench_decode.py.
"int8" on a GPU is LLM.int8 (Dettmers et al. 2022, outlier features kept in 16 bit) and "nf4" is 4-bit NormalFloat
(QLoRA, 2023), both with bitsandbytes (nf4 on a CPU too, to save memory, not time); embeddings, LayerNorms and the LM
head stay in the model's dtype there. bitsandbytes is imported only here, only when asked.
"""

from __future__ import annotations

import logging
import types
from typing import TYPE_CHECKING, Literal

import torch
import torch.nn as nn

import gpt2_core.int8_kernel as int8_kernel

if TYPE_CHECKING:
    from gpt2_core.model import GPT

log = logging.getLogger(__name__)

Quantize = Literal["int8", "nf4"]
QUANTIZE_CHOICES: tuple[Quantize, ...] = ("int8", "nf4")
# Rows of a weight quantized at a time: the LM head's 50,257 rows at once took three fp32 temporaries of its size
# (460 MB for gpt2, the load's peak); 4096 rows take 12.6 MB each
QUANTIZE_ROWS = 4096


def validate_quantize(quantize: str | None) -> Quantize | None:
    """`quantize` itself, checked (None: no quantization)."""
    if quantize is not None and quantize not in QUANTIZE_CHOICES:
        raise ValueError(f"`quantize` has to be None, 'int8' or 'nf4', but is {quantize!r}")
    return quantize


def _import_bitsandbytes() -> types.ModuleType:
    try:
        import bitsandbytes as bnb
    except ImportError as e:
        raise RuntimeError(
            "quantization needs the bitsandbytes package: pip install bitsandbytes (or run without --quantize)"
        ) from e
    except Exception as e:  # bitsandbytes raises assorted errors when its native library cannot load
        raise RuntimeError(f"bitsandbytes is installed but cannot run on this platform: {e}") from e
    return bnb


def quantize_block(block: nn.Module, quantize: Quantize, *, device: torch.device, dtype: torch.dtype) -> None:
    """Quantize one transformer block's linear layers for `device`, in place (the loader calls this on each block as
    soon as its weights are read, checkpoint.load_weights): Int8Linear for int8 on a CPU, else each nn.Linear by its
    bitsandbytes counterpart, on `device`."""
    validate_quantize(quantize)
    cpu_int8 = quantize == "int8" and device.type == "cpu"
    bnb = None if cpu_int8 else _import_bitsandbytes()
    for parent in list(block.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is not nn.Linear:
                continue
            if bnb is None:
                setattr(parent, name, int8_linear(child))
                continue
            w, b = child.weight.data, child.bias.data
            if quantize == "int8":
                q = bnb.nn.Linear8bitLt(child.in_features, child.out_features, bias=True,
                                        has_fp16_weights=False, threshold=6.0)
                q.weight = bnb.nn.Int8Params(w, requires_grad=False, has_fp16_weights=False)
            else:
                q = bnb.nn.Linear4bit(child.in_features, child.out_features, bias=True,
                                      compute_dtype=dtype, quant_type="nf4")
                q.weight = bnb.nn.Params4bit(w, requires_grad=False, quant_type="nf4")
            q.bias = nn.Parameter(b.to(dtype), requires_grad=False)
            try:
                setattr(parent, name, q.to(device))  # bitsandbytes quantizes as the weight moves to the device
            except (RuntimeError, NotImplementedError) as e:
                raise RuntimeError(f"bitsandbytes cannot run {quantize} on {device}: {e}") from e


def quantize_head(model: GPT, quantize: Quantize, *, device: torch.device) -> None:
    """After the blocks: int8 on a CPU quantizes the tied LM head and the embedding too (one int8 table for both);
    bitsandbytes keeps them in the model's dtype."""
    if quantize == "int8" and device.type == "cpu":
        assert isinstance(model.lm_head, nn.Linear)  # not quantized yet
        model.lm_head = int8_linear(model.lm_head)
        model.wte = Int8Embedding(model.lm_head)
        if int8_kernel.fp16_cache(model.config.head_dim):  # where the int8 kernel serves, its decode attention too
            model.cache_dtype = torch.float16
        log.info("quantized the linear layers and the embedding to int8 weights for the CPU%s",
                 "; keys and values cached in fp16" if model.cache_dtype else "")
    else:
        log.info("quantized the transformer blocks' linear layers to %s", quantize)


def quantize_rows(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A weight (out, in) as int8 with one scale per output channel (symmetric: each row's largest magnitude maps to
    127), a few rows at a time so that the temporaries stay small. The scales as both int8 layers keep them: bf16."""
    weight = torch.empty(w.shape, dtype=torch.int8, device=w.device)
    scales = torch.empty(w.shape[0], dtype=torch.float32, device=w.device)
    for start in range(0, w.shape[0], QUANTIZE_ROWS):
        rows = w[start:start + QUANTIZE_ROWS].float()
        s = rows.abs().amax(dim=1).clamp(min=1e-12) / 127
        weight[start:start + QUANTIZE_ROWS] = torch.round(rows / s[:, None]).clamp(-127, 127)
        scales[start:start + QUANTIZE_ROWS] = s
    return weight, scales.to(torch.bfloat16)


def int8_linear(linear: nn.Linear) -> Int8Linear | Int8RowsLinear:
    """`linear` with int8 weights for a CPU: multiplied int8 by int8 where the project's kernel serves
    (int8_kernel.usable), else by PyTorch's kernel with bf16 activations."""
    if linear.in_features % 2 == 0 and int8_kernel.usable():
        return Int8RowsLinear(linear)
    return Int8Linear(linear)


class Int8Linear(nn.Module):
    """A linear layer with int8 weights, one scale per output channel (symmetric), and fp32 activations."""

    weight: torch.Tensor  # (out, in) int8 (buffers, registered in __init__)
    scales: torch.Tensor  # (out,) bf16
    bias: torch.Tensor | None  # (out,) fp32

    def __init__(self, linear: nn.Linear):
        super().__init__()
        weight, scales = quantize_rows(linear.weight.detach())
        self.register_buffer("weight", weight)
        self.register_buffer("scales", scales)
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().float())
        self.in_features, self.out_features = linear.in_features, linear.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The kernel's fast path takes bf16 activations (fp32 ones run many times slower, measured); it sums in fp32.
        y = torch._weight_int8pack_mm(x.reshape(-1, self.in_features).to(torch.bfloat16), self.weight, self.scales)
        y = y.view(*x.shape[:-1], self.out_features).float()
        return y if self.bias is None else y + self.bias

    def rows(self, idx: torch.Tensor) -> torch.Tensor:
        """Rows `idx` of the weight, dequantized (fp32): the tied embedding's lookup."""
        return self.weight[idx].float() * self.scales[idx].float().unsqueeze(-1)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 weights"


class Int8RowsLinear(nn.Module):
    """A linear layer with int8 weights (one bf16 scale per output channel) that rounds its input to int8 too, one
    scale per row, and multiplies int8 by int8 with exact sums (the project's kernel, int8_kernel.py). The weights are
    kept in the kernel's packed layout only; `weight` unpacks a copy."""

    packed: torch.Tensor  # (ceil(out / 8), in / 2, 8, 2) int8 (int8_rows.cpp)
    scales: torch.Tensor  # (out,) bf16, as Int8Linear's (the same bytes, memory.py's estimate)
    bias: torch.Tensor | None  # (out,) fp32

    def __init__(self, linear: nn.Linear):
        super().__init__()
        weight, scales = quantize_rows(linear.weight.detach())
        self.register_buffer("packed", torch.ops.gpt2_core.int8_rows_pack(weight))
        self.register_buffer("scales", scales)
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().float())
        self.in_features, self.out_features = linear.in_features, linear.out_features

    @property
    def weight(self) -> torch.Tensor:
        """The int8 weight (out, in), unpacked (a copy)."""
        return self.packed.permute(0, 2, 1, 3).reshape(-1, self.in_features)[:self.out_features]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y: torch.Tensor = torch.ops.gpt2_core.int8_rows_linear(x.reshape(-1, self.in_features).float(), self.packed,
                                                               self.scales, self.bias)
        return y.view(*x.shape[:-1], self.out_features)

    def rows(self, idx: torch.Tensor) -> torch.Tensor:
        """Rows `idx` of the weight, dequantized (fp32), read from the packed layout: the tied embedding's lookup."""
        idx = torch.where(idx < 0, idx + self.out_features, idx)  # (as Int8Linear.rows: -1 is the last row)
        picked = self.packed[idx // 8, :, idx % 8, :]  # (*idx.shape, in / 2, 2)
        return picked.reshape(*idx.shape, self.in_features).float() * self.scales[idx].float().unsqueeze(-1)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, int8 weights by int8 activations "
                "(one scale per row)")


class Int8Embedding(nn.Module):
    """The token embedding read from the tied LM head's int8 rows (GPT-2 ties them), so one int8 table serves both."""

    def __init__(self, head: Int8Linear | Int8RowsLinear):
        super().__init__()
        self._head = [head]  # a reference, not a submodule: the head's tensors are counted and moved once

    @property
    def weight(self) -> torch.Tensor:
        return self._head[0].weight

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self._head[0].rows(idx)

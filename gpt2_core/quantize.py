"""Weight-only quantization of the transformer blocks' linear layers with bitsandbytes.

"int8" is LLM.int8 (Dettmers et al. 2022, outlier features kept in 16 bit); "nf4" is 4-bit NormalFloat (QLoRA, 2023).
Embeddings, LayerNorms and the (tied) LM head stay in the model's dtype. bitsandbytes is imported only here, only when asked.
"""

from __future__ import annotations

import logging
from typing import Literal

import torch
import torch.nn as nn

log = logging.getLogger(__name__)

Quantize = Literal["int8", "nf4"]
QUANTIZE_CHOICES: tuple[str, ...] = ("int8", "nf4")


def validate_quantize(quantize: str | None) -> None:
    if quantize is not None and quantize not in QUANTIZE_CHOICES:
        raise ValueError(f"`quantize` has to be None, 'int8' or 'nf4', but is {quantize!r}")


def _import_bitsandbytes():
    try:
        import bitsandbytes as bnb
    except ImportError as e:
        raise RuntimeError(
            "quantization needs the bitsandbytes package: pip install bitsandbytes (or run without --quantize)"
        ) from e
    except Exception as e:  # bitsandbytes raises assorted errors when its native library cannot load
        raise RuntimeError(f"bitsandbytes is installed but cannot run on this platform: {e}") from e
    return bnb


def quantize_blocks(model: nn.Module, quantize: Quantize, *, device: torch.device, dtype: torch.dtype) -> None:
    """Replace every nn.Linear inside model.h (the transformer blocks) by its bitsandbytes counterpart, on `device`."""
    validate_quantize(quantize)
    bnb = _import_bitsandbytes()
    for block in model.h:
        for parent in block.modules():
            for name, child in list(parent.named_children()):
                if type(child) is not nn.Linear:
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
    log.info("quantized the transformer blocks' linear layers to %s", quantize)

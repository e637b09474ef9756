"""Choosing the device and the precision: `auto` picks CUDA (fp16), then Apple MPS (fp16), then the CPU (fp32)."""

from __future__ import annotations

import torch

DTYPE_NAMES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """'auto' -> cuda, then mps, then cpu; otherwise 'cpu', 'cuda', 'cuda:1', 'mps' (checked to exist)."""
    if isinstance(device, torch.device):
        device = str(device)
    if not isinstance(device, str):
        raise ValueError(f"`device` has to be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', but is {device!r}")
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as e:
        raise ValueError(f"`device` has to be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', but is {device!r}") from e
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"`device` is {device!r}, but this machine has no CUDA GPU that PyTorch can use")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"`device` is {device!r}, but only {torch.cuda.device_count()} CUDA device(s) exist")
    elif dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError(f"`device` is {device!r}, but Apple MPS is not available on this machine")
    elif dev.type != "cpu":
        raise ValueError(f"`device` has to be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', but is {device!r}")
    return dev


def resolve_dtype(dtype: str | torch.dtype, device: torch.device) -> torch.dtype:
    """'auto' -> float16 on CUDA and MPS, float32 on the CPU; otherwise one of DTYPE_NAMES or a torch floating dtype."""
    if isinstance(dtype, torch.dtype):
        if dtype not in DTYPE_NAMES.values():
            raise ValueError(f"`dtype` has to be float32, float16 or bfloat16, but is {dtype}")
        return dtype
    if dtype == "auto":
        return torch.float32 if device.type == "cpu" else torch.float16
    if dtype not in DTYPE_NAMES:
        raise ValueError(f"`dtype` has to be 'auto' or one of {', '.join(DTYPE_NAMES)}, but is {dtype!r}")
    return DTYPE_NAMES[dtype]

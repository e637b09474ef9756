"""Where the app keeps what it builds for this machine between starts: the user's cache folder, one per kind of CPU."""

from __future__ import annotations

import hashlib
import os
import platform
from pathlib import Path

import torch


def cache_home() -> Path:
    """The app's folder in the user's cache (XDG_CACHE_HOME, else ~/.cache; the XDG spec ignores a relative one)."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    return (Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache") / "gpt2-playground"


def cpu_kind() -> str:
    """A name for this kind of CPU: ATen's vector level and a digest of the CPU's model and feature flags."""
    try:  # Linux: the first processor's model name and flags (x86) or features (Arm)
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        described = [next((line for line in lines if line.startswith(key)), "") for key in ("model name", "flags",
                                                                                            "Features")]
    except OSError:
        described = [platform.processor()]
    digest = hashlib.sha256("\n".join([platform.machine(), *described]).encode()).hexdigest()[:12]
    return f"{torch.backends.cpu.get_cpu_capability().lower().replace(' ', '-')}-{digest}"  # ("NO AVX", "Z VECTOR")

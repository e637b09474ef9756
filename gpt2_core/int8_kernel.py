"""The project's int8-by-int8 kernel for CPUs with AVX2 (int8_rows.cpp): built here once, checked, then used by int8.

Why it exists. A CPU decoding int8 weights with PyTorch's kernels widens every weight to a float and multiplies in
fp32, 8 products an instruction; on AVX2 that is bound by the arithmetic, not by memory, and a batch pays it for each
row. Eight callers' step then cost about three lone steps, so eight callers made only about twice one caller's
tokens (README, Performance). Quantizing the activations to int8 too, one scale per row, lets AVX2 multiply int8 by
int8 with exact int32 sums, 16 products an instruction, and widen each weight once for four rows. ONNX Runtime does
the same (MLAS); PyTorch ships no such CPU kernel whose rows stay independent and whose sums are exact on AVX2
(`torch._int_mm`'s saturate there; fbgemm's dynamic int8 takes one scale for the whole batch). Rows independent and
exact is what keeps a seed's story the same alone or among eight callers, bit for bit.

What it costs: 8-bit activations. On the bundled model and held-out Macbeth, int8 picks fp32's next word at 97% of
places either way (tests/test_quantize.py asserts at least 95%).

Where. Linux on x86-64 whose best vector level is AVX2 (most laptops, and the free Spaces machines measured), with a
C++ compiler (g++, as torch.compile needs anyway). It is built against the installed torch into the user's cache
folder (about 10 s on 2 cores, once per torch and CPU kind), loaded, and checked against exact integer arithmetic
before any model uses it. Anywhere else, or if any of that fails (the log says why), int8 stays on PyTorch's kernel.
Not used on AVX-512 CPUs: there the compiled path was measured and this kernel was not. GPT2_INT8_KERNEL=off keeps
PyTorch's kernel everywhere (for comparisons; the benchmarks use it).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import torch

from gpt2_core.cache import cache_home, cpu_kind

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("int8_rows.cpp")
OFF = "GPT2_INT8_KERNEL"  # "off": PyTorch's kernel everywhere
BUILD_TIMEOUT_S = 300


_lock = threading.Lock()  # two models loading at once (the app and BERT's tab, tests) build and register it once


def usable() -> bool:
    """Whether int8 linear layers on this CPU multiply through the kernel (building and checking it on first call)."""
    if os.environ.get(OFF, "").lower() in ("off", "0", "false", "no"):
        return False
    with _lock:
        return _loaded()


@functools.cache
def _loaded() -> bool:
    why_not = _unsupported()
    if why_not:
        log.info("int8 stays on PyTorch's kernel: %s", why_not)
        return False
    try:
        if not _registered():
            torch.ops.load_library(str(_built()))  # type: ignore[no-untyped-call]  # torch leaves it untyped
        _register_fake()
        error = _check()
    except (OSError, RuntimeError, subprocess.SubprocessError) as e:
        log.warning("int8 stays on PyTorch's kernel: the int8-by-int8 kernel did not build or load (%s)", e)
        return False
    if error:
        log.warning("int8 stays on PyTorch's kernel: the int8-by-int8 kernel's sums are off by %s here", error)
        return False
    log.info("int8 multiplies int8 by int8 (the project's AVX2 kernel, 8-bit activations per row)")
    return True


def _unsupported() -> str:
    """Why the kernel is not for this machine, or ''."""
    if sys.platform != "linux" or platform.machine() not in ("x86_64", "AMD64"):
        return f"the kernel is for Linux on x86-64, not {sys.platform} on {platform.machine()}"
    level = torch.backends.cpu.get_cpu_capability()
    if level != "AVX2":
        return f"the kernel is for CPUs whose best vector level is AVX2, this one's is {level}"
    if not _compiler():
        return "no C++ compiler (g++) to build the kernel"
    return ""


def _registered() -> bool:
    """Whether this process has the kernel's ops already (a second library defining them would abort it)."""
    return hasattr(torch.ops.gpt2_core, "int8_rows_linear")


def _compiler() -> str | None:
    return shutil.which(os.environ.get("CXX", "g++"))


def _built() -> Path:
    """The kernel's shared library for this torch and CPU kind: from the cache folder, else compiled into it."""
    torch_root = Path(torch.__file__).parent
    command = [_compiler() or "g++", "-O3", "-mavx2", "-mfma", "-ffp-contract=off", "-fopenmp", "-fPIC", "-shared", "-std=c++20",
               f"-D_GLIBCXX_USE_CXX11_ABI={int(torch._C._GLIBCXX_USE_CXX11_ABI)}",
               f"-I{torch_root / 'include'}", f"-I{torch_root / 'include' / 'torch' / 'csrc' / 'api' / 'include'}",
               str(SOURCE), f"-L{torch_root / 'lib'}", "-lc10", "-ltorch_cpu", f"-Wl,-rpath,{torch_root / 'lib'}"]
    key = hashlib.sha256("\n".join([SOURCE.read_text(), torch.__version__, *command]).encode()).hexdigest()[:16]
    folder = cache_home() / "kernels" / cpu_kind()
    library = folder / f"int8_rows-{key}.so"
    if library.exists():
        return library
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)  # code the app will run: the user's alone
    with tempfile.TemporaryDirectory(dir=folder) as scratch:  # built aside, then renamed: a second process never
        built = Path(scratch) / library.name                  # loads a half-written library
        log.info("building the int8-by-int8 kernel (once for this torch and CPU)")
        done = subprocess.run([*command, "-o", str(built)], capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
        if done.returncode != 0:
            raise RuntimeError(f"{command[0]} failed: {done.stderr.strip()[-2000:]}")
        os.replace(built, library)
    return library


@functools.cache  # (once: a second registration is an error, and a test may load the library again)
def _register_fake() -> None:
    """Shapes for torch.compile, which traces the ops without running them."""
    def linear(x: torch.Tensor, packed: torch.Tensor, scales: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        return x.new_empty(x.shape[0], scales.shape[0])

    def pack(weight: torch.Tensor) -> torch.Tensor:
        return weight.new_empty((weight.shape[0] + 7) // 8, weight.shape[1] // 2, 8, 2)

    torch.library.register_fake("gpt2_core::int8_rows_linear", linear)
    torch.library.register_fake("gpt2_core::int8_rows_pack", pack)


def reference(x: torch.Tensor, weight: torch.Tensor, scales: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """What the kernel computes, in plain PyTorch: each row of x rounded to int8 with its own scale (its largest
    magnitude to 127), multiplied by the int8 weights exactly (int64 sums), then scaled back (float64)."""
    s = x.abs().amax(dim=-1, keepdim=True) / 127
    s = torch.where(s > 0, s, torch.ones_like(s))
    q = torch.round(x / s).clamp(-127, 127)
    sums = q.long() @ weight.long().t()
    y = sums.double() * (s.double() * scales.double())
    return y if bias is None else y + bias.double()


def _check() -> int:
    """The largest difference between the kernel's int32 sums and exact ones, on rows and channels that fill every
    kind of tile (0: exact). The scales are 1, so the outputs are the sums."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randint(-127, 128, (9, 96), generator=generator).float()
    x[:, 0] = 127  # each row's largest magnitude is 127, so its scale is 1
    weight = torch.randint(-127, 128, (43, 96), dtype=torch.int8, generator=generator)
    y = torch.ops.gpt2_core.int8_rows_linear(x, torch.ops.gpt2_core.int8_rows_pack(weight), torch.ones(43), None)
    return int((y.double() - x.double() @ weight.double().t()).abs().max())

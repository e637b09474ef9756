"""The project's CPU kernels for AVX2, built here once, checked, then used by int8: int8 by int8 (int8_rows.cpp), and
the decode step's attention over a KV cache kept in fp16 (decode_attention.cpp, which says why it exists; a model
whose heads it takes gets the fp16 cache, quantize.quantize_head). One library, one switch (GPT2_INT8_KERNEL).

Why int8 by int8. A CPU decoding int8 weights with PyTorch's kernels widens every weight to a float and multiplies in
fp32, 8 products an instruction; on AVX2 that is bound by the arithmetic, not by memory, and a batch pays it for each
row. Eight callers' step then cost about three lone steps, so eight callers made only about twice one caller's
tokens (README, Performance). Quantizing the activations to int8 too, one scale per row, lets AVX2 multiply int8 by
int8 with exact int32 sums, 16 products an instruction, and widen each weight once for up to eight rows. ONNX Runtime does
the same (MLAS); PyTorch ships no such CPU kernel whose rows stay independent and whose sums are exact on AVX2
(`torch._int_mm`'s saturate there; fbgemm's dynamic int8 takes one scale for the whole batch). With rows
independent and sums exact, a row's products are the same bits alone or among eight callers.

What it costs: 8-bit activations. On the bundled model and held-out Macbeth, int8 picks fp32's next word at 97% of
places either way (tests/test_quantize.py asserts at least 95%).

Where. Linux on x86-64 whose best vector level is AVX2 (most laptops, and the free Spaces machines measured), with a
C++ compiler (g++, as torch.compile needs anyway). It is built against the installed torch into the user's cache
folder (about 20 s on 2 cores, once per torch and CPU kind), loaded, and checked against exact integer arithmetic
before any model uses it (the attention against float64). Anywhere else, or if any of that fails (the log says why),
int8 stays on PyTorch's kernel and its cache in fp32, read by ATen's attention.
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
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import torch

from gpt2_core.cache import cache_home, cpu_kind

log = logging.getLogger(__name__)

SOURCES = tuple(Path(__file__).with_name(name) for name in ("int8_rows.cpp", "decode_attention.cpp"))  # one library
OFF = "GPT2_INT8_KERNEL"  # "off": PyTorch's kernels everywhere
HEAD_SIZES = (32, 64, 128)  # decode_attention.cpp's
BUILD_TIMEOUT_S = 300


_lock = threading.Lock()  # two models loading at once (the app and BERT's tab, tests) build and register it once


def usable() -> bool:
    """Whether int8 linear layers on this CPU multiply through the kernel (building and checking it on first call)."""
    if os.environ.get(OFF, "").lower() in ("off", "0", "false", "no"):
        return False
    with _lock:
        return _loaded()


def fp16_cache(head_size: int) -> bool:
    """Whether a CPU int8 model whose heads are `head_size` wide keeps its KV cache in fp16, which the project's
    decode attention reads (decode_attention.cpp): where the int8 kernel serves, with it."""
    return head_size in HEAD_SIZES and usable()


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
        wrong = _check()
    except Exception as e:  # whatever a build, a load or a broken kernel raises: the app serves on PyTorch's kernel
        log.warning("int8 stays on PyTorch's kernel: the project's CPU kernels did not build or load (%s)", e)
        return False
    if wrong:
        log.warning("int8 stays on PyTorch's kernel: the project's CPU kernels' outputs are wrong here (%s)", wrong)
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
    if not _torch_uses_libgomp():
        return "this torch splits its work with another OpenMP runtime than GNU's, which the kernel is built with"
    return ""


def _torch_uses_libgomp() -> bool:
    """Whether this process's torch runs GNU OpenMP (libgomp, as PyTorch's Linux wheels): the kernel, built with
    g++ -fopenmp, then shares torch's threads; with another runtime (conda's llvm-openmp, Intel's) it would start a
    second pool that ignores torch.set_num_threads."""
    try:
        return "/libgomp" in Path("/proc/self/maps").read_text()
    except OSError:
        return False


def _registered() -> bool:
    """Whether this process has the kernel's ops already (a second library defining them would abort it)."""
    return hasattr(torch.ops.gpt2_core, "int8_rows_linear")


def _compiler() -> str | None:
    return shutil.which(os.environ.get("CXX", "g++"))


def _built() -> Path:
    """The kernel's shared library for this torch and CPU kind: from the cache folder, else compiled into it. A build
    that failed is not tried again at each start: its compiler's message is kept beside (delete it to try again)."""
    torch_root = Path(torch.__file__).parent
    command = [_compiler() or "g++", "-O3", "-mavx2", "-mfma", "-mf16c", "-ffp-contract=off", "-fopenmp", "-fPIC", "-shared",
               "-std=c++20", f"-D_GLIBCXX_USE_CXX11_ABI={int(torch._C._GLIBCXX_USE_CXX11_ABI)}",
               f"-I{torch_root / 'include'}", f"-I{torch_root / 'include' / 'torch' / 'csrc' / 'api' / 'include'}",
               *map(str, SOURCES), f"-L{torch_root / 'lib'}", "-lc10", "-ltorch_cpu", f"-Wl,-rpath,{torch_root / 'lib'}"]
    text = [source.read_text() for source in SOURCES]
    key = hashlib.sha256("\n".join([*text, torch.__version__, *command]).encode()).hexdigest()[:16]
    folder = cache_home() / "kernels" / cpu_kind()
    library, failed = folder / f"kernels-{key}.so", folder / f"kernels-{key}.failed"
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)  # code the app will run: the user's alone, a folder made before included
    if failed.exists():
        raise RuntimeError(f"it failed to build before ({failed}): {failed.read_text(errors='replace')[-500:]}")
    if library.exists() and _trusted(library):
        return library
    with tempfile.TemporaryDirectory(dir=folder) as scratch:  # built aside, then renamed: a second process never
        built = Path(scratch) / library.name                  # loads a half-written library
        log.info("building the int8-by-int8 kernel with g++, once for this torch and CPU (20 s to a minute)")
        compiler = subprocess.Popen([*command, "-o", str(built)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    start_new_session=True)  # a group of its own: a timeout ends cc1plus too
        try:
            output = compiler.communicate(timeout=BUILD_TIMEOUT_S)[0].decode(errors="replace")
        except subprocess.TimeoutExpired:
            os.killpg(compiler.pid, signal.SIGKILL)
            compiler.wait()
            raise RuntimeError(f"{command[0]} took more than {BUILD_TIMEOUT_S} s") from None
        if compiler.returncode != 0:
            failed.write_text(output[-4000:])
            raise RuntimeError(f"{command[0]} failed: {output.strip()[-2000:]}")
        os.replace(built, library)
    return library


def _trusted(library: Path) -> bool:
    """Whether a cached library is this user's own and writable by no one else (else it is built again)."""
    facts = library.stat()
    return facts.st_uid == os.getuid() and not facts.st_mode & 0o022


@functools.cache  # (once: a second registration is an error, and a test may load the library again)
def _register_fake() -> None:
    """Shapes for torch.compile, which traces the ops without running them."""
    def linear(x: torch.Tensor, packed: torch.Tensor, scales: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        return x.new_empty(x.shape[0], scales.shape[0])

    def pack(weight: torch.Tensor) -> torch.Tensor:
        return weight.new_empty((weight.shape[0] + 7) // 8, weight.shape[1] // 2, 8, 2)

    def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, positions: torch.Tensor,
                  scale: float) -> torch.Tensor:
        return q.new_empty(q.shape)

    torch.library.register_fake("gpt2_core::int8_rows_linear", linear)
    torch.library.register_fake("gpt2_core::int8_rows_pack", pack)
    torch.library.register_fake("gpt2_core::decode_attention", attention)


def reference(x: torch.Tensor, weight: torch.Tensor, scales: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """What the kernel computes, in plain PyTorch: each row of x rounded to int8 with its own scale (its largest
    magnitude to 127), multiplied by the int8 weights exactly (int64 sums), then scaled back (float64) by the row's
    scale and each channel's (bf16 in the kernel, read exactly)."""
    s = x.abs().amax(dim=-1, keepdim=True) / 127
    s = torch.where(s > 0, s, torch.ones_like(s))
    q = torch.round(x / s).clamp(-127, 127)
    sums = q.long() @ weight.long().t()
    y = sums.double() * (s.double() * scales.double())
    return y if bias is None else y + bias.double()


def reference_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, positions: torch.Tensor,
                        scale: float) -> torch.Tensor:
    """What decode_attention computes, in plain PyTorch (float64): q (B, nh, 1, hs) attending over each row's cached
    keys and values (fp16) at positions 0 .. positions[b]."""
    out = []
    for b, last in enumerate(positions.tolist()):
        scores = (q[b].double() @ k[b, :, : last + 1].double().transpose(-1, -2)) * scale  # (nh, 1, last + 1)
        out.append(scores.softmax(-1) @ v[b, :, : last + 1].double())
    return torch.stack(out)


def _check() -> str:
    """What is wrong with the kernel's outputs on this machine, or '': exact integers in, through every kind of tile
    (1 to 8 rows, a lone row's wider tile; 1 to 4 blocks, one cut short), a depth with a tail past its 16-column
    steps, and a bias. Each row's largest magnitude is 127, so its scale is 1; the scales are 1 and the bias whole, so
    every output is an integer below 2**24, exact in float32: any difference is an error."""
    generator = torch.Generator().manual_seed(0)
    for rows, channels in ((1, 60), (2, 43), (3, 43), (4, 60), (5, 60), (6, 43), (7, 60), (9, 43)):
        x = torch.randint(-127, 128, (rows, 110), generator=generator).to(torch.float32)
        x[:, 0] = 127
        weight = torch.randint(-127, 128, (channels, 110), dtype=torch.int8, generator=generator)
        bias = torch.randint(-1000, 1000, (channels,), generator=generator).to(torch.float32)
        y = torch.ops.gpt2_core.int8_rows_linear(x, torch.ops.gpt2_core.int8_rows_pack(weight),
                                                 torch.ones(channels, dtype=torch.bfloat16), bias)
        exact = x.double() @ weight.double().t() + bias.double()
        if not bool(torch.equal(y.double(), exact)):
            return f"{rows} rows by {channels} channels differ from exact sums by up to {(y.double() - exact).abs().max()}"
    return _check_attention(generator)


def _check_attention(generator: torch.Generator) -> str:
    """What is wrong with decode_attention here, or '': rows of different lengths (a tail past 8 positions, a lone
    position) in a cache with more rows, against float64. Its fp32 sums and exp are off by a few units in the last
    place: 1e-5 of the values' scale is a thousand times that, and a wrong position or row is far more."""
    for size in HEAD_SIZES:
        k, v = (torch.randn(4, 3, 40, size, generator=generator).half() for _ in range(2))
        q = torch.randn(3, 3, 1, size, generator=generator)
        positions = torch.tensor([0, 21, 39])
        y = torch.ops.gpt2_core.decode_attention(q, k, v, positions, size**-0.5)
        error = (y.double() - reference_attention(q, k, v, positions, size**-0.5)).abs().max().item()
        if not error <= 1e-5:
            return f"decode attention with heads of {size} differs from float64 by {error}"
    return ""

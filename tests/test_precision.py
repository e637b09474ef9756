"""Which precision a model gets when the loader is not told (gpt2_core/precision.py), and that asking for exact fp32
gives the engine proven equal to transformers."""

import subprocess
import sys

import pytest
import torch

from gpt2_core import PRESETS, load_model
from gpt2_core.checkpoint import BUNDLED, read_config
from gpt2_core.precision import (
    HEADROOM_BYTES,
    MIN_COMPILE_PARAMETERS,
    available_memory_bytes,
    choose_precision,
    compile_growth_bytes,
)

CPU = torch.device("cpu")
GPT2 = PRESETS["gpt2"]
PLENTY = 64 << 30


def test_a_cpu_gets_int8_compiled_in_the_background_when_the_memory_is_free():
    plan = choose_precision(GPT2, CPU, available_bytes=PLENTY)
    assert (plan.dtype, plan.quantize, plan.compile) == (torch.float32, "int8", "background")


def test_a_cpu_with_little_free_memory_gets_int8_uncompiled_and_says_why():
    """A student's 8 GB laptop with a browser open: it must start, eager."""
    need = compile_growth_bytes(GPT2) + HEADROOM_BYTES
    assert 1 << 30 < need < 4 << 30  # the estimate: int8 gpt2 grew 1.1 GB compiling (README, Performance)
    plan = choose_precision(GPT2, CPU, available_bytes=need - 1)
    assert (plan.quantize, plan.compile) == ("int8", "no")
    assert "memory free" in plan.why
    assert choose_precision(GPT2, CPU, available_bytes=need).compile == "background"


def test_a_small_model_is_not_compiled_since_it_is_fast_eagerly():
    mini = read_config(BUNDLED["mini-gpt2"])
    assert mini.num_parameters() < MIN_COMPILE_PARAMETERS <= PRESETS["distilgpt2"].num_parameters()
    plan = choose_precision(mini, CPU, available_bytes=PLENTY)
    assert (plan.quantize, plan.compile) == ("int8", "no")
    assert choose_precision(PRESETS["distilgpt2"], CPU, available_bytes=PLENTY).compile == "background"


@pytest.mark.parametrize("asked", [dict(dtype="fp32"), dict(quantize=None), dict(dtype="float32", quantize=None)])
def test_asking_for_fp32_gives_exact_fp32_uncompiled(asked):
    plan = choose_precision(GPT2, CPU, available_bytes=PLENTY, **asked)
    assert (plan.dtype, plan.quantize, plan.compile) == (torch.float32, None, "no")


def test_asked_compiles_are_honoured_and_bad_ones_named():
    assert choose_precision(GPT2, CPU, compile=True, available_bytes=0).compile == "now"
    assert choose_precision(GPT2, CPU, compile="background", available_bytes=0).compile == "background"
    assert choose_precision(GPT2, CPU, compile=False, available_bytes=PLENTY).compile == "no"
    assert choose_precision(GPT2, CPU, quantize="nf4", compile=True).compile == "no"  # bitsandbytes does not trace
    with pytest.raises(ValueError, match="`compile` has to be"):
        choose_precision(GPT2, CPU, compile="fast")
    with pytest.raises(ValueError, match="`quantize` has to be"):
        choose_precision(GPT2, CPU, quantize="int4")


def test_int8_on_a_cpu_refuses_a_dtype_it_would_not_serve():
    """`info --quantize int8 --dtype bf16` said int8 and served the rest in fp32, the dtype dropped without a word."""
    assert choose_precision(GPT2, CPU, quantize="int8", dtype="fp32", available_bytes=PLENTY).dtype == torch.float32
    for dtype in ("bf16", "fp16"):
        with pytest.raises(ValueError, match=r"`dtype` has to be fp32 or left out with int8 on a CPU \(its int8 "
                                             r"layers keep the rest in fp32\), but is (bfloat16|float16)"):
            choose_precision(GPT2, CPU, quantize="int8", dtype=dtype, available_bytes=PLENTY)
    assert choose_precision(GPT2, torch.device("cuda"), quantize="int8", dtype="fp16").dtype == torch.float16


def test_a_gpu_keeps_fp16_and_eager_steps():
    plan = choose_precision(GPT2, torch.device("cuda"), available_bytes=PLENTY)
    assert (plan.dtype, plan.quantize, plan.compile) == (torch.float16, None, "no")


def test_available_memory_is_measured():
    free = available_memory_bytes()
    import os

    assert 0 < free <= os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def test_load_model_without_precision_flags_serves_int8_and_exact_serves_the_proven_engine(tiny_checkpoint, hf_model):
    """The default is int8 (tiny: uncompiled); dtype="fp32" is the plain fp32 GPT, bit-equal to loading with
    quantize=None, and equal to transformers (tests/test_model_fidelity.py proves that engine)."""
    fast, exact, plain = (load_model(tiny_checkpoint, device="cpu", **asked)
                          for asked in (dict(), dict(dtype="fp32"), dict(quantize=None)))
    try:
        assert (fast.precision, fast.engine.decoding, fast.describe().decoding) == ("int8", "eager", "eager")
        assert (exact.precision, exact.quantize, exact.engine.decoding) == ("float32", None, "eager")
        ids = torch.tensor([[464, 2068, 7586, 21831, 18045, 625, 262]])
        with torch.inference_mode():
            a, b = exact.model(ids), plain.model(ids)
            reference = hf_model(ids).logits
        assert torch.equal(a, b)
        torch.testing.assert_close(a, reference, rtol=1e-4, atol=1e-4)
    finally:
        for lm in (fast, exact, plain):
            lm.close()


@pytest.mark.slow
def test_the_cli_says_which_precision_serves(tiny_checkpoint):
    def info(*flags: str) -> str:
        done = subprocess.run([sys.executable, "-m", "gpt2_core", "info", "--model", str(tiny_checkpoint),
                               "--device", "cpu", *flags], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert "precision   int8" in info()
    assert "precision   float32" in info("--exact")
    bad = subprocess.run([sys.executable, "-m", "gpt2_core", "info", "--exact", "--quantize", "int8"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--exact" in bad.stderr
    bad = subprocess.run([sys.executable, "-m", "gpt2_core", "info", "--model", str(tiny_checkpoint), "--device", "cpu",
                          "--quantize", "int8", "--dtype", "bf16"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "`dtype` has to be fp32 or left out with int8 on a CPU" in bad.stderr, bad.stderr

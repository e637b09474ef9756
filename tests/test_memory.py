"""The README's and the model picker's memory estimates against what a loaded model really holds."""

import pytest

from gpt2_core import load_model
from gpt2_core.config import GPTConfig
from gpt2_core.memory import PRECISIONS, estimate_weight_bytes


@pytest.mark.parametrize("precision,dtype,quantize", [("fp32", "fp32", None), ("fp16", "fp16", None),
                                                       ("int8-cpu", "fp32", "int8"), ("nf4", "fp16", "nf4")])
def test_estimate_matches_the_loaded_model(tiny_checkpoint, precision, dtype, quantize):
    lm = load_model(tiny_checkpoint, device="cpu", dtype=dtype, quantize=quantize)
    measured = lm.memory_bytes()
    lm.close()
    assert estimate_weight_bytes(lm.config, precision) == pytest.approx(measured, rel=0.02)


def test_quantization_saves_what_the_table_says_for_gpt2_xl():
    xl = GPTConfig(n_layer=48, n_head=25, n_embd=1600)
    fp16, int8, nf4 = (estimate_weight_bytes(xl, p) / 2**20 for p in ("fp16", "int8", "nf4"))
    # measured on an H200 (benchmarks/results/memory-gpt2-xl-cuda.json): 2971 / 1565 / 884 MiB
    assert fp16 == pytest.approx(2971, rel=0.01)
    assert int8 == pytest.approx(1565, rel=0.01)
    assert nf4 == pytest.approx(884, rel=0.01)


def test_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="`precision` has to be one of"):
        estimate_weight_bytes(GPTConfig(), "int4")


@pytest.mark.parametrize("shape", [GPTConfig(), GPTConfig(n_layer=48, n_head=25, n_embd=1600)], ids=["gpt2", "gpt2-xl"])
def test_each_precision_is_estimated_and_smaller_precisions_take_less(shape):
    size = {p: estimate_weight_bytes(shape, p) for p in PRECISIONS}
    assert size["fp32"] == 4 * shape.num_parameters() == 2 * size["fp16"]
    assert size["fp16"] > size["int8"] > size["nf4"] > 0, size  # on a GPU the embeddings stay 16-bit
    assert size["fp16"] > size["int8-cpu"] > size["nf4"], size  # on a CPU they are int8 too

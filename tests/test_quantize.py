"""bitsandbytes int8 (LLM.int8) and nf4 on the CPU: they load, generate, save memory and mostly agree with fp32."""

import pytest
import torch
from conftest import random_hf_model, save_layout

from gpt2_core import load_model


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """GPT-2's own init scale (0.02): the weight statistics quantization was designed for (the shared tiny model's
    deliberately large init amplifies 4-bit rounding through the residual stream far beyond what real GPT-2 sees)."""
    return save_layout(random_hf_model(seed=1, initializer_range=0.02), tmp_path_factory.mktemp("q"), "hub")


@pytest.fixture(scope="module")
def fp32(checkpoint):
    lm = load_model(checkpoint, device="cpu")
    yield lm
    lm.close()


@pytest.fixture(scope="module", params=["int8", "nf4"])
def quantized(request, checkpoint):
    lm = load_model(checkpoint, device="cpu", quantize=request.param)
    yield lm
    lm.close()


def test_quantized_blocks_use_bitsandbytes_layers_and_embeddings_stay_full(quantized):
    import bitsandbytes as bnb

    layer = bnb.nn.Linear8bitLt if quantized.quantize == "int8" else bnb.nn.Linear4bit
    assert isinstance(quantized.model.h[0].attn.c_attn, layer)
    assert isinstance(quantized.model.h[1].mlp.c_proj, layer)
    assert quantized.model.wte.weight.dtype == torch.float32
    assert quantized.model.lm_head.weight is quantized.model.wte.weight
    assert quantized.precision == quantized.quantize


def test_quantized_model_is_smaller_than_fp32(quantized, fp32):
    fp32_linear = sum(m.weight.numel() * 4 for m in fp32.model.h.modules() if isinstance(m, torch.nn.Linear))
    saved = fp32.memory_bytes() - quantized.memory_bytes()
    # int8 saves 3 of 4 bytes per block weight, nf4 about 7 of 8 (minus scales)
    assert saved >= fp32_linear * (0.7 if quantized.quantize == "int8" else 0.8)


def test_quantized_model_generates(quantized):
    (s,) = quantized.generate("In a shocking finding,", max_new_tokens=8, seed=3)
    assert len(s.token_ids) == 8 and s.text == quantized.decode(s.token_ids)


def test_quantized_top1_mostly_agrees_with_fp32(quantized, fp32):
    ids = torch.tensor([fp32.tokenizer.encode("The quick brown fox jumps over the lazy dog. " * 4)])
    with torch.no_grad():
        agree = (quantized.model(ids).argmax(-1) == fp32.model(ids).argmax(-1)).float().mean().item()
    assert agree >= (0.95 if quantized.quantize == "int8" else 0.75), agree


def test_unknown_quantization_is_refused(tiny_checkpoint):
    with pytest.raises(ValueError, match="`quantize` has to be None, 'int8' or 'nf4'"):
        load_model(tiny_checkpoint, device="cpu", quantize="int4")


def test_missing_bitsandbytes_gives_a_clear_error(tiny_checkpoint, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_bnb(name, *args, **kwargs):
        if name == "bitsandbytes":
            raise ImportError("No module named 'bitsandbytes'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_bnb)
    with pytest.raises(RuntimeError, match="pip install bitsandbytes"):
        load_model(tiny_checkpoint, device="cpu", quantize="int8")

"""Quantized models on the CPU: int8 with PyTorch's int8 kernels (the fast CPU path) and nf4 with bitsandbytes. They
load, generate, save memory and agree with fp32; int8 is measured on the trained bundled model, on a held-out play."""

from pathlib import Path

import pytest
import torch
from conftest import random_hf_model, save_layout

from gpt2_core import int8_kernel, load_model
from gpt2_core.checkpoint import BUNDLED
from gpt2_core.model import KVCache

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """GPT-2's own init scale (0.02): the weight statistics quantization was designed for (the shared tiny model's
    deliberately large init amplifies 4-bit rounding through the residual stream far beyond what real GPT-2 sees)."""
    return save_layout(random_hf_model(seed=1, initializer_range=0.02), tmp_path_factory.mktemp("q"), "hub")


@pytest.fixture(scope="module")
def fp32(checkpoint):
    lm = load_model(checkpoint, device="cpu", dtype="fp32")
    yield lm
    lm.close()


@pytest.fixture(scope="module", params=["int8", "nf4"])
def quantized(request, checkpoint):
    lm = load_model(checkpoint, device="cpu", quantize=request.param)
    yield lm
    lm.close()


def test_cpu_int8_uses_int8_weights_per_channel_and_nf4_bitsandbytes(quantized):
    import bitsandbytes as bnb

    from gpt2_core.quantize import Int8Linear, Int8RowsLinear

    assert quantized.precision == quantized.quantize
    if quantized.quantize == "int8":  # blocks and the tied LM head and embedding, one scale per output channel
        # the int8-by-int8 kernel where it builds and checks out here, else PyTorch's (int8_kernel.py)
        kind = Int8RowsLinear if int8_kernel.usable() else Int8Linear
        for layer in (quantized.model.h[0].attn.c_attn, quantized.model.h[1].mlp.c_proj, quantized.model.lm_head):
            assert type(layer) is kind and layer.weight.dtype == torch.int8
            assert layer.scales.shape == (layer.out_features,)
        head, ids = quantized.model.lm_head, torch.tensor([[0, 7, 50256]])
        expected = head.weight[ids].float() * head.scales.float()[ids].unsqueeze(-1)
        assert torch.equal(quantized.model.wte(ids), expected)  # the embedding reads the head's int8 rows
    else:
        assert quantized.model.wte.weight.dtype == torch.float32
        assert isinstance(quantized.model.h[0].attn.c_attn, bnb.nn.Linear4bit)
        assert quantized.model.lm_head.weight is quantized.model.wte.weight


def test_quantized_model_is_smaller_than_fp32(quantized, fp32):
    fp32_linear = sum(m.weight.numel() * 4 for m in fp32.model.h.modules() if isinstance(m, torch.nn.Linear))
    saved = fp32.memory_bytes() - quantized.memory_bytes()
    # int8 saves 3 of 4 bytes per block weight, nf4 about 7 of 8 (minus scales)
    assert saved >= fp32_linear * (0.7 if quantized.quantize == "int8" else 0.8)


def test_quantized_model_generates(quantized):
    (s,) = quantized.generate("In a shocking finding,", max_new_tokens=8, seed=3)
    assert len(s.token_ids) == 8 and s.text == quantized.decode(s.token_ids)


def test_cpu_int8_greedy_batched_equals_greedy_alone(checkpoint):
    lm = load_model(checkpoint, device="cpu", quantize="int8")
    try:
        prompts = ["In a shocking finding,", "The capital of France", "Once upon a time there was"]
        alone = [lm.generate(p, max_new_tokens=12, temperature=0)[0].token_ids for p in prompts]
        together = [None] * len(prompts)

        def run(i):
            together[i] = lm.generate(prompts[i], max_new_tokens=12, temperature=0)[0].token_ids

        import threading
        threads = [threading.Thread(target=run, args=(i,)) for i in range(len(prompts))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert together == alone
    finally:
        lm.close()


@pytest.mark.heavy
def test_compiled_cpu_int8_decoding_agrees_with_fp32_on_a_trained_model():
    """`--quantize int8 --compile`, the fastest CPU path: Inductor's tuned int8 kernel sums in another order (and
    rounds less) than `_weight_int8pack_mm`, so its tokens can differ from eager int8's at near-ties. What counts is
    agreement with fp32: token by token through the compiled decode step, as generation runs it, on held-out Macbeth."""
    fp32 = load_model(BUNDLED["mini-gpt2"], device="cpu", dtype="fp32")
    fast = load_model(BUNDLED["mini-gpt2"], device="cpu", quantize="int8", compile=True)
    try:
        assert fast.engine.decoding == "compiled", "compilation failed on this machine (see the log)"
        text = (ROOT / "assets" / "texts" / "macbeth.txt").read_text(encoding="utf-8")[:40_000]
        ids = fp32.tokenizer.encode(text)
        T = fp32.config.block_size
        agree = kl = 0.0
        windows = [ids[i : i + T] for i in range(0, len(ids) - T, T)][:8]
        for window in windows:
            cache = fast.model.new_cache(1, T, device=torch.device("cpu"), dtype=torch.float32)  # (fp16 where served)
            with torch.inference_mode():
                a = fp32.model(torch.tensor([window]))[0].log_softmax(-1)
                b = torch.stack([fast.engine.decode(torch.tensor([[t]]), cache, [p])[0]
                                 for p, t in enumerate(window)]).float().log_softmax(-1)
            agree += (a.argmax(-1) == b.argmax(-1)).float().mean().item() / len(windows)
            kl += (a.exp() * (a - b)).sum(-1).mean().item() / len(windows)
        print(f"compiled int8 vs fp32 on Macbeth: top-1 agreement {agree:.3f}, mean KL(fp32 || int8) {kl:.4f} nats")
        assert agree >= 0.95, agree
    finally:
        fp32.close()
        fast.close()


def test_the_default_cpu_path_agrees_with_fp32_on_a_trained_model_and_a_held_out_play():
    """A CPU's default (no precision asked for: int8) against the exact fp32 engine, on the bundled model, trained here,
    and Macbeth (never trained on): next-token top-1 equal at >= 95% of positions."""
    fp32 = load_model(BUNDLED["mini-gpt2"], device="cpu", dtype="fp32")
    int8 = load_model(BUNDLED["mini-gpt2"], device="cpu")
    try:
        assert (int8.precision, fp32.precision) == ("int8", "float32")
        text = (ROOT / "assets" / "texts" / "macbeth.txt").read_text(encoding="utf-8")[:40_000]
        ids = fp32.tokenizer.encode(text)
        T = fp32.config.block_size
        windows = torch.tensor([ids[i : i + T] for i in range(0, len(ids) - T, T)][:32])
        with torch.no_grad():
            a, b = fp32.model(windows).log_softmax(-1), int8.model(windows).log_softmax(-1)
        agree = (a.argmax(-1) == b.argmax(-1)).float().mean().item()
        kl = (a.exp() * (a - b)).sum(-1).mean().item()
        print(f"int8 vs fp32 on Macbeth: top-1 agreement {agree:.3f}, mean KL(fp32 || int8) {kl:.4f} nats")
        assert agree >= 0.95, agree
        assert int8.memory_bytes() < 0.3 * fp32.memory_bytes(), "int8 weights: about a quarter of fp32's bytes"
        # and as generation runs it: token by token through the decode step and the model's own cache (fp16 where
        # the project's attention serves)
        agree = 0.0
        with torch.inference_mode():
            for w in range(8):
                cache = int8.model.new_cache(1, T, device=torch.device("cpu"), dtype=torch.float32)
                assert cache.k[0].dtype == (torch.float16 if int8_kernel.usable() else torch.float32)
                steps = torch.stack([int8.model.decode(windows[w : w + 1, p : p + 1], cache, [p])[0]
                                     for p in range(T)])
                agree += (a[w].argmax(-1) == steps.argmax(-1)).float().mean().item() / 8
        print(f"int8 vs fp32 on Macbeth, decoded step by step: top-1 agreement {agree:.3f}")
        assert agree >= 0.95, agree
    finally:
        fp32.close()
        int8.close()


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
        load_model(tiny_checkpoint, device="cpu", quantize="nf4")


@pytest.mark.heavy
def test_compiled_cpu_int8_batches_run_through_one_graph_with_each_rows_own_numbers():
    """CPU int8 compiles a second graph, for batches (an eager batch emulates its bf16 arithmetic on a CPU without
    AVX-512). Rows of different lengths decoded in one step get the logits each gets alone through the lone graph,
    within the rounding of another summation order; batches of 2, 3 and 5 rows in a bigger cache reuse the graph."""
    from torch._dynamo.utils import counters

    fast = load_model(BUNDLED["mini-gpt2"], device="cpu", quantize="int8", compile=True)
    try:
        decode = fast.engine.decode
        assert fast.engine.decoding == "compiled" and decode.batches_ready, "compilation failed (see the log)"
        graphs = counters["stats"]["unique_graphs"]
        ids = fast.tokenizer.encode((ROOT / "assets" / "texts" / "macbeth.txt").read_text(encoding="utf-8")[:4000])
        lengths = [37, 52, 29, 64, 45]

        def cache(rows: int) -> KVCache:
            return fast.model.new_cache(rows, fast.config.block_size, device=torch.device("cpu"), dtype=torch.float32)

        with torch.inference_mode():
            for rows in (2, 3, 5):
                together = cache(8)
                for r in range(rows):
                    fast.model.prefill(torch.tensor([ids[: lengths[r]]]), together, r)
                next_ids = torch.tensor([[ids[n]] for n in lengths[:rows]])
                batch = decode(next_ids, together, lengths[:rows])  # (rows, vocab)
                for r in range(rows):
                    alone = cache(1)
                    fast.model.prefill(torch.tensor([ids[: lengths[r]]]), alone, 0)
                    lone = decode(next_ids[r : r + 1], alone, [lengths[r]])[0]
                    torch.testing.assert_close(batch[r], lone, rtol=1e-4, atol=1e-3)
        assert counters["stats"]["unique_graphs"] == graphs, "a batch recompiled (a stall for everyone)"
    finally:
        fast.close()

"""CUDA-only checks: fp16 by default, fidelity in fp16, int8 / nf4 on the GPU.

Skipped where no CUDA GPU is present (CI has none); `benchmarks/gpu_checks.sh` runs them where a GPU is lent.
"""

import pytest
import torch

from gpt2_core import load_model

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU; run benchmarks/gpu_checks.sh on one"),
]


def test_auto_picks_cuda_in_fp16(tiny_checkpoint):
    lm = load_model(tiny_checkpoint)
    assert lm.device.type == "cuda" and lm.dtype == torch.float16
    lm.close()


@pytest.mark.parametrize("dtype", ["fp16", "bf16"])
def test_half_precision_logits_stay_close_to_transformers(tiny_checkpoint, hf_model, dtype):
    lm = load_model(tiny_checkpoint, device="cuda", dtype=dtype)
    ids = torch.tensor([lm.tokenizer.encode("In a shocking finding, scientist discovered a herd of unicorns")])
    with torch.no_grad():
        expected = hf_model(ids).logits[0]
        ours = lm.model(ids.cuda())[0].cpu()
    agree = (ours.argmax(-1) == expected.argmax(-1)).float().mean()
    assert agree >= 0.9
    lm.close()


def test_cuda_greedy_matches_cpu_greedy_in_fp32(tiny_checkpoint, lm):
    gpu = load_model(tiny_checkpoint, device="cuda", dtype="fp32")
    a = gpu.generate("Hello world", max_new_tokens=30, temperature=0)[0].token_ids
    b = lm.generate("Hello world", max_new_tokens=30, temperature=0)[0].token_ids
    assert a == b
    gpu.close()


def test_seeded_sampling_is_the_same_on_cuda_and_cpu(tiny_checkpoint, lm):
    """Draws happen on the CPU with per-sample generators, so a seed means the same on every device (fp32)."""
    gpu = load_model(tiny_checkpoint, device="cuda", dtype="fp32")
    a = gpu.generate("Hello world", max_new_tokens=20, seed=9, top_k=40)[0].token_ids
    b = lm.generate("Hello world", max_new_tokens=20, seed=9, top_k=40)[0].token_ids
    assert a == b
    gpu.close()


@pytest.mark.parametrize("quantize", ["int8", "nf4"])
def test_quantized_on_cuda_generates_and_saves_memory(tiny_checkpoint, quantize):
    fp16 = load_model(tiny_checkpoint, device="cuda")
    q = load_model(tiny_checkpoint, device="cuda", quantize=quantize)
    assert q.memory_bytes() < fp16.memory_bytes()
    assert len(q.generate("Hello", max_new_tokens=8, seed=1)[0].token_ids) == 8
    q.close()
    fp16.close()


@pytest.mark.parametrize("num_samples", [1, 3, 8])
def test_cuda_graphs_give_eager_greedy_ids(tiny_checkpoint, num_samples):
    eager = load_model(tiny_checkpoint, device="cuda")
    graphed = load_model(tiny_checkpoint, device="cuda", cuda_graphs=True)
    try:
        for _ in range(2):  # the second run replays the graphs captured by the first
            expected = [s.token_ids for s in eager.generate("In a shocking finding,", max_new_tokens=24,
                                                             temperature=0, num_samples=num_samples)]
            got = [s.token_ids for s in graphed.generate("In a shocking finding,", max_new_tokens=24,
                                                          temperature=0, num_samples=num_samples)]
            assert got == expected
        step = graphed.engine.decode
        assert step.replays > 0 and not step._failed and step._graphs, "the steps replayed captured graphs"
    finally:
        eager.close()
        graphed.close()


def test_cuda_graphs_follow_a_batch_that_grows_and_shrinks(tiny_checkpoint):
    import threading

    prompts = ["In a shocking finding,", "The capital of France is", "Once upon a time", "def main():",
               "My favourite food", "It was a dark and stormy night", "Q: What is two plus two?", "Dear Sir,"]
    lengths = [4, 30, 9, 22, 14, 3, 27, 18]
    eager = load_model(tiny_checkpoint, device="cuda")
    graphed = load_model(tiny_checkpoint, device="cuda", cuda_graphs=True)
    try:
        expected = [eager.generate(p, max_new_tokens=n, temperature=0)[0].token_ids for p, n in zip(prompts, lengths)]
        got = [None] * len(prompts)

        def call(i):
            got[i] = graphed.generate(prompts[i], max_new_tokens=lengths[i], temperature=0)[0].token_ids

        threads = [threading.Thread(target=call, args=(i,)) for i in range(len(prompts))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert got == expected and len(graphed.engine.decode._graphs) >= 2
    finally:
        eager.close()
        graphed.close()

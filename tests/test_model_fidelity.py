"""Our GPT-2 against transformers' GPT2LMHeadModel on the same random weights: same logits, same greedy tokens."""

import pytest
import torch
from conftest import random_hf_model, save_layout
from numerics import assert_same_greedy_path

from gpt2_core import load_model

LAYOUTS = ["hub", "save_pretrained", "sharded"]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_logits_match_transformers_in_every_checkpoint_layout(tmp_path, hf_model, layout):
    lm = load_model(save_layout(hf_model, tmp_path / layout, layout), device="cpu", dtype="fp32")
    ids = torch.randint(0, 50257, (2, 64), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = hf_model(ids).logits
    torch.testing.assert_close(lm.model(ids), expected, atol=1e-4, rtol=1e-4)
    lm.close()


@pytest.mark.parametrize("layout", LAYOUTS)
def test_greedy_ids_match_transformers_generate(tmp_path, hf_model, layout):
    lm = load_model(save_layout(hf_model, tmp_path / layout, layout), device="cpu", dtype="fp32")
    prompt = "In a shocking finding, scientist discovered a herd of unicorns"
    ids = lm.tokenizer.encode(prompt)
    expected = hf_model.generate(torch.tensor([ids]), max_new_tokens=40, do_sample=False, pad_token_id=50256)
    expected = expected[0, len(ids):].tolist()
    ours = lm.generate(prompt, max_new_tokens=40, temperature=0)[0]
    assert len(set(expected)) > 5, "the reference path is degenerate; the comparison would prove little"
    compared = assert_same_greedy_path(ours.token_ids, expected, reference_next_logits(hf_model, ids))
    assert compared >= 10, "the paths parted at a near-tie too early to prove much; pick another prompt"
    assert len(ours.token_ids) == 40 or ours.finish_reason == "eos"
    lm.close()


def reference_next_logits(hf_model, prompt_ids: list[int]):
    """transformers' next-token logits after the prompt and a greedy prefix (where two greedy paths part)."""
    def logits_after(prefix: list[int]) -> torch.Tensor:
        with torch.no_grad():
            return hf_model(torch.tensor([prompt_ids + prefix])).logits[0, -1]
    return logits_after


def test_kv_cache_decoding_equals_full_recompute(lm):
    """Each cached decode step gives the logits a full forward pass over the whole sequence gives."""
    from gpt2_core.model import KVCache

    ids = lm.tokenizer.encode("The quick brown fox jumps over the lazy dog")
    cache = KVCache(lm.config, 1, 1024, device=lm.device, dtype=lm.dtype)
    with torch.no_grad():
        step_logits = [lm.model.prefill(torch.tensor([ids[:3]]), cache, 0)[0]]
        for i in range(3, len(ids)):
            step_logits.append(lm.model.decode(torch.tensor([[ids[i]]]), cache, [i])[0])
        full = lm.model(torch.tensor([ids]))[0, 2:]
    torch.testing.assert_close(torch.stack(step_logits), full, atol=1e-4, rtol=1e-4)


def test_ragged_batch_decode_equals_each_row_alone(lm):
    """Rows of different lengths in one decode step each get the logits they would get alone (continuous batching)."""
    from gpt2_core.model import KVCache

    prompts = [lm.tokenizer.encode(t) for t in ["Hello world", "A much longer prompt than the other one is here"]]
    cache = KVCache(lm.config, 2, 1024, device=lm.device, dtype=lm.dtype)
    with torch.no_grad():
        for row, ids in enumerate(prompts):
            lm.model.prefill(torch.tensor([ids[:-1]]), cache, row)
        batched = lm.model.decode(torch.tensor([[p[-1]] for p in prompts]), cache, [len(p) - 1 for p in prompts])
        alone = torch.stack([lm.model(torch.tensor([p]))[0, -1] for p in prompts])
    torch.testing.assert_close(batched, alone, atol=1e-4, rtol=1e-4)


def test_real_gpt2_shape_matches_transformers(tmp_path):
    """The full 124M gpt2 shape (12 layers, 12 heads, 768 wide) with random weights, Hub layout."""
    hf = random_hf_model(seed=3, n_layer=12, n_head=12, n_embd=768, initializer_range=0.02)
    lm = load_model(save_layout(hf, tmp_path / "gpt2", "hub"), device="cpu", dtype="fp32")
    assert lm.num_parameters() == sum(p.numel() for p in hf.parameters()) == 124_439_808
    ids = torch.tensor([lm.tokenizer.encode("Hello world, this is GPT-2 speaking.")])
    with torch.no_grad():
        torch.testing.assert_close(lm.model(ids), hf(ids).logits, atol=1e-4, rtol=1e-4)
    expected = hf.generate(ids, max_new_tokens=32, do_sample=False, pad_token_id=50256)[0, ids.size(1):].tolist()
    ours = lm.generate("Hello world, this is GPT-2 speaking.", max_new_tokens=32, temperature=0)[0].token_ids
    assert assert_same_greedy_path(ours, expected, reference_next_logits(hf, ids[0].tolist())) >= 10
    lm.close()

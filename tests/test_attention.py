"""Attention maps (gpt2_core/explain/attention.py, FillMask.attention): equal to transformers' own
`output_attentions=True`, rows summing to 1, GPT-2's upper triangle empty, BERT's square full, and decoding untouched."""

from __future__ import annotations

import pytest
import torch

from gpt2_core import load_model
from gpt2_core.bert.fill_mask import load_fill_mask
from gpt2_core.explain.attention import MAX_ATTENTION_TOKENS, check_layer_head, strongest_links
from gpt2_core.testing import random_hf_model, save_layout

pytest_plugins = ["fixtures_ui"]

TEXT = "The animal didn't cross the street because it was too tired. Ünïcödé 🦄 too."


def sharp_hf_model(seed: int, **sizes):
    """A random GPT-2 whose attention is far from uniform (the usual 0.02 init gives near-flat maps that hide errors)."""
    hf = random_hf_model(seed, n_layer=3, n_head=4, n_embd=64, vocab_size=50257, n_positions=128, **sizes)
    with torch.no_grad():
        for block in hf.transformer.h:
            block.attn.c_attn.weight.mul_(12)
    hf.set_attn_implementation("eager")  # the fused kernel returns no weights
    return hf


@pytest.mark.parametrize("sizes", [{}, {"scale_attn_by_inverse_layer_idx": True}])
def test_gpt2_attention_equals_transformers_and_is_a_lower_triangle(tmp_path, sizes):
    hf = sharp_hf_model(3, **sizes)
    lm = load_model(save_layout(hf, tmp_path, "hub"), device="cpu", dtype="fp32")
    try:
        tokens, weights = lm.attention(TEXT)
        ids = lm.tokenizer.encode(TEXT)
        with torch.no_grad():
            expected = torch.stack([a[0] for a in hf(torch.tensor([ids]), output_attentions=True).attentions])
        assert weights.shape == (3, 4, len(ids), len(ids)) == expected.shape
        torch.testing.assert_close(weights, expected, atol=1e-4, rtol=0)
        torch.testing.assert_close(weights.sum(-1), torch.ones(3, 4, len(ids)))
        assert torch.all(weights.triu(1) == 0), "GPT-2 never looks to the right"
        assert weights.max() > 0.5, "the sharpened heads focus (the test would not see a wrong scale otherwise)"
        assert "".join(tokens) == TEXT
    finally:
        lm.close()


def test_bert_attention_equals_bertmodel_and_is_a_full_square(tiny_bert):
    from transformers import BertModel

    fill_mask = load_fill_mask(tiny_bert, device="cpu")
    tokens, weights = fill_mask.attention("the dog barked at the mailman")
    bert = BertModel.from_pretrained(str(tiny_bert), use_safetensors=True, attn_implementation="eager",
                                     add_pooling_layer=False).eval()
    encoded = fill_mask.tokenizer("the dog barked at the mailman", return_tensors="pt")
    with torch.no_grad():
        expected = torch.stack([a[0] for a in bert(**encoded, output_attentions=True).attentions])
    torch.testing.assert_close(weights, expected, atol=1e-4, rtol=0)
    torch.testing.assert_close(weights.sum(-1), torch.ones(weights.shape[:3]))
    assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]"
    assert torch.all(weights.triu(1).sum((-1, -2)) > 0), "every BERT head looks to the right too"


def test_attention_leaves_decoding_untouched(lm):
    before = lm.generate("Hello world", max_new_tokens=12, temperature=0)[0].token_ids
    lm.attention("Hello world, and more words here")
    assert lm.generate("Hello world", max_new_tokens=12, temperature=0)[0].token_ids == before


def test_long_and_empty_text_get_a_clear_limit(lm):
    with pytest.raises(ValueError, match=rf"`text` has to be 1 to {MAX_ATTENTION_TOKENS} tokens long to show its "
                                         r"attention, but has \d+"):
        lm.attention("word " * (MAX_ATTENTION_TOKENS + 5))
    with pytest.raises(ValueError, match="`text` has to be 1 to"):
        lm.attention("")


def test_layer_and_head_are_checked_and_links_come_strongest_first():
    weights = torch.tensor([[[[1.0, 0, 0], [0.2, 0.8, 0], [0.5, 0.1, 0.4]]]])  # 1 layer, 1 head, 3 tokens
    with pytest.raises(ValueError, match=r"`head` has to be an integer from 1 to 1 for gpt2, but is 2"):
        check_layer_head(1, 2, weights, model="gpt2")
    with pytest.raises(ValueError, match=r"`layer` has to be an integer from 1 to 1"):
        check_layer_head(0, 1, weights, model="gpt2")
    assert strongest_links(weights[0, 0], 2, k=2) == [(0, 0.5), (2, pytest.approx(0.4))]
    assert strongest_links(weights[0, 0], 0, k=3) == [(0, 1.0)], "a first token can only look at itself"

"""Why GPT-2 chose each word (gpt2_core/explain): scores, ranks, alternatives and the next-token distribution, each
checked against transformers' GPT2LMHeadModel on the same weights and against a reference written here for the settings.
"""

from __future__ import annotations

import pytest
import torch
from conftest import random_hf_model, save_layout
from numerics import PROB_ATOL, assert_rank, assert_top_ids

from gpt2_core import load_model
from gpt2_core.explain.scoring import scoring_tokens, scoring_windows

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Crème brûlée, naïve façade: accents everywhere.",
    "Emoji 👋🏽 and flags 🇫🇷 split over several tokens 🤖!",
    "日本語のテキストと中文字符 mixed with English.",
    "  leading spaces\n\nand blank lines\ttabs ",
]


def hf_logits(hf_model, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return hf_model(torch.tensor([ids])).logits[0].float()  # (T, vocab)


def reference_sampling_probs(logits: torch.Tensor, prompt_ids: list[int], *, temperature: float, top_k: int,
                             top_p: float, repetition_penalty: float) -> torch.Tensor:
    """The distribution the settings leave, over the whole vocabulary, written out plainly (masking, no narrowing)."""
    logits = logits.clone()
    if repetition_penalty != 1.0:
        for i in set(prompt_ids):
            logits[i] = logits[i] / repetition_penalty if logits[i] > 0 else logits[i] * repetition_penalty
    if temperature == 0:
        out = torch.zeros_like(logits)
        out[int(logits.argmax())] = 1.0
        return out
    logits = logits / temperature
    if top_k:
        logits[logits < torch.topk(logits, top_k).values[-1]] = float("-inf")
    probs = logits.softmax(-1)
    if top_p < 1.0:
        order = probs.argsort(descending=True)
        kept, total = [], 0.0
        for i in order.tolist():
            if total >= top_p:
                break
            kept.append(i)
            total += float(probs[i])
        mask = torch.zeros_like(probs, dtype=torch.bool)
        mask[kept] = True
        probs = torch.where(mask, probs, 0.0)
        probs = probs / probs.sum()
    return probs


@pytest.mark.parametrize("text", TEXTS)
def test_score_text_equals_transformers(lm, hf_model, text):
    scores = lm.score_text(text, top=5)
    assert "".join(s.text for s in scores) == text
    assert all(text[s.start : s.end] == s.text for s in scores)
    ids = lm.tokenizer.encode(text)
    assert [s.token_id for s in scores] == ids
    logits = hf_logits(hf_model, [lm.config.eos_token_id, *ids])[:-1]  # position t predicts token t
    probs = logits.softmax(-1)
    for t, s in enumerate(scores):
        assert s.prob == pytest.approx(float(probs[t, ids[t]]), abs=PROB_ATOL)
        assert_rank(s.rank, logits[t], ids[t])  # up to near-ties: another CPU's kernels may order them otherwise
        assert_top_ids([a[1] for a in s.alternatives], logits[t])
        assert [a[2] for a in s.alternatives] == pytest.approx(torch.topk(probs[t], 5).values.tolist(), abs=PROB_ATOL)


def test_score_text_a_character_over_several_tokens_belongs_to_the_last(lm):
    scores = lm.score_text("🤖")
    assert len(scores) > 1  # GPT-2 spells this emoji in several byte tokens
    assert [s.text for s in scores[:-1]] == [""] * (len(scores) - 1) and scores[-1].text == "🤖"
    assert (scores[-1].start, scores[-1].end) == (0, 1)


@pytest.fixture(scope="module")
def short_context(tmp_path_factory):
    """A checkpoint with a 32-token context, so that a text longer than it is cheap to score."""
    hf = random_hf_model(seed=3, n_positions=32)
    lm = load_model(save_layout(hf, tmp_path_factory.mktemp("ctx32"), "hub"), device="cpu", dtype="fp32")
    yield lm, hf
    lm.close()


def test_score_text_longer_than_the_context_scores_in_windows(short_context):
    lm, hf = short_context
    text = " ".join(f"word{i} and more text" for i in range(40))
    ids = lm.tokenizer.encode(text)
    assert len(ids) > 3 * 32
    scores = lm.score_text(text, top=1)
    assert len(scores) == len(ids) and "".join(s.text for s in scores) == text
    # The windows the docstring promises: the first scores positions 1..31, then 16 new positions per window, each
    # window ending at the last position it scores and 32 long.
    seq = [lm.config.eos_token_id, *ids]
    first, expected, windows = 1, [], []
    while first <= len(ids):
        last = min(len(ids), 31 if first == 1 else first + 15)
        start = max(0, last + 1 - 32)
        logits = hf_logits(hf, seq[start : last + 1])
        expected += [float(logits[t - 1 - start].softmax(-1)[seq[t]]) for t in range(first, last + 1)]
        windows.append((start, first, last))
        first = last + 1
    assert [s.prob for s in scores] == pytest.approx(expected, abs=1e-4)
    # the same windows are what a ZeroGPU call's duration counts (gpt2_core/zerogpu.py)
    assert list(scoring_windows(len(ids), 32)) == windows
    assert scoring_tokens(len(ids), 32) == sum(last - start for start, _, last in windows) > 2 * len(ids) - 32


def test_score_text_refuses_bad_input_naming_the_parameter(lm):
    with pytest.raises(ValueError, match=r"`text` has to be at most 20000 characters long, but has 20001"):
        lm.score_text("a" * 20_001)
    with pytest.raises(ValueError, match=r"`top` has to be an integer in \[0, 20\], but is 21"):
        lm.score_text("hello", top=21)
    with pytest.raises(ValueError, match=r"`text` has to be a string"):
        lm.score_text(None)
    assert lm.score_text("") == []


SETTINGS = [
    dict(temperature=1.0, top_k=0, top_p=1.0, repetition_penalty=1.0),
    dict(temperature=0.7, top_k=10, top_p=1.0, repetition_penalty=1.0),
    dict(temperature=1.3, top_k=0, top_p=0.5, repetition_penalty=1.0),
    dict(temperature=0.8, top_k=40, top_p=0.9, repetition_penalty=1.3),
    dict(temperature=0.0, top_k=0, top_p=1.0, repetition_penalty=1.0),
]


@pytest.mark.parametrize("settings", SETTINGS, ids=str)
def test_next_token_distribution_equals_reference(lm, hf_model, settings):
    prompt = "The cat sat on the mat because the cat"
    candidates = lm.next_token_distribution(prompt, k=20, **settings)
    ids = lm.tokenizer.encode(prompt)
    logits = hf_logits(hf_model, ids)[-1]
    probs = logits.softmax(-1)
    assert_top_ids([c.token_id for c in candidates], logits)
    assert [c.prob for c in candidates] == pytest.approx([float(probs[c.token_id]) for c in candidates], abs=PROB_ATOL)
    after = reference_sampling_probs(logits, ids, **settings)
    assert [c.sampling_prob for c in candidates] == pytest.approx([float(after[c.token_id]) for c in candidates],
                                                                  abs=1e-4)
    assert [c.token_text for c in candidates] == [lm.decode([c.token_id]) for c in candidates]
    if settings["top_k"]:  # the settings cut some of the 20
        assert sum(c.sampling_prob == 0 for c in candidates) == 20 - settings["top_k"] or settings["top_k"] >= 20


def test_next_token_distribution_reuses_the_prompts_logits(lm):
    forwards = []
    forward = lm.model.forward
    lm.model.forward = lambda *a, **kw: forwards.append(1) or forward(*a, **kw)
    try:
        prompt = "A prompt seen once, then redrawn for each slider position"
        cold = lm.next_token_distribution(prompt, temperature=1.0, top_k=0)
        for t in (0.2, 0.5, 1.5, 2.0):
            warm = lm.next_token_distribution(prompt, temperature=t, top_k=5, top_p=0.8)
        assert len(forwards) == 1
        assert [c.prob for c in warm] == [c.prob for c in cold]
        assert [c.sampling_prob for c in warm] != [c.sampling_prob for c in cold]
    finally:
        del lm.model.forward


def test_next_token_distribution_refuses_bad_settings(lm):
    with pytest.raises(ValueError, match=r"`top_p` has to be a finite number in \(0, 1\], but is 0"):
        lm.next_token_distribution("Hi", top_p=0)
    with pytest.raises(ValueError, match=r"`k` has to be an integer in \[1, 100\], but is 0"):
        lm.next_token_distribution("Hi", k=0)


@pytest.mark.parametrize("settings", [SETTINGS[1], SETTINGS[2], SETTINGS[3]], ids=str)
def test_generated_ranks_and_alternatives_equal_transformers(lm, hf_model, settings):
    prompt = "Once upon a time"
    samples = lm.generate(prompt, max_new_tokens=12, num_samples=3, seed=5, alternatives=4, **settings)
    prompt_ids = lm.tokenizer.encode(prompt)
    for sample in samples:
        assert len(sample.token_ranks) == len(sample.token_ids) == len(sample.alternatives) == len(sample.token_texts)
        assert "".join(sample.token_texts) == sample.text
        seq = prompt_ids + sample.token_ids
        logits = hf_logits(hf_model, seq)
        for i, token in enumerate(sample.token_ids):
            row = logits[len(prompt_ids) + i - 1]
            assert_rank(sample.token_ranks[i], row, token)
            probs = row.softmax(-1)
            alternatives = sample.alternatives[i]
            assert_top_ids([c.token_id for c in alternatives], row)
            assert [c.prob for c in alternatives] == pytest.approx(torch.topk(probs, 4).values.tolist(), abs=PROB_ATOL)
            after = reference_sampling_probs(row, seq[: len(prompt_ids) + i], **settings)
            assert [c.sampling_prob for c in alternatives] == pytest.approx(
                [float(after[c.token_id]) for c in alternatives], abs=1e-4)
            assert sample.token_probs[i] == pytest.approx(float(probs[token]), abs=1e-4)


def test_ranks_are_reported_without_alternatives_and_greedy_is_rank_one(lm):
    (sample,) = lm.generate("Greedy always takes", max_new_tokens=8, temperature=0)
    assert sample.alternatives is None
    assert sample.token_ranks == [1] * len(sample.token_ids)


def test_token_texts_follow_a_stop_string(lm):
    (free,) = lm.generate("Stop here", max_new_tokens=10, temperature=0)
    stop = free.text[3:6]
    (stopped,) = lm.generate("Stop here", max_new_tokens=10, temperature=0, stop=[stop])
    assert stopped.finish_reason == "stop" and "".join(stopped.token_texts) == stopped.text
    assert len(stopped.token_texts) == len(stopped.token_ids) == len(stopped.token_ranks)


def test_alternatives_are_checked(lm):
    with pytest.raises(ValueError, match=r"`alternatives` has to be an integer in \[0, 20\], but is 21"):
        lm.generate("x", max_new_tokens=1, alternatives=21)

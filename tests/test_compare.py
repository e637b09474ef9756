"""BERT vs GPT-2 logic (gpt2_core/bert/compare.py) and the BERT loader (gpt2_core/bert/fill_mask.py).

Exact expectations on hand-made fakes for the arithmetic; the tiny random BERT and GPT-2 for the real wiring:
GPT-2's guesses depend on the left side only, BERT's on both sides.
"""

from __future__ import annotations

import math

import pytest

from gpt2_core import ModelUnavailableError, UnsafeCheckpointError
from gpt2_core.bert.compare import compare, fill, gpt2_next_words, rank_by_sentence, split_blank
from gpt2_core.bert.fill_mask import load_fill_mask

pytest_plugins = ["fixtures_ui"]

SENTENCE = "The ___ barked at the mailman all morning."


class FakeLM:
    """Scores sentences from a table and records the prompts it was asked about."""

    def __init__(self, logprobs: dict[str, float] | None = None, next_tokens=()):
        self.logprobs = logprobs or {}
        self.next_tokens = list(next_tokens)
        self.prompts: list[str] = []

    def sequence_logprob(self, text: str) -> float:
        return self.logprobs[text]

    def next_token_probs(self, prompt: str, k: int = 10):
        self.prompts.append(prompt)
        return self.next_tokens[:k]


class FakeBert:
    def __init__(self, words):
        self.words = words
        self.calls: list[tuple[str, str]] = []

    def fill_blank(self, left: str, right: str, k: int = 8):
        self.calls.append((left, right))
        return self.words[:k]


@pytest.mark.parametrize("sentence", [SENTENCE, "The [MASK] barked at the mailman all morning.",
                                      "The [mask] barked at the mailman all morning.",
                                      "The _____ barked at the mailman all morning."])
def test_split_blank_accepts_underscores_and_mask(sentence):
    assert split_blank(sentence) == ("The ", " barked at the mailman all morning.")


@pytest.mark.parametrize("sentence, count", [("The dog barked.", 0), ("The ___ barked at the ___.", 2),
                                             ("A [MASK] and a ___.", 2), ("Two __ underscores are not a blank", 0)])
def test_sentence_without_exactly_one_blank_is_refused_naming_sentence(sentence, count):
    with pytest.raises(ValueError, match=rf"`sentence` has to contain exactly one blank.*but has {count}"):
        split_blank(sentence)


def test_non_string_sentence_is_refused():
    with pytest.raises(ValueError, match="`sentence` has to be a string"):
        split_blank(None)


def test_fill_capitalises_only_at_a_sentence_start():
    assert fill("The ", "dog", " barked.") == "The dog barked."
    assert fill("", "dogs", " bark.") == "Dogs bark."
    assert fill("It rained. ", "dogs", " hid.") == "It rained. Dogs hid."


def test_ranking_is_a_softmax_of_whole_sentence_logprobs():
    lm = FakeLM({"The dog barked.": math.log(0.6), "The cat barked.": math.log(0.2),
                 "The man barked.": math.log(0.2)})
    ranked = rank_by_sentence(lm, "The ", " barked.", ["cat", "dog", "man"])
    assert [w for w, _ in ranked][0] == "dog"
    assert dict(ranked) == pytest.approx({"dog": 0.6, "cat": 0.2, "man": 0.2})


def test_ranking_survives_very_negative_logprobs():
    lm = FakeLM({"A b.": -2000.0, "A c.": -2000.0 - math.log(3)})
    assert dict(rank_by_sentence(lm, "A ", ".", ["b", "c"])) == pytest.approx({"b": 0.75, "c": 0.25})


def test_next_words_see_only_the_trimmed_left_side_and_merge_spellings():
    lm = FakeLM(next_tokens=[(" dog", 1, 0.3), ("\n", 2, 0.25), ("dog", 3, 0.1), (" cat", 4, 0.2), (",", 5, 0.15)])
    words = gpt2_next_words(lm, "The ", k=3)
    assert lm.prompts == ["The"]  # GPT-2's tokens carry their leading space, so the prompt must not end in one
    assert words == [("dog", pytest.approx(0.4)), ("\u21b5", 0.25), ("cat", 0.2)]


def test_compare_asks_bert_about_both_sides_and_ranks_berts_words():
    bert = FakeBert([("dog", 0.5), ("cat", 0.3)])
    lm = FakeLM({"The dog barked.": math.log(0.3), "The cat barked.": math.log(0.1)},
                next_tokens=[(" first", 7, 0.5)])
    result = compare("The ___ barked.", fill_mask=bert, lm=lm, k=2)
    assert bert.calls == [("The ", " barked.")]
    assert lm.prompts == ["The"]
    assert result.bert == [("dog", 0.5), ("cat", 0.3)]
    assert result.gpt2_next == [("first", 0.5)]
    assert dict(result.gpt2_ranking) == pytest.approx({"dog": 0.75, "cat": 0.25})


@pytest.fixture(scope="module")
def fill_mask(tiny_bert):
    return load_fill_mask(tiny_bert, device="cpu")


def test_bert_gives_whole_words_from_its_vocabulary(fill_mask):
    from ui_helpers import WORDS

    words = fill_mask.fill_blank("The ", " barked at the mailman.", k=8)
    assert len(words) == 8
    assert all(word in WORDS for word, _ in words)  # no [MASK]/[CLS], no ##pieces, no punctuation
    probs = [p for _, p in words]
    assert probs == sorted(probs, reverse=True) and all(0 < p < 1 for p in probs)


def test_real_models_gpt2_reads_left_only_and_bert_reads_both_sides(fill_mask, lm):
    barked = compare(SENTENCE, fill_mask=fill_mask, lm=lm, k=5)
    slept = compare("The ___ slept under the table.", fill_mask=fill_mask, lm=lm, k=5)
    assert barked.gpt2_next == slept.gpt2_next  # same left side, same guesses
    assert barked.bert != slept.bert  # the right side changes BERT's guesses
    assert [w for w, _ in sorted(barked.gpt2_ranking)] == sorted(w for w, _ in barked.bert)
    assert sum(p for _, p in barked.gpt2_ranking) == pytest.approx(1.0)
    assert all(p > 0 for _, p in barked.gpt2_next)


def test_bert_without_safetensors_is_refused(tmp_path, tiny_bert):
    (tmp_path / "config.json").write_bytes((tiny_bert / "config.json").read_bytes())
    (tmp_path / "vocab.txt").write_bytes((tiny_bert / "vocab.txt").read_bytes())
    (tmp_path / "pytorch_model.bin").write_bytes(b"not loaded: pickles can run code")
    with pytest.raises(UnsafeCheckpointError, match="safetensors"):
        load_fill_mask(tmp_path, device="cpu")


def test_bert_not_cached_and_hub_unreachable_names_the_fix(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelUnavailableError, match="python -m gpt2_core download gpt2-playground-tests/no-bert"):
        load_fill_mask("gpt2-playground-tests/no-bert", device="cpu")

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


# ---- a missing BERT, told without loading it (demo/unavailable.py) -------------------------------------------------
def bert_models(source: str, *, public: bool = False, load=None):
    from demo.models import AppModels, LazyFillMask, ModelHolder

    def not_loaded(_source):
        raise AssertionError("BERT was loaded to tell whether it is there")

    return AppModels(ModelHolder(lambda s: None, "gpt2"), LazyFillMask(load or not_loaded, source), [], public=public)


def test_a_missing_bert_folder_names_berts_fix_without_a_load(tmp_path):
    from demo.unavailable import bert_missing

    missing = bert_missing(bert_models(str(tmp_path / "no-bert")))
    assert f"`{tmp_path / 'no-bert'}` does not exist" in missing.problem
    assert "`python -m gpt2_core download bert-base-uncased`" in missing.fix and "GPT-2" not in missing.text


def test_bert_not_cached_offline_is_missing_and_a_public_page_gets_no_details(monkeypatch, tmp_path):
    import huggingface_hub.constants

    from demo.unavailable import bert_missing

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    missing = bert_missing(bert_models("gpt2-playground-tests/no-bert"))
    assert "`HF_HUB_OFFLINE` is set" in missing.problem
    assert "`python -m gpt2_core download gpt2-playground-tests/no-bert`" in missing.fix
    public = bert_missing(bert_models("gpt2-playground-tests/no-bert", public=True))
    assert public.text == "BERT could not be loaded on this server."
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    assert bert_missing(bert_models("gpt2-playground-tests/no-bert")) is None, "online, the first use downloads it"


def test_a_failed_load_is_remembered_until_one_succeeds(tiny_bert):
    from demo.unavailable import bert_missing

    attempts = []

    def flaky(source):
        attempts.append(source)
        if len(attempts) == 1:
            raise ModelUnavailableError("model 'x' is not in the cache; run `python -m gpt2_core download x`")
        return load_fill_mask(tiny_bert, device="cpu")

    models = bert_models("x", load=flaky)
    assert bert_missing(models) is None and attempts == []
    with pytest.raises(ModelUnavailableError):
        models.bert.get()
    assert "`python -m gpt2_core download x`" in bert_missing(models).text
    models.bert.get()
    assert bert_missing(models) is None and models.bert.error is None and len(attempts) == 2


def test_messages_draw_backticks_as_code_and_the_rest_as_written():
    from demo.unavailable import as_html, as_markdown

    assert as_markdown("a_b `c_d` <e>") == "a\\_b `c_d` \\<e\\>"
    assert as_html("a_b `c<d` <e> `f") == "a_b <code>c&lt;d</code> &lt;e&gt; `f"


def test_a_bert_load_that_found_no_hub_is_told_in_the_pages_words_with_berts_files(monkeypatch, tmp_path):
    """The Hub unreachable (a machine offline without HF_HUB_OFFLINE): the load's error, from gpt2_core, names BERT's
    files, not GPT-2's (it said "vocab.json, merges.txt"); the page tells it in its own sentences, without the Hub
    library's English reason in the middle of a Spanish one, and a sentence after the page's bold lead begins with a
    capital."""
    import huggingface_hub.constants

    from demo.i18n import speaking
    from demo.unavailable import bert_missing

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # as an unreachable Hub answers
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ModelUnavailableError) as failed:
        load_fill_mask("gpt2-playground-tests/no-bert", device="cpu")
    error = str(failed.value)
    assert error.endswith("or pass a local directory holding config.json, model.safetensors, vocab.txt."), error

    def failed_load(source):
        raise ModelUnavailableError(error)

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # not set: the load itself found no Hub
    models = bert_models("gpt2-playground-tests/no-bert", load=failed_load)
    with pytest.raises(ModelUnavailableError):
        models.bert.get()
    for lang, says in [("en", "and the Hugging Face Hub cannot be reached from here."),
                       ("es", "y el Hugging Face Hub no es accesible desde aquí.")]:
        with speaking(lang):
            missing = bert_missing(models)
        assert missing.problem == f"BERT (`gpt2-playground-tests/no-bert`) {missing.problem.split(') ', 1)[1]}"
        assert missing.problem.endswith(says) and "`python -m gpt2_core download gpt2-playground-tests/no-bert`" in \
            missing.fix, missing
        assert "outgoing traffic" not in missing.text and "snapshot" not in missing.text, "the Hub library's reason"
    recorded = bert_models("x", load=lambda source: (_ for _ in ()).throw(ModelUnavailableError("model 'x' broke")))
    with pytest.raises(ModelUnavailableError):
        recorded.bert.get()
    assert bert_missing(recorded).text == "model 'x' broke"
    from demo.compare_tab import make_show_bert

    note = make_show_bert(recorded, *"nbwsrgv")()["n"]  # the components as keys of its update
    assert note.value.endswith("side only.** Model 'x' broke"), "a sentence after the bold lead: a capital"

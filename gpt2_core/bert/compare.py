"""BERT vs GPT-2 on one sentence with a blank: who reads both sides, who reads left to right.

For "The ___ barked at the mailman all morning." the comparison gives, as plain (word, probability) lists:
- `bert`: BERT's best words for the blank; it reads the whole sentence, so "barked" on the right can decide.
- `gpt2_next`: GPT-2's most likely next words after the left side only ("The"); it cannot see the right side.
- `gpt2_ranking`: BERT's words ranked by GPT-2's probability of the whole filled-in sentence
  (`sequence_logprob`, a softmax over the candidates): GPT-2 can judge a finished sentence, just not peek ahead.

Both models are duck-typed (`FillMaskModel`, `ScoringModel`), so this module holds no tensors and tests can use fakes.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Protocol

from gpt2_core.generate.settings import check_unicode

BLANK = re.compile(r"_{3,}|\[MASK\]", re.IGNORECASE)  # `___` (three or more underscores) or [MASK]
MAX_SENTENCE_CHARS = 1000
SENTENCE_END = ".!?"
VISIBLE_WHITESPACE = {"\n": "\u21b5", "\t": "\u21e5", " ": "\u2423"}  # how a whitespace-only token is shown


class FillMaskModel(Protocol):
    def fill_blank(self, left: str, right: str, k: int = 8) -> list[tuple[str, float]]: ...


class ScoringModel(Protocol):
    def next_token_probs(self, prompt: str, k: int = 10) -> list[tuple[str, int, float]]: ...

    def sequence_logprob(self, text: str) -> float: ...


@dataclass(frozen=True)
class Comparison:
    left: str  # the sentence before the blank: all that GPT-2 sees when it guesses the next word
    right: str  # the sentence after the blank: BERT sees it too
    bert: list[tuple[str, float]]  # BERT's words for the blank, most likely first
    gpt2_next: list[tuple[str, float]]  # GPT-2's next words after `left`, most likely first
    gpt2_ranking: list[tuple[str, float]]  # BERT's words by GPT-2's whole-sentence probability (sums to 1)


def split_blank(sentence: str) -> tuple[str, str]:
    """The text left and right of the sentence's one blank; a ValueError naming `sentence` otherwise."""
    if not isinstance(sentence, str):
        raise ValueError(f"`sentence` has to be a string, but is {type(sentence).__name__}")
    if len(sentence) > MAX_SENTENCE_CHARS:
        raise ValueError(f"`sentence` has to be at most {MAX_SENTENCE_CHARS} characters, but has {len(sentence)}")
    check_unicode("sentence", sentence)
    blanks = BLANK.findall(sentence)
    if len(blanks) != 1:
        raise ValueError(
            f"`sentence` has to contain exactly one blank, written ___ or [MASK], but has {len(blanks)}: "
            f"{sentence[:80]!r}"
        )
    left, right = BLANK.split(sentence)
    return left, right


def fill(left: str, word: str, right: str) -> str:
    """The sentence with `word` in the blank, capitalised where a sentence starts (BERT's words are lower-case)."""
    stripped = left.rstrip()
    if not stripped or stripped[-1] in SENTENCE_END:
        word = word[:1].upper() + word[1:]
    return f"{left}{word}{right}"


def gpt2_next_words(lm: ScoringModel, left: str, k: int = 8) -> list[tuple[str, float]]:
    """GPT-2's k most likely next words after `left`: tokens shown without their leading space, equal ones summed."""
    words: dict[str, float] = {}
    for token, _token_id, prob in lm.next_token_probs(left.rstrip(), k=4 * k):
        word = token.strip() or "".join(VISIBLE_WHITESPACE.get(c, c) for c in token[:3])
        words[word] = words.get(word, 0.0) + prob
    return sorted(words.items(), key=lambda item: -item[1])[:k]


def rank_by_sentence(lm: ScoringModel, left: str, right: str, candidates: list[str]) -> list[tuple[str, float]]:
    """Each candidate's share of GPT-2's probability of the filled-in sentences (a softmax of their log-probs)."""
    if not candidates:
        return []
    logprobs = [lm.sequence_logprob(fill(left, word, right)) for word in candidates]
    top = max(logprobs)
    weights = [math.exp(lp - top) for lp in logprobs]
    total = sum(weights)
    ranked = [(word, w / total) for word, w in zip(candidates, weights, strict=True)]
    return sorted(ranked, key=lambda item: -item[1])


def compare(sentence: str, *, fill_mask: FillMaskModel, lm: ScoringModel, k: int = 8) -> Comparison:
    """BERT's words for the blank, GPT-2's next words after its left side, and GPT-2's ranking of BERT's words."""
    left, right = split_blank(sentence)
    bert = fill_mask.fill_blank(left, right, k=k)
    return Comparison(
        left=left,
        right=right,
        bert=bert,
        gpt2_next=gpt2_next_words(lm, left, k=k),
        gpt2_ranking=rank_by_sentence(lm, left, right, [word for word, _ in bert]),
    )

"""Turning a growing list of generated token ids into text that is safe to show while streaming.

GPT-2's byte-level BPE can split one character (an emoji, a CJK character) over several tokens; decoding only part of
it gives U+FFFD. `PieceDecoder` turns each token into its piece of text with an incremental UTF-8 decoder, which holds
such a character back until its last token (that token's piece carries it). `visible_text` also holds back any tail
that could be the start of a stop string, and a U+FFFD until the sample ends. When the sample ends, everything is shown.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gpt2_core.backend import Tokenizer

REPLACEMENT_CHAR = "\ufffd"


@dataclass(frozen=True)
class Visible:
    text: str  # what may be shown now
    stopped: bool  # a stop string occurred; `text` ends right before it


def visible_text(full: str, stop: tuple[str, ...], *, final: bool) -> Visible:
    """The part of the decoded continuation `full` to show now, cut before the first stop string."""
    cuts = [i for i in (full.find(s) for s in stop) if i >= 0]
    if cuts:
        return Visible(full[: min(cuts)], stopped=True)
    if final:
        return Visible(full, stopped=False)
    end = len(full)
    while end > 0 and full[end - 1] == REPLACEMENT_CHAR and len(full) - end < 4:  # an unfinished UTF-8 character
        end -= 1
    for s in stop:  # a tail that may yet grow into a stop string
        for n in range(min(len(s) - 1, end), 0, -1):
            if full[end - n : end] == s[:n]:
                end -= n
                break
    return Visible(full[:end], stopped=False)


def token_byte_table(tokenizer: Tokenizer) -> list[bytes]:
    """The bytes each token id stands for, indexed by id, for a byte-level BPE tokenizer such as GPT-2's.

    GPT-2's vocabulary spells bytes as printable characters (OpenAI's encoder.py, bytes_to_unicode); this undoes that.
    """
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    unicode_of: dict[int, str] = bytes_to_unicode()  # type: ignore[no-untyped-call]  # transformers leaves it untyped
    byte_of = {char: byte for byte, char in unicode_of.items()}
    tokens = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    assert isinstance(tokens, list)  # a list of ids gives a list of tokens
    return [bytes(byte_of[c] for c in token) if all(c in byte_of for c in token) else token.encode("utf-8")
            for token in tokens]


class PieceDecoder:
    """Splits a token stream into per-token text pieces whose concatenation is the decoded text.

    A character split over several tokens (an emoji, a CJK character) belongs to the token that completes it; the
    tokens before it get "" as their piece. Invalid bytes become U+FFFD, as in the tokenizer's own decode.
    """

    def __init__(self, table: list[bytes]):
        self._table = table
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def add(self, token: int) -> str:
        return self._utf8.decode(self._table[token])

    def flush(self) -> str:
        """What an unfinished character at the end decodes to (U+FFFD), or ""."""
        return self._utf8.decode(b"", final=True)


def split_pieces(table: list[bytes], ids: list[int]) -> list[str]:
    """Each token's piece of text (see PieceDecoder); "".join(pieces) == the decoded text of `ids`."""
    decoder = PieceDecoder(table)
    pieces = [decoder.add(token) for token in ids]
    if pieces:
        pieces[-1] += decoder.flush()
    return pieces


def fit_pieces(pieces: list[str], text: str) -> list[str]:
    """Pieces trimmed or extended at the end so that they join to `text` (a stop string cut it, a held-back tail
    shortened it, a flush grew it). Called at every streamed token, so it works from the end: only the pieces past the
    text are touched (a loop over every piece made a caller's token cost grow with its length, 0.09 ms at 512)."""
    out = list(pieces)
    excess = len("".join(out)) - len(text)  # (the join: a quarter of the time of adding up len()s)
    i = len(out) - 1
    while excess > 0:  # the text ends before these pieces do: each one cut to what is left of it
        keep = max(0, len(out[i]) - excess)
        excess -= len(out[i]) - keep
        out[i] = out[i][:keep]
        i -= 1
    if out and excess < 0:
        out[-1] += text[len(text) + excess :]
    return out

"""Turning a growing list of generated token ids into text that is safe to show while streaming.

GPT-2's byte-level BPE can split one character (an emoji, a CJK character) over several tokens; decoding only part of
it gives U+FFFD. While a sample is still running, such a tail is held back until the character is complete, and so is
any tail that could be the start of a stop string. When the sample ends, everything is shown.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

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


class IncrementalDecoder:
    """Text of a growing list of token ids, re-decoding only the ids after the last complete character.

    Byte-level BPE decodes piecewise: decode(a + b) == decode(a) + decode(b) whenever decode(a) ends on a whole
    character, so each step costs a few ids, not the whole sample.
    """

    def __init__(self, decode: Callable[[list[int]], str]):
        self._decode = decode
        self.ids: list[int] = []
        self._done = 0  # ids[:_done] decode to whole characters ...
        self._done_text = ""  # ... namely to this text
        self.text = ""  # text of all ids (may end in U+FFFD while a character is open)

    def add(self, token: int) -> str:
        """Append a token; return the text of all ids so far (possibly ending in U+FFFD while a character is open)."""
        self.ids.append(token)
        self.text = self._done_text + self._decode(self.ids[self._done :])
        if not self.text.endswith(REPLACEMENT_CHAR):
            self._done, self._done_text = len(self.ids), self.text
        return self.text

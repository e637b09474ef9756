"""The demo's examples, read from assets/examples.json: generation presets (the unicorn first), blank sentences,
and human-written paragraphs (public domain, with their source) for Spot the machine.

Each generation example carries its own settings and seed, checked by SamplingParams when the file is read,
so a preset with a bad value fails at start-up, not when a teacher clicks it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from gpt2_core import SamplingParams

EXAMPLES_FILE = Path(__file__).resolve().parent.parent / "assets" / "examples.json"


@dataclass(frozen=True)
class GenerateExample:
    id: str  # "unicorn", "news", ...
    label: str  # the button's text
    about: str  # one or two sentences on what this example shows
    prompt: str
    settings: SamplingParams


@dataclass(frozen=True)
class HumanText:
    id: str
    title: str  # author, work, year and place: where the paragraph comes from (all public domain)
    text: str


@dataclass(frozen=True)
class Examples:
    generate: list[GenerateExample]
    compare: list[str]
    human: list[HumanText]  # human-written paragraphs for Spot the machine

    @property
    def unicorn(self) -> GenerateExample:
        return next(example for example in self.generate if example.id == "unicorn")


def load_examples(path: Path = EXAMPLES_FILE) -> Examples:
    data = json.loads(path.read_text(encoding="utf-8"))
    generate = [GenerateExample(e["id"], e["label"], e["about"], e["prompt"], SamplingParams(**e["settings"]))
                for e in data["generate"]]
    return Examples(generate, list(data["compare"]), [HumanText(**h) for h in data["human"]])

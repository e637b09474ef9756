"""What scale buys ("the 2 is scale"): the same prompt and seed on GPT-2's sizes, one model at a time.

`plan` decides which sizes run here: those whose files are on this machine (the bundled mini model, a local directory,
or a Hub model already in the Hugging Face cache) and whose weights fit in the memory budget. The others are listed
with the reason and the fix (the command that fetches them, the budget they need). Loading, running and releasing the
runnable ones one after another is the caller's (demo/scale_tab.py): never two of them in memory at once.

`bits_per_token` is how surprised a model is by a text: the mean of -log2 p(token | the tokens before it), the first
token conditioned on <|endoftext|>. Lower is better; 2 ** bits is the perplexity.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from gpt2_core.checkpoint import BUNDLED, TOKENIZER_FILES, WEIGHT_PATTERNS, read_config
from gpt2_core.config import PRESETS, GPTConfig
from gpt2_core.memory import PRECISION_LABELS, estimate_weight_bytes, readable_bytes

if TYPE_CHECKING:
    from gpt2_core.lm import TextModel

SCALE_SOURCES = ("mini-gpt2", "distilgpt2", "gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl")


@dataclass(frozen=True)
class Planned:
    source: str  # the name the page shows (a short name, a Hub id or a directory)
    parameters: int | None  # None when its size is unknown (neither here nor one of OpenAI's sizes)
    weight_bytes: int | None  # its weights in the precision it would load in
    directory: Path | None  # where its files are on this machine (None: not here)
    skip: str | None  # why it will not run, with the fix; None when it runs


def locate(source: str) -> Path | None:
    """The folder of `source`'s files on this machine, without reaching the network (None: not here)."""
    if source in BUNDLED:
        return BUNDLED[source] if (BUNDLED[source] / "model.safetensors").is_file() else None
    path = Path(source).expanduser()
    if path.is_dir():
        return path
    if source.startswith((".", "/", "~")):
        return None
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    try:
        return Path(snapshot_download(source, allow_patterns=WEIGHT_PATTERNS + TOKENIZER_FILES, local_files_only=True))
    except (LocalEntryNotFoundError, HFValidationError, OSError):
        return None


def plan(sources: list[str] | tuple[str, ...], *, budget_bytes: int, precision: str = "fp32") -> list[Planned]:
    """Each source with its size and whether it runs: smallest first, as the tab shows them."""
    if isinstance(sources, str):  # (its letters were planned as models: 'm', 'i', ...)
        raise ValueError(f"`sources` has to be a list of models, but is the string {sources!r}: give [{sources!r}]")
    planned = []
    label = PRECISION_LABELS.get(precision, precision)
    for source in sources:
        directory = locate(source)
        config: GPTConfig | None = PRESETS.get(source)
        if directory is not None:
            config = read_config(directory)
        size = None if config is None else estimate_weight_bytes(config, precision)
        if directory is None:
            hub_id = not source.startswith((".", "/", "~"))
            fetch = f"`python -m gpt2_core download {source}`" if hub_id else None
            skip = f"not on this machine: {fetch} fetches it" if fetch else "not on this machine"
            if size is not None:
                skip += f"; it would take {readable_bytes(size)} of memory in {label}"
        elif size is not None and size > budget_bytes:  # a folder has a config.json: its size is known
            skip = (f"needs {readable_bytes(size)} in {label}, over this host's budget of {readable_bytes(budget_bytes)} "
                    f"for this tab (--scale-memory {math.ceil(size * 1.2 / 1e8) / 10:g} would take it)")
        else:
            skip = None
        planned.append(Planned(source, None if config is None else config.num_parameters(), size, directory, skip))
    return sorted(planned, key=lambda p: (p.parameters is None, p.parameters or 0))


def bits_per_token(lm: TextModel, text: str) -> float:
    """The model's mean surprise at `text`, in bits per token (lower: the text is more what it expects)."""
    scores = lm.score_text(text, top=0)
    if not scores:
        raise ValueError("`text` has to have at least one token to measure surprise")
    return sum(-math.log2(max(s.prob, 1e-30)) for s in scores) / len(scores)


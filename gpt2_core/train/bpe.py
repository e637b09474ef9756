"""A byte-level BPE vocabulary in GPT-2's format (vocab.json + merges.txt), trained on a text with `tokenizers`.

The same byte-to-character mapping and pre-tokenization as OpenAI's encoder.py, so gpt2_core and transformers load it
as they load GPT-2's own. <|endoftext|> is added as a special token (it ends documents and starts samples).
"""

from __future__ import annotations

import json
from pathlib import Path

EOS = "<|endoftext|>"


def train_bpe(text: str, directory: Path, *, vocab_size: int) -> None:
    """Train a vocabulary of at most `vocab_size` tokens on `text`, and write vocab.json and merges.txt (and
    tokenizer_config.json, naming <|endoftext|>) to `directory`."""
    from tokenizers import ByteLevelBPETokenizer

    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = ByteLevelBPETokenizer()
    lines = text.splitlines(keepends=True)
    tokenizer.train_from_iterator(lines, vocab_size=vocab_size, min_frequency=2, special_tokens=[EOS],
                                  show_progress=False)
    tokenizer.save_model(str(directory))
    config = {"tokenizer_class": "GPT2Tokenizer", "bos_token": EOS, "eos_token": EOS, "unk_token": EOS,
              "add_prefix_space": False}  # so that AutoTokenizer reads the folder as GPT-2's
    (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=1))

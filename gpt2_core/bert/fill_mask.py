"""BERT fill-mask: the words a bidirectional model puts in a blank, for the demo's "BERT vs GPT-2" comparison.

BERT (Devlin et al., 2018) reads the whole sentence at once, left and right of the blank; GPT-2 reads left to right.
The model is transformers' `BertForMaskedLM`, loaded from safetensors only (`use_safetensors=True`; pickle files can
run code when loaded) with its own tokenizer (never `trust_remote_code`).

    fill = load_fill_mask("bert-base-uncased")
    fill.fill_blank("The ", " barked at the mailman.", k=5)   # [("dog", 0.61), ("man", 0.05), ...]
"""

from __future__ import annotations

import logging
import re
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from gpt2_core.checkpoint import ModelUnavailableError, UnsafeCheckpointError, resolve_checkpoint_dir
from gpt2_core.devices import resolve_device
from gpt2_core.explain.attention import MAX_ATTENTION_TOKENS, Attention
from gpt2_core.threads import ends_its_thread

if TYPE_CHECKING:
    from transformers import BertForMaskedLM, PreTrainedTokenizerBase

log = logging.getLogger(__name__)

WORD = re.compile(r"[^\W\d_][\w'-]*|\d+")  # a whole word or number: no "##" word pieces, no punctuation
BERT_FILES = ("config.json", "model.safetensors", "vocab.txt")  # a local BERT folder: named by the fix when missing
CANDIDATE_POOL = 100  # how many of BERT's top tokens to read before keeping the first k whole words


class FillMask:
    """A loaded BERT masked-language model and its tokenizer."""

    def __init__(self, model: BertForMaskedLM, tokenizer: PreTrainedTokenizerBase, *, name: str, device: torch.device):
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        self.device = device
        self._tokenizer_lock = threading.Lock()

    @ends_its_thread  # (gpt2_core/threads.py: no OpenMP pool left on the caller's thread)
    @torch.inference_mode()
    def fill_blank(self, left: str, right: str, k: int = 8) -> list[tuple[str, float]]:
        """BERT's k most likely whole words for the blank between `left` and `right`: (word, probability)."""
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"`k` has to be a positive integer, but is {k!r}")
        text = f"{left}{self.tokenizer.mask_token}{right}"
        with self._tokenizer_lock:  # a fast tokenizer's truncation setting is shared state ("Already borrowed")
            encoded = self.tokenizer(text, return_tensors="pt", truncation=True)
        positions = (encoded["input_ids"][0] == self.tokenizer.mask_token_id).nonzero()
        if len(positions) != 1:
            raise ValueError(f"`sentence` has to contain exactly one blank, but BERT sees {len(positions)}")
        logits = self.model(**encoded.to(self.device)).logits[0, int(positions[0])]  # (vocab,)
        top = logits.float().softmax(-1).topk(min(CANDIDATE_POOL, logits.numel()))
        special = set(self.tokenizer.all_special_ids)
        words: list[tuple[str, float]] = []
        for prob, token_id in zip(top.values.tolist(), top.indices.tolist(), strict=True):
            token = self.tokenizer.convert_ids_to_tokens(token_id)
            assert isinstance(token, str)  # one id gives one token
            if token_id in special or not WORD.fullmatch(token):
                continue
            words.append((token, prob))
            if len(words) == k:
                break
        return words

    @ends_its_thread  # (gpt2_core/threads.py: no OpenMP pool left on the caller's thread)
    @torch.inference_mode()
    def attention(self, text: str) -> Attention:
        """`(tokens, weights)`: BERT's word pieces ([CLS] and [SEP] included) and the softmax attention of every layer
        and head, (n_layer, n_head, T, T). BERT reads both sides, so every row spreads over the whole sentence."""
        if not isinstance(text, str) or not text.strip():
            raise ValueError("`text` has to be a non-empty string")
        with self._tokenizer_lock:
            encoded = self.tokenizer(text, return_tensors="pt")
        T = encoded["input_ids"].shape[1]
        if T > MAX_ATTENTION_TOKENS:
            raise ValueError(f"`text` has to be at most {MAX_ATTENTION_TOKENS} tokens long for BERT to show its "
                             f"attention, but has {T}")
        out = self.model.bert(**encoded.to(self.device), output_attentions=True)
        weights = torch.stack([a[0].float().cpu() for a in out.attentions])  # layers x (nh, T, T)
        tokens = self.tokenizer.convert_ids_to_tokens(encoded["input_ids"][0].tolist())
        assert isinstance(tokens, list)  # a list of ids gives a list of tokens
        return Attention(tokens, weights)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())


@ends_its_thread
def load_fill_mask(source: str | Path = "bert-base-uncased", *, device: str | torch.device = "auto") -> FillMask:
    """Load a BERT fill-mask model from a local directory or the Hub (safetensors only, no remote code)."""
    from transformers import AutoTokenizer, BertForMaskedLM

    directory = resolve_checkpoint_dir(source, files=BERT_FILES, kind="BERT")  # a local directory, or the Hub's files
    if not (directory / "model.safetensors").is_file() and not (directory / "model.safetensors.index.json").is_file():
        raise UnsafeCheckpointError(
            f"{directory} has no model.safetensors. BERT is loaded from safetensors only: pickle files such as "
            "pytorch_model.bin can run arbitrary code when loaded."
        )
    dev = resolve_device(device)
    try:
        # eager attention: the fused kernel does not return the attention weights that the Inside tab shows
        model = BertForMaskedLM.from_pretrained(str(directory), use_safetensors=True, attn_implementation="eager")
        model = model.eval().to(dev)  # type: ignore[no-untyped-call]  # transformers leaves PreTrainedModel.eval untyped
        tokenizer = AutoTokenizer.from_pretrained(str(directory), trust_remote_code=False)
    except (OSError, ValueError) as e:
        raise ModelUnavailableError(f"cannot load a BERT fill-mask model from {directory}: {e}") from e
    if tokenizer.mask_token is None:
        raise ModelUnavailableError(f"the tokenizer in {directory} has no mask token, so it cannot fill blanks")
    fill = FillMask(model, tokenizer, name=str(source), device=dev)
    log.info("loaded %s: %.0fM parameters, %s", source, fill.num_parameters() / 1e6, dev)
    return fill


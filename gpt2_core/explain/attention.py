"""Where each token looks: the softmax attention of every layer and head, for showing, not for decoding.

GPT-2 is causal: token i attends to tokens 0..i only, so its attention maps are lower triangles. BERT attends to both
sides, so its maps are full squares (bert/fill_mask.py's `FillMask.attention`). This is an analysis path of its own: it
walks the same modules as `GPT.forward` but writes the attention out (q @ k^T, scaled, masked, softmax) instead of
calling the fused kernel, so decoding (model.py, compiled.py) has neither a branch nor a cost for it.

References: Vig 2019, "A Multiscale Visualization of Attention in the Transformer Model" (bertviz); Clark et al. 2019,
"What Does BERT Look At?".
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from gpt2_core.model import GPT, Block

MAX_ATTENTION_TOKENS = 64  # a map of 64 x 64 cells is still readable; gpt2-xl's 48 x 25 maps of it take 20 MB


class Attention(NamedTuple):
    tokens: list[str]  # each token's text, as it appears in the input
    weights: torch.Tensor  # (n_layer, n_head, T, T) float32 on the CPU: weights[l, h, i, j] = how much i attends to j


@torch.inference_mode()
def attention_weights(model: GPT, ids: list[int]) -> torch.Tensor:
    """The softmax attention of every layer and head for the sequence `ids`: (n_layer, n_head, T, T), rows summing
    to 1, zero above the diagonal."""
    T = len(ids)
    if not 0 < T <= model.config.block_size:
        raise ValueError(f"attention needs 1 to {model.config.block_size} tokens, but got {T}")
    device = model.wpe.weight.device
    idx = torch.tensor([ids], device=device)  # (1, T)
    x = model.wte(idx) + model.wpe(torch.arange(T, device=device))  # (1, T, C)
    causal = torch.ones(T, T, dtype=torch.bool, device=device).tril()
    maps = []
    for block in model.h:
        assert isinstance(block, Block)  # (an nn.ModuleList's items are typed Module)
        attn = block.attn
        h = block.ln_1(x)
        q, k, v = attn.c_attn(h).split(attn.n_embd, dim=2)
        q, k, v = (t.view(1, T, attn.n_head, -1).transpose(1, 2) for t in (q, k, v))  # (1, nh, T, hs)
        scores = (q.float() @ k.float().transpose(-2, -1)) * attn.scale  # (1, nh, T, T)
        weights = scores.masked_fill(~causal, float("-inf")).softmax(-1)
        maps.append(weights[0].cpu())
        y = (weights.to(v.dtype) @ v).transpose(1, 2).reshape(1, T, attn.n_embd)
        x = x + attn.c_proj(y)
        x = x + block.mlp(block.ln_2(x))
    return torch.stack(maps)  # (n_layer, n_head, T, T)


def check_layer_head(layer: int, head: int, weights: torch.Tensor, *, model: str) -> None:
    """Layer and head count from 1, as on the page; a clear message names the range of this model."""
    n_layer, n_head = weights.shape[:2]
    for name, value, high in (("layer", layer, n_layer), ("head", head, n_head)):
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= high:
            raise ValueError(f"`{name}` has to be an integer from 1 to {high} for {model}, but is {value!r}")


def strongest_links(weights: torch.Tensor, query: int, k: int = 3) -> list[tuple[int, float]]:
    """The `k` tokens that token `query` attends to most in one head's map (T, T): (token index, weight)."""
    row = weights[query]
    top = torch.topk(row, min(k, int((row > 0).sum()) or 1))
    return [(int(i), float(w)) for w, i in zip(top.values, top.indices, strict=True)]

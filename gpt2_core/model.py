"""GPT-2 as a readable decoder-only transformer, with a preallocated KV cache for decoding.

References:
1) OpenAI's GPT-2 code (TensorFlow): https://github.com/openai/gpt-2/blob/master/src/model.py
2) Radford et al. 2019, "Language Models are Unsupervised Multitask Learners" (pre-LayerNorm blocks, final LayerNorm)
3) nanoGPT's model.py, which this follows in shape and naming.

Module names match the Hugging Face GPT-2 checkpoints (wte, wpe, h.N.attn.c_attn, ...), so loading is a rename-free copy
apart from the transposed Conv1D weights (see checkpoint.py). The tests prove the logits equal `GPT2LMHeadModel`'s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from gpt2_core.config import ACTIVATIONS, GPTConfig

if TYPE_CHECKING:
    from gpt2_core.quantize import Int8Embedding, Int8Linear, Int8RowsLinear

LOSS_CHUNK_LOGITS = 2**22  # logits per chunk of the training loss (16 MB in fp32): 83 positions of GPT-2's vocabulary


def loss_chunk_rows(vocab_size: int) -> int:
    """Positions per chunk of `GPT.loss`: as many as make LOSS_CHUNK_LOGITS logits (at least 32)."""
    return max(32, LOSS_CHUNK_LOGITS // vocab_size)


def _cross_entropy_sum(x: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Summed cross-entropy of one chunk: x (N, n_embd) through the LM head `weight` (vocab, n_embd)."""
    logits = F.linear(x, weight).float()  # (N, vocab)
    return F.cross_entropy(logits, targets, reduction="sum")


class KVCache:
    """Keys and values of every layer for up to `batch_size` sequences of up to `max_len` tokens each.

    Row b of the batch holds one sequence; `GPT.prefill` fills a row from position 0 and `GPT.decode` appends one token
    to each of the first B rows. Allocated once, so decoding never allocates per step.

    zeroed=False leaves the positions as the allocator gives them until a prefill or a step writes them: for a cache
    whose reader reads only written positions (the project's decode attention, which reads each row's own; the
    compile warm-ups decode at positions nothing wrote, and drop what they get). It then costs
    nothing to make, where zeros touch every page at once (8 gpt2 rows in fp16, 302 MB: 66-220 ms on 2 cores, before
    8 callers' first tokens), and the pages that a row never reaches are never touched.
    """

    def __init__(self, config: GPTConfig, batch_size: int, max_len: int, *, device: torch.device, dtype: torch.dtype,
                 zeroed: bool = True):
        shape = (batch_size, config.n_head, max_len, config.head_dim)  # (B, nh, S, hs)
        make = torch.zeros if zeroed else torch.empty
        self.k = [make(shape, device=device, dtype=dtype) for _ in range(config.n_layer)]
        self.v = [make(shape, device=device, dtype=dtype) for _ in range(config.n_layer)]
        self.batch_size = batch_size
        self.max_len = max_len

    def copy_row(self, src: int, dst: int, length: int) -> None:
        """Copy the first `length` positions of row `src` into row `dst` (to fork a prompt or compact the batch)."""
        for k, v in zip(self.k, self.v):
            k[dst, :, :length] = k[src, :, :length]
            v[dst, :, :length] = v[src, :, :length]

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.k + self.v)


@dataclass
class _CacheStep:
    """Where one forward pass reads and writes the cache (built by GPT.prefill / GPT.decode_step)."""

    k: list[torch.Tensor]  # per layer (Bmax, nh, S, hs): KVCache.k
    v: list[torch.Tensor]
    row: torch.Tensor | int  # prefill: (N,) the cache row each prompt goes to (decode: unused)
    positions: torch.Tensor | None  # decode: (B,) position of each row's new token, on the model's device
    kv_len: int  # decode: attend over cache positions [0, kv_len)
    mask: torch.Tensor | None  # decode: (B, 1, 1, kv_len) True where a row may attend; None if all rows are equally long


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig, layer_idx: int):
        super().__init__()
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd)  # q, k, v for all heads in one matmul
        self.c_proj = nn.Linear(config.n_embd, config.n_embd)
        self.n_head = config.n_head
        self.n_embd = config.n_embd
        self.layer_idx = layer_idx
        self.scale = config.head_dim**-0.5
        if config.scale_attn_by_inverse_layer_idx:
            self.scale /= layer_idx + 1
        self.dropout = config.dropout  # on the attention weights while training
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, step: _CacheStep | None) -> torch.Tensor:
        B, T, C = x.size()  # batch, sequence length, n_embd
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)

        if step is None or step.positions is None:  # a whole sequence from position 0: plain causal attention
            if step is not None:  # prefill: remember each prompt's keys and values in its row
                ck, cv = step.k[self.layer_idx], step.v[self.layer_idx]
                ck[step.row, :, :T] = k.to(ck.dtype)
                cv[step.row, :, :T] = v.to(cv.dtype)
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=self.scale,
                                               dropout_p=self.dropout if self.training else 0.0)  # (B, nh, T, hs)
        else:  # decode: one new token per row, attending over everything cached for that row
            ck, cv = step.k[self.layer_idx], step.v[self.layer_idx]  # (Bmax, nh, S, hs)
            rows = torch.arange(B, device=x.device)
            ck[rows, :, step.positions] = k[:, :, 0].to(ck.dtype)  # (B, nh, hs) written at each row's own position
            cv[rows, :, step.positions] = v[:, :, 0].to(cv.dtype)
            if ck.dtype != q.dtype:  # an fp16 cache (GPT.cache_dtype): the project's kernel reads it, row by row
                y = torch.ops.gpt2_core.decode_attention(q, ck, cv, step.positions, self.scale)  # (B, nh, 1, hs)
            else:
                keys, values = ck[:B, :, : step.kv_len], cv[:B, :, : step.kv_len]  # (B, nh, kv_len, hs)
                y = F.scaled_dot_product_attention(q, keys, values, attn_mask=step.mask, scale=self.scale)

        y = y.transpose(1, 2).contiguous().view(B, T, C)  # re-assemble all head outputs side by side
        out: torch.Tensor = self.resid_dropout(self.c_proj(y))  # (a module's call is typed Any in torch)
        return out


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd)
        self.approximate = ACTIVATIONS[config.activation]
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.dropout(self.c_proj(F.gelu(self.c_fc(x), approximate=self.approximate)))
        return out


class Block(nn.Module):
    def __init__(self, config: GPTConfig, layer_idx: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_eps)
        self.attn = CausalSelfAttention(config, layer_idx)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_eps)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, step: _CacheStep | None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), step)  # pre-LayerNorm residual blocks (GPT-2 paper, section 2.3)
        x = x + self.mlp(self.ln_2(x))
        return x


class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        # token embeddings (CPU int8: read from the head's int8 rows, quantize.py)
        self.wte: nn.Embedding | Int8Embedding = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.block_size, config.n_embd)  # learned position embeddings
        self.drop = nn.Dropout(config.dropout)
        self.h = nn.ModuleList(Block(config, i) for i in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, eps=config.layer_norm_eps)
        self.lm_head: nn.Linear | Int8Linear | Int8RowsLinear = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # weight tying: the output layer reads the input embedding table
        # The KV cache's dtype where it is not the activations': fp16 for CPU int8 where the project's decode attention
        # reads it (gpt2_core/decode_attention.cpp; set by quantize.quantize_head), half the bytes a step reads from memory.
        self.cache_dtype: torch.dtype | None = None

    def new_cache(self, batch_size: int, max_len: int, *, device: torch.device, dtype: torch.dtype) -> KVCache:
        """An empty cache for this model: in `cache_dtype` where it has one, else in `dtype` (the activations'). A cache
        narrower than the activations is read by the project's kernel only, each row's written positions, so it is not
        zeroed; ATen's attention reads a ragged batch's unwritten positions under a mask, where garbage (NaN times a
        weight of 0) would still reach the output, so its cache is."""
        cache_dtype = self.cache_dtype or dtype
        return KVCache(self.config, batch_size, max_len, device=device, dtype=cache_dtype, zeroed=cache_dtype == dtype)

    def _trunk(self, idx: torch.Tensor, pos: torch.Tensor, step: _CacheStep | None) -> torch.Tensor:
        x = self.drop(self.wte(idx) + self.wpe(pos))  # (B, T, n_embd)
        for block in self.h:
            x = block(x, step)
        out: torch.Tensor = self.ln_f(x)
        return out

    def forward(self, idx: torch.Tensor, *, first: int = 0) -> torch.Tensor:
        """Logits of whole sequences (no cache): (B, T) ids -> (B, T - first, vocab_size), for positions first.. on
        (scoring a window needs only its new positions: the LM head is the biggest matmul of a long sequence)."""
        T = idx.size(1)
        if T > self.config.block_size:
            raise ValueError(f"sequence of {T} tokens is longer than the context of {self.config.block_size}")
        pos = torch.arange(T, device=idx.device)  # (T,)
        logits: torch.Tensor = self.lm_head(self._trunk(idx, pos, None)[:, first:])
        return logits.float()

    def prefill(self, idx: torch.Tensor, cache: KVCache, row: int | list[int],
                lengths: list[int] | None = None) -> torch.Tensor:
        """Run prompts (N, T) from position 0 in one pass, store prompt i's keys/values in cache row `row[i]` (an int
        for one prompt); return each prompt's last logits (N, vocab).

        Prompts of different lengths come right-padded to T, `lengths` their own lengths (default: all T). Causal
        attention never lets a token see the padding after it; the padding's keys and values land past the row's
        length, where decode masks them until the row's own tokens overwrite them.
        """
        N, T = idx.shape
        rows = [row] if isinstance(row, int) else list(row)
        lengths = lengths or [T] * N
        assert len(rows) == len(lengths) == N and 0 < min(lengths) and max(lengths) == T <= cache.max_len <= \
            self.config.block_size, (idx.shape, rows, lengths, cache.max_len)
        pos = torch.arange(T, device=idx.device)  # (T,)
        step = _CacheStep(cache.k, cache.v, row=torch.tensor(rows, device=idx.device), positions=None, kv_len=T,
                          mask=None)
        x = self._trunk(idx, pos, step)
        last = x[torch.arange(N, device=idx.device), torch.tensor(lengths, device=idx.device) - 1]  # (N, n_embd)
        logits: torch.Tensor = self.lm_head(last)  # only each prompt's last position is needed to continue
        return logits.float()

    def decode(self, idx: torch.Tensor, cache: KVCache, positions: list[int]) -> torch.Tensor:
        """Append one token to each of the first B cache rows: idx (B, 1), positions[b] = row b's length so far.

        Rows may have different lengths (continuous batching): each attends only to its own cached positions.
        Returns the next-token logits (B, vocab).
        """
        B = idx.size(0)
        assert len(positions) == B <= cache.batch_size and max(positions) < cache.max_len, (positions, cache.max_len)
        kv_len = max(positions) + 1
        pos = torch.tensor(positions, device=idx.device)  # (B,)
        return self.decode_step(idx, pos, cache.k, cache.v, kv_len, ragged=min(positions) != kv_len - 1)

    def decode_step(self, idx: torch.Tensor, pos: torch.Tensor, k: list[torch.Tensor], v: list[torch.Tensor],
                    kv_len: int, ragged: bool) -> torch.Tensor:
        """The tensor part of `decode` (what compiled.py compiles): attend over cache positions [0, kv_len).

        ragged: rows differ in length, so each row's unwritten positions are masked out.
        """
        mask = None
        if ragged and k[0].dtype == self.wpe.weight.dtype:  # (a narrower cache's kernel reads each row's own positions)
            mask = (torch.arange(kv_len, device=idx.device) <= pos[:, None])[:, None, None, :]  # (B, 1, 1, kv_len)
        step = _CacheStep(k, v, row=-1, positions=pos, kv_len=kv_len, mask=mask)
        x = self._trunk(idx, pos[:, None], step)  # (B, 1, n_embd)
        logits: torch.Tensor = self.lm_head(x[:, -1])
        return logits.float()

    def loss(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of predicting `targets` (B, T) from `idx` (B, T): the training objective.

        The logits are made a chunk of positions at a time, each chunk's LM head and cross-entropy under activation
        checkpointing, so the (B * T, vocab) logits never exist at once, forward or backward: with GPT-2's 50257-word
        vocabulary they would be 3.3 GB for 16 x 1024 tokens. Backward recomputes one chunk's logits at a time.
        """
        T = idx.size(1)
        if T > self.config.block_size:
            raise ValueError(f"sequence of {T} tokens is longer than the context of {self.config.block_size}")
        x = self._trunk(idx, torch.arange(T, device=idx.device), None)  # (B, T, n_embd)
        x, targets = x.reshape(-1, x.size(-1)), targets.reshape(-1)  # (B * T, n_embd), (B * T,)
        rows = loss_chunk_rows(self.config.vocab_size)
        if x.size(0) <= rows:  # one chunk: nothing to save by recomputing
            return _cross_entropy_sum(x, self.lm_head.weight, targets) / targets.numel()
        total = x.new_zeros((), dtype=torch.float32)
        for i in range(0, x.size(0), rows):
            args = (x[i : i + rows], self.lm_head.weight, targets[i : i + rows])
            if torch.is_grad_enabled():
                total = total + checkpoint(_cross_entropy_sum, *args, use_reentrant=False)
            else:
                total = total + _cross_entropy_sum(*args)
        return total / targets.numel()

    @torch.no_grad()
    def init_weights(self) -> None:
        """GPT-2's initialisation: weights normal(0, 0.02), biases 0, LayerNorms 1 and 0, and the projections into the
        residual stream scaled by 1/sqrt(2 * n_layer), since each block adds two of them (GPT-2 paper, section 2.3)."""
        for name, p in self.named_parameters():
            if name.endswith("bias"):
                p.zero_()
            elif ".ln_" in name or name.startswith("ln_f"):
                p.fill_(1.0)
            elif name.endswith("c_proj.weight"):
                p.normal_(0.0, 0.02 / math.sqrt(2 * self.config.n_layer))
            else:
                p.normal_(0.0, 0.02)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())  # the tied head is counted once by parameters()

"""A text as training data: its tokens, split into a training part and a held-out part at the end (for validation)."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class TokenData:
    train: torch.Tensor  # (N,) token ids
    val: torch.Tensor  # (M,) the held-out end of the text

    @classmethod
    def split(cls, ids: list[int], *, context: int, val_fraction: float = 0.1) -> TokenData:
        """The last `val_fraction` of the tokens (at least one context and a token) are held out for validation."""
        need = 2 * (context + 1)
        if len(ids) < need / min(val_fraction, 1 - val_fraction):
            raise ValueError(f"`text` is too short to train on: it has {len(ids)} tokens, and needs at least "
                             f"{int(need / min(val_fraction, 1 - val_fraction))} for a context of {context} "
                             f"(about {int(4 * need / min(val_fraction, 1 - val_fraction))} characters)")
        cut = int(len(ids) * (1 - val_fraction))
        data = torch.tensor(ids, dtype=torch.long)
        return cls(data[:cut], data[cut:])

    @classmethod
    def held_out(cls, train_ids: list[int], val_ids: list[int], *, context: int) -> TokenData:
        """Train on one text and validate on another (a held-out work)."""
        for name, ids in (("text", train_ids), ("val_text", val_ids)):
            if len(ids) < 2 * (context + 1):
                raise ValueError(f"`{name}` is too short to train on: it has {len(ids)} tokens, and needs at least "
                                 f"{2 * (context + 1)} for a context of {context}")
        return cls(torch.tensor(train_ids, dtype=torch.long), torch.tensor(val_ids, dtype=torch.long))

    def batch(self, split: str, batch_size: int, context: int, generator: torch.Generator
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """`batch_size` random windows of `context` tokens and the same windows moved on by one (the targets)."""
        data = self.train if split == "train" else self.val
        starts = torch.randint(len(data) - context - 1, (batch_size,), generator=generator)
        x = torch.stack([data[i : i + context] for i in starts.tolist()])  # (B, T)
        y = torch.stack([data[i + 1 : i + 1 + context] for i in starts.tolist()])  # (B, T)
        return x, y

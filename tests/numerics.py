"""Comparing numbers that two different pieces of code computed (ours against transformers, a recorded vLLM, another
CPU's kernels): within what the arithmetic allows, never bit for bit.

Both sides compute in fp32 (a 24-bit mantissa, about 6e-8 relative per operation). A logit is a sum over the model's
width of products of values that themselves went through the same kind of sums, layer after layer; reordering those
sums (another BLAS, another SIMD width, another thread count) moves a logit by a few ulps of the largest partial
sums. On the test models (logits of magnitude up to ~100) that is below 1e-4; LOGIT_TIE is ten times that, and it
is the only place the tests decide what "tied" means. Two tokens whose logits are within LOGIT_TIE of each other may
be ordered either way by a correct implementation, so a rank or an order is checked only up to such ties.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

LOGIT_TIE = 1e-3  # logits (or log-probabilities: the same differences) closer than this are a tie
PROB_ATOL = 1e-4  # probabilities computed by different code


def rank_bounds(row: torch.Tensor, token: int, tie: float = LOGIT_TIE) -> tuple[int, int]:
    """The ranks (1 = likeliest) `token` may have in logits `row` (vocab,) when ties within `tie` go either way."""
    value = row[token]
    better = int((row > value + tie).sum())
    close = int((row >= value - tie).sum())  # itself included
    return better + 1, close


def assert_rank(rank: int | None, row: torch.Tensor, token: int, tie: float = LOGIT_TIE) -> None:
    low, high = rank_bounds(row, token, tie)
    assert rank is not None and low <= rank <= high, \
        f"token {token} has rank {rank}, but its logit places it at {low}..{high} (ties within {tie})"


def assert_ranks(ranks: Sequence[int | None], rows: torch.Tensor, tokens: Sequence[int], tie: float = LOGIT_TIE) -> None:
    """Each `ranks[t]` is `tokens[t]`'s rank in `rows[t]` up to ties."""
    assert len(ranks) == len(tokens) == rows.size(0), (len(ranks), len(tokens), rows.size(0))
    for rank, row, token in zip(ranks, rows, tokens):
        assert_rank(rank, row, int(token), tie)


def assert_top_ids(ids: Sequence[int], row: torch.Tensor, tie: float = LOGIT_TIE) -> None:
    """`ids` are the len(ids) likeliest tokens of logits `row`, likeliest first, up to ties: the token at place i may
    be any token whose rank, ties going either way, can be i + 1."""
    assert len(set(ids)) == len(ids), f"a token listed twice: {list(ids)}"
    for place, token in enumerate(ids, 1):
        assert_rank(place, row, int(token), tie)


def assert_same_greedy_path(ours: Sequence[int], expected: Sequence[int],
                            logits_after: Callable[[list[int]], torch.Tensor], tie: float = LOGIT_TIE) -> int:
    """Greedy ids equal the reference's until the end, or until a step where the reference's logits tie the two
    choices (from there the paths may part, and each is right). Returns how many ids were compared.

    `logits_after(prefix)` gives the reference's next-token logits (vocab,) after the generated ids `prefix`.
    """
    for i, (a, b) in enumerate(zip(ours, expected)):
        if a != b:
            row = logits_after(list(expected[:i]))
            gap = float(row[b] - row[a])
            assert gap <= tie, f"greedy ids part at step {i} ({a} against {b}) where the logits differ by {gap:.2e}"
            return i
    return min(len(ours), len(expected))

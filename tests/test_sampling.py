"""The sampler's pure functions on tiny hand-made distributions, and the statistics of the draws they make."""

import math

import pytest
import torch

from gpt2_core.generate.sampling import (
    SamplingParams,
    apply_repetition_penalty,
    apply_temperature,
    apply_top_k,
    apply_top_p,
    sample_token,
)

NEG_INF = float("-inf")
LOGITS = torch.tensor([1.0, 3.0, 2.0, 0.0, -1.0])  # order by likelihood: 1, 2, 0, 3, 4


def test_top_k_keeps_exactly_the_k_largest():
    assert torch.equal(apply_top_k(LOGITS, 2), torch.tensor([NEG_INF, 3.0, 2.0, NEG_INF, NEG_INF]))
    assert torch.equal(apply_top_k(LOGITS, 0), LOGITS)  # 0 = off
    assert torch.equal(apply_top_k(LOGITS, 99), LOGITS)


def test_top_p_keeps_the_smallest_nucleus_reaching_p():
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    logits = probs.log()
    assert torch.equal(torch.isfinite(apply_top_p(logits, 0.5)), torch.tensor([True, False, False, False]))
    assert torch.equal(torch.isfinite(apply_top_p(logits, 0.6)), torch.tensor([True, True, False, False]))
    assert torch.equal(torch.isfinite(apply_top_p(logits, 0.81)), torch.tensor([True, True, True, False]))
    assert torch.equal(apply_top_p(logits, 1.0), logits)
    # the most likely token always survives, even for a tiny p
    assert torch.equal(torch.isfinite(apply_top_p(logits, 1e-9)), torch.tensor([True, False, False, False]))


def test_top_p_works_on_unsorted_batched_logits():
    logits = torch.tensor([[0.0, 2.0, 1.0], [5.0, 0.0, 0.0]])
    kept = torch.isfinite(apply_top_p(logits, 0.7))
    assert torch.equal(kept, torch.tensor([[False, True, True], [True, False, False]]))


def test_temperature_divides_logits_shifted_so_the_largest_is_zero():
    assert torch.equal(apply_temperature(LOGITS, 0.5), (LOGITS - 3.0) * 2)  # exact: small integers
    torch.testing.assert_close(apply_temperature(LOGITS, 0.7).softmax(-1), (LOGITS / 0.7).softmax(-1))


# Settings at the edge of their ranges, as a script can send them: float32 would make inf, then NaN probabilities
@pytest.mark.parametrize("temperature", [1e-38, 1e-45, 5e-324])
def test_temperature_near_zero_samples_as_greedy_does(temperature):
    assert torch.equal(apply_temperature(LOGITS, temperature).softmax(-1), torch.tensor([0.0, 1.0, 0.0, 0.0, 0.0]))


def test_repetition_penalty_near_zero_makes_seen_tokens_likeliest_not_nan():
    out = apply_repetition_penalty(LOGITS, torch.tensor([0, 2]), 1e-39)  # seen: 1.0 and 2.0, over 1e-39: inf
    assert torch.isfinite(out).all()
    probs = apply_temperature(out, 0.8).softmax(-1)
    assert torch.equal(probs, torch.tensor([0.5, 0.0, 0.5, 0.0, 0.0]))  # the two seen ones tie at float32's largest


def test_top_p_below_float32s_smallest_keeps_the_likeliest_token():
    assert torch.equal(torch.isfinite(apply_top_p(LOGITS, 5e-324)), torch.tensor([False, True, False, False, False]))


@pytest.mark.parametrize("edge", [dict(temperature=1e-38), dict(repetition_penalty=1e-38), dict(top_p=5e-324),
                                  dict(temperature=1e-38, repetition_penalty=1e-38, top_p=5e-324, top_k=0)])
def test_sample_token_at_the_edges_of_the_ranges_draws_a_token(edge):
    token, prob = sample_token(LOGITS, SamplingParams(**edge), torch.Generator().manual_seed(0), torch.tensor([0, 2]))
    assert token in (1, 0, 2) and 0 < prob < 1


def test_repetition_penalty_pushes_seen_tokens_down_whatever_their_sign():
    out = apply_repetition_penalty(LOGITS, torch.tensor([1, 4]), 2.0)
    assert torch.equal(out, torch.tensor([1.0, 1.5, 2.0, 0.0, -2.0]))
    assert torch.equal(apply_repetition_penalty(LOGITS, torch.tensor([1]), 1.0), LOGITS)


@pytest.mark.parametrize("fn,arg", [(apply_top_k, 2), (apply_top_p, 0.5), (apply_temperature, 0.7),
                                    (lambda x, a: apply_repetition_penalty(x, torch.tensor([0, 1]), a), 1.3)])
def test_processors_never_edit_their_input(fn, arg):
    logits = LOGITS.clone()
    fn(logits, arg)
    assert torch.equal(logits, LOGITS), "processor should not change logits in-place"


def test_sample_token_leaves_logits_untouched():
    logits = LOGITS.clone()
    sample_token(logits, SamplingParams(0.7, 3, 0.9, 1.5), torch.Generator().manual_seed(0), torch.tensor([1]))
    assert torch.equal(logits, LOGITS)


def test_temperature_zero_equals_top_k_one_equals_argmax():
    g = torch.Generator().manual_seed(0)
    for seed in range(20):
        logits = torch.randn(1000, generator=torch.Generator().manual_seed(seed))
        greedy, _ = sample_token(logits, SamplingParams(temperature=0.0), g)
        top1, _ = sample_token(logits, SamplingParams(temperature=1.0, top_k=1), g)
        assert greedy == top1 == int(logits.argmax())


def test_reported_probability_is_the_models_softmax():
    token, prob = sample_token(LOGITS, SamplingParams(temperature=0.0), torch.Generator())
    assert token == 1
    assert prob == pytest.approx(float(LOGITS.softmax(-1)[1]), rel=1e-6)


def _frequencies(params: SamplingParams, logits: torch.Tensor, n: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(1234)
    counts = torch.zeros(logits.numel())
    for _ in range(n):
        counts[sample_token(logits, params, g)[0]] += 1
    return counts / n


@pytest.mark.parametrize("temperature,top_k,top_p", [(1.0, 0, 1.0), (0.5, 0, 1.0), (1.5, 3, 1.0), (1.0, 0, 0.8),
                                                     (0.8, 4, 0.9)])
def test_draws_follow_softmax_over_the_kept_tokens(temperature, top_k, top_p):
    """Frequencies over 8000 draws match softmax(logits / T) restricted to top-k / top-p.

    Tolerance: 4.5 standard errors of a binomial proportion per token (sqrt(p(1-p)/n) <= 0.0056 at n = 8000), so a
    correct sampler fails this with odds well under 1 in 10^4, while a wrong temperature or mask is off by far more.
    """
    logits = torch.tensor([2.0, 1.5, 1.0, 0.5, 0.0, -0.5])
    n = 8000
    expected = apply_top_p(apply_top_k(logits / temperature, top_k), top_p).softmax(-1)
    observed = _frequencies(SamplingParams(temperature, top_k, top_p), logits, n)
    tolerance = 4.5 * torch.sqrt(expected * (1 - expected) / n) + 1e-9
    assert torch.all((observed - expected).abs() <= tolerance), (observed, expected)
    assert torch.all(observed[expected == 0] == 0), "a masked token was drawn"


def test_same_generator_seed_same_draws():
    logits = torch.randn(50257, generator=torch.Generator().manual_seed(0))
    params = SamplingParams(temperature=1.0, top_k=40)
    a = [sample_token(logits, params, g)[0] for g in [torch.Generator().manual_seed(7)] for _ in range(20)]
    b = [sample_token(logits, params, g)[0] for g in [torch.Generator().manual_seed(7)] for _ in range(20)]
    assert a == b and len(set(a)) > 1


def test_sampling_never_touches_the_global_rng():
    torch.manual_seed(0)
    before = torch.get_rng_state()
    sample_token(torch.randn(100, generator=torch.Generator()), SamplingParams(1.0, 10, 0.9), torch.Generator())
    assert torch.equal(torch.get_rng_state(), before)


def test_top_k_narrowing_gives_the_same_distribution_as_masking():
    """sample_token draws from the top-k slice; that must equal softmax over the masked full vocabulary."""
    logits = torch.tensor([0.3, 2.0, -1.0, 1.7, 0.9, 1.1])
    n = 6000
    observed = _frequencies(SamplingParams(1.0, 3, 1.0), logits, n)
    expected = apply_top_k(logits, 3).softmax(-1)
    assert torch.all((observed - expected).abs() <= 4.5 * torch.sqrt(expected * (1 - expected) / n) + 1e-9)
    assert math.isclose(float(observed[[1, 3, 5]].sum()), 1.0)


@pytest.mark.parametrize("rows", [
    [SamplingParams(0.8, 40), SamplingParams(0.0, 40), SamplingParams(1.3, 5, 0.7), SamplingParams(1.0, 1)],
    [SamplingParams(0.8, 40), SamplingParams(1.0, 0, 0.9)],  # top-k off in one row: that row over the vocabulary
    [SamplingParams(0.9, 30, 1.0, 1.2), SamplingParams(0.0, 0)],  # a repetition penalty: that row alone
    [SamplingParams(1.0, 50257), SamplingParams(0.8, 40)],  # top-k of the whole vocabulary means off
    [SamplingParams(1.0, 50257)],
    [SamplingParams(0.8, 40)] * 6 + [SamplingParams(0.8, 40, 0.9), SamplingParams(1.2, 40)],  # a class: shaped at once
])
def test_batched_sampling_draws_what_each_row_would_draw_alone(rows):
    from gpt2_core.generate.sampling import draw

    logits = torch.randn(len(rows), 50257, generator=torch.Generator().manual_seed(5)) * 3
    history = torch.tensor([11, 464, 262])
    batched = draw(logits, rows, [torch.Generator().manual_seed(i) for i in range(len(rows))],
                          [history] * len(rows))
    alone = [sample_token(logits[b], p, torch.Generator().manual_seed(b), history) for b, p in enumerate(rows)]
    assert [d.token for d in batched] == [t for t, _ in alone]
    assert [d.prob for d in batched] == pytest.approx([p for _, p in alone], rel=1e-5)
    # what each row is drawn from: the same bits alone as among others (a seeded sample must not depend on them)
    from gpt2_core.generate.sampling import logits_to_probs

    together = logits_to_probs(logits, rows, [history] * len(rows))
    for b, p in enumerate(rows):
        (own,) = logits_to_probs(logits[b : b + 1], [p], [history])
        assert torch.equal(together[b].probs, own.probs), b
        assert (together[b].ids is None) == (own.ids is None) and (own.ids is None or torch.equal(together[b].ids,
                                                                                                  own.ids))


@pytest.mark.parametrize("seed", range(4))
def test_each_draws_rank_is_the_models_rank_of_its_token_with_ties(seed):
    """A draw's rank (1 + how many tokens the model scored strictly higher) is counted among the top-k candidates'
    logits where the token came from the model's top-k, and over the vocabulary otherwise: both agree with ranks_of
    on logits full of ties (the likeliest 60 tokens share 5 values a quarter apart, the rest 13), for rows of every
    kind in one batch, a top-k's last candidates among others of the same value."""
    from gpt2_core.generate.sampling import draw, ranks_of

    rows = [SamplingParams(2.0, 40), SamplingParams(2.0, 7), SamplingParams(1.5, 30), SamplingParams(2.0, 40, 0.9),
            SamplingParams(0.0, 0), SamplingParams(2.0, 0, 0.95), SamplingParams(2.0, 40, 1.0, 1.3),
            SamplingParams(0.0, 0, 1.0, 1.3), SamplingParams(2.0, 50257)]
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randint(-6, 7, (len(rows), 50257), generator=generator).float()
    logits[:, :60] = 7 + torch.randint(0, 5, (len(rows), 60), generator=generator) / 4  # 7, 7.25, .. 8: exact
    history = torch.arange(0, 60, 3)  # a third of the likeliest: the penalty reorders them (ranks stay the model's)
    draws = draw(logits, rows, [torch.Generator().manual_seed(1000 * seed + b) for b in range(len(rows))],
                 [history] * len(rows))
    tokens = torch.tensor([d.token for d in draws])
    assert [d.rank for d in draws] == ranks_of(logits, tokens).tolist()
    assert max(d.rank for d in draws[:4]) > 1  # (not only the likeliest drawn from the top-k rows)
    assert draws[0].distribution.logits is not None and draws[5].distribution.logits is None  # both ways were taken

"""The CUDA-graph decode path's padding and row mapping (gpt2_core/generate/cuda_graphs.py), tested on the CPU by
running the same padded static steps without graphs; the graphs themselves are tested in test_gpu.py on a GPU."""

from __future__ import annotations

import threading

import pytest

from gpt2_core import load_model
from gpt2_core.generate.cuda_graphs import GRAPH_SIZES, padded_size

PROMPTS = ["In a shocking finding,", "The capital of France is", "Once upon a time", "def main():",
           "My favourite food", "It was a dark and stormy night", "Q: What is two plus two?", "Dear Sir,"]


def test_batches_pad_up_to_the_next_captured_size_the_cache_holds():
    assert GRAPH_SIZES == (1, 2, 4, 8, 16)
    assert [padded_size(b, 16) for b in (1, 2, 3, 5, 8, 9, 16)] == [1, 2, 4, 8, 8, 16, 16]
    assert padded_size(3, 3) is None, "a cache of 3 rows cannot hold a padded batch of 4: eager"
    assert padded_size(17, 16) is None


@pytest.fixture(scope="module")
def plain_and_padded(tiny_checkpoint):
    plain, padded = (load_model(tiny_checkpoint, device="cpu", dtype="fp32") for _ in range(2))
    padded.use_cuda_graphs(capture=False)
    yield plain, padded
    plain.close()
    padded.close()


@pytest.mark.parametrize("num_samples", [1, 3, 8])
def test_padded_steps_give_the_same_greedy_and_seeded_ids(plain_and_padded, num_samples):
    plain, padded = plain_and_padded
    before = padded.engine.decode.replays
    for settings in (dict(temperature=0), dict(temperature=0.9, top_k=40, seed=7)):
        expected = [s.token_ids for s in plain.generate("In a shocking finding,", max_new_tokens=16,
                                                          num_samples=num_samples, **settings)]
        got = [s.token_ids for s in padded.generate("In a shocking finding,", max_new_tokens=16,
                                                     num_samples=num_samples, **settings)]
        assert got == expected
    assert padded.engine.decode.replays > before, "the steps ran padded"


def test_a_batch_that_grows_and_shrinks_across_sizes_stays_correct(plain_and_padded):
    """Eight callers with different lengths join and leave while others run: rows move and the padded size changes."""
    plain, padded = plain_and_padded
    step = padded.engine.decode
    before, step.sizes_used = step.replays, set()
    lengths = [4, 30, 9, 22, 14, 3, 27, 18]
    expected = [plain.generate(p, max_new_tokens=n, temperature=0)[0].token_ids for p, n in zip(PROMPTS, lengths)]
    got = [None] * len(PROMPTS)

    def call(i: int) -> None:
        got[i] = padded.generate(PROMPTS[i], max_new_tokens=lengths[i], temperature=0)[0].token_ids

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(PROMPTS))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert got == expected
    assert step.replays > before and len(step.sizes_used) > 1, f"padded steps at several sizes: {step.sizes_used}"

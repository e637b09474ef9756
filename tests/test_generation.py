"""LanguageModel.generate / stream end to end on a tiny random GPT-2 with the genuine tokenizer."""

import threading
import time

import pytest
import torch
from numerics import assert_rank, assert_same_greedy_path
from ui_helpers import wait_until

from gpt2_core.generate.detokenize import visible_text
from gpt2_core.generate.settings import MAX_PROMPT_CHARS


def wait_idle(lm, timeout: float = 10.0) -> None:
    """Let samples that already ended on the caller's side (a stop string) leave the engine; fail if they do not."""
    wait_until(lambda: lm.engine.running == 0 and lm.engine.waiting == 0, timeout=timeout,
               message="the engine to have no running or waiting sample")


def force_tokens(monkeypatch, tokens) -> None:
    """Make the engine 'sample' the given tokens in order (first token at prefill, the rest in decode steps)."""
    import gpt2_core.generate.engine as engine
    from gpt2_core.generate.sampling import Distribution, Draw, ranks_of

    script = iter(tokens)

    def forced(logits, params, *args):
        chosen = [next(script) for _ in params]
        ranks = ranks_of(logits, torch.tensor(chosen)).tolist()  # (the model's own rank of each, as draw reports)
        return [Draw(token, 0.5, Distribution(torch.ones(1), torch.tensor([token])), rank)
                for token, rank in zip(chosen, ranks)]

    monkeypatch.setattr(engine, "draw", forced)


def test_generate_returns_complete_samples(lm):
    (s,) = lm.generate("Hello world", max_new_tokens=12, temperature=0.9, top_k=40, seed=5)
    assert s.finish_reason in ("length", "eos")
    assert len(s.token_ids) == len(s.token_probs)
    assert (len(s.token_ids) == 12) if s.finish_reason == "length" else (len(s.token_ids) < 12)
    assert s.text == lm.decode(s.token_ids)
    assert all(0.0 < p <= 1.0 for p in s.token_probs)
    assert s.seed == 5 and s.prompt_tokens == 2 and not s.prompt_truncated
    assert s.time_to_first_token > 0 and s.tokens_per_second > 0


def test_stream_yields_after_every_token(lm):
    updates = list(lm.stream("Once upon a time", max_new_tokens=10, temperature=0))
    lengths = [len(u[0].token_ids) for u in updates]
    assert lengths == list(range(1, 11))
    assert [u[0].finish_reason for u in updates] == [None] * 9 + ["length"]
    final = updates[-1][0].text
    assert all(final.startswith(u[0].text) for u in updates)


def test_samples_of_one_request_use_consecutive_seeds_and_match_solo_runs(lm):
    batch = lm.generate("The weather today", max_new_tokens=15, num_samples=3, seed=100, top_k=50)
    assert [s.seed for s in batch] == [100, 101, 102]
    solo = [lm.generate("The weather today", max_new_tokens=15, seed=seed, top_k=50)[0] for seed in (100, 101, 102)]
    assert [s.token_ids for s in batch] == [s.token_ids for s in solo]
    assert len({tuple(s.token_ids) for s in batch}) > 1, "different seeds should give different samples"


def test_random_seed_is_reported_and_reproduces(lm):
    (first,) = lm.generate("Hello", max_new_tokens=10, temperature=1.0, top_k=0)
    (again,) = lm.generate("Hello", max_new_tokens=10, temperature=1.0, top_k=0, seed=first.seed)
    assert again.token_ids == first.token_ids
    assert 0 <= first.seed < 10**9  # short to read off a projector, and exact in JavaScript


def test_same_seed_same_text_while_others_generate(lm):
    expected = lm.generate("Unicorns in the Andes", max_new_tokens=20, seed=42)[0].token_ids
    results: dict[int, list[int]] = {}

    def run(i: int) -> None:
        seed = 42 if i % 2 == 0 else 1000 + i
        prompt = "Unicorns in the Andes" if i % 2 == 0 else "Something else entirely " * (i + 1)
        results[i] = lm.generate(prompt, max_new_tokens=20 + i, seed=seed)[0].token_ids

    threads = [threading.Thread(target=run, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert [results[i][:20] for i in (0, 2, 4)] == [expected] * 3


def test_greedy_results_are_identical_in_a_busy_batch(lm):
    prompts = ["The cat", "A long time ago in a galaxy far away", "1, 2, 3,", "Dear diary, today"]
    alone = [lm.generate(p, max_new_tokens=25, temperature=0)[0].token_ids for p in prompts]
    together: dict[str, list[int]] = {}
    threads = [threading.Thread(target=lambda p=p: together.update({p: lm.generate(p, max_new_tokens=25,
                                                                                     temperature=0)[0].token_ids}))
               for p in prompts]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert [together[p] for p in prompts] == alone


def test_prompts_of_different_lengths_prefilled_together_give_each_ones_own_numbers(lm):
    from gpt2_core.model import KVCache

    prompts = [lm.tokenizer.encode(p) for p in ("The cat", "A long time ago in a galaxy far away", "1, 2, 3,")]
    lengths = [len(p) for p in prompts]
    T = max(lengths)
    together, alone = (KVCache(lm.config, 4, 64, device=torch.device("cpu"), dtype=torch.float32) for _ in range(2))
    padded = torch.tensor([p + [0] * (T - len(p)) for p in prompts])
    with torch.no_grad():
        logits = lm.model.prefill(padded, together, [3, 0, 1], lengths)  # into rows 3, 0 and 1
        for i, (prompt, row) in enumerate(zip(prompts, [3, 0, 1])):
            own = lm.model.prefill(torch.tensor([prompt]), alone, row)[0]
            torch.testing.assert_close(logits[i], own, atol=1e-4, rtol=0)  # fp32, the same sums in another order
            for layer in range(lm.config.n_layer):  # its keys and values, in its own row, up to its own length
                torch.testing.assert_close(together.k[layer][row, :, :lengths[i]], alone.k[layer][row, :, :lengths[i]],
                                           atol=1e-5, rtol=0)
                torch.testing.assert_close(together.v[layer][row, :, :lengths[i]], alone.v[layer][row, :, :lengths[i]],
                                           atol=1e-5, rtol=0)


PROMPTS = ["The cat", "A long time ago in a galaxy far away", "1, 2, 3,", "Dear diary, today"]


def generated_while_waiting_together(lm, monkeypatch, prompts: list[str], *, fail_start: str | None = None):
    """Greedy generations of `prompts`, the first prefilled alone and held there until the others wait together.
    Returns ({prompt: token ids, or the error it ended with}, how many prompts each prefill pass had). With
    `fail_start`, the request whose prompt ends with it fails as its samples start (after the pass)."""
    engine, model = lm.backend.engine, lm.backend.model
    sizes, release, first = [], threading.Event(), threading.Event()
    prefill, start = model.prefill, engine._start

    def counted(idx, cache, row, lengths=None):
        sizes.append(idx.size(0))
        if not first.is_set():
            first.set()
            release.wait(timeout=30)
        return prefill(idx, cache, row, lengths)

    def failing(request, at, logits):
        if fail_start and lm.tokenizer.decode(request.prompt_ids).endswith(fail_start):
            raise ValueError("this request cannot start")
        return start(request, at, logits)

    monkeypatch.setattr(model, "prefill", counted)
    monkeypatch.setattr(engine, "_start", failing)
    results: dict[str, object] = {}

    def run(p: str) -> None:
        try:
            results[p] = lm.generate(p, max_new_tokens=12, temperature=0)[0].token_ids
        except Exception as e:  # (the text layer passes the engine's error on)
            results[p] = e

    threads = [threading.Thread(target=run, args=(p,)) for p in prompts]
    threads[0].start()
    assert first.wait(timeout=30)  # the first request is being prefilled: the others wait together
    for t in threads[1:]:
        t.start()
    wait_until(lambda: engine.waiting == len(prompts) - 1, message="the other requests waiting")
    release.set()
    for t in threads:
        t.join(timeout=60)
    return results, sizes


def test_requests_that_wait_together_are_prefilled_in_one_pass_with_the_results_they_get_alone(lm, monkeypatch):
    alone = {p: lm.generate(p, max_new_tokens=12, temperature=0)[0].token_ids for p in PROMPTS}
    together, sizes = generated_while_waiting_together(lm, monkeypatch, PROMPTS)
    assert sizes == [1, 3], sizes
    assert together == alone


def test_a_request_that_fails_in_a_shared_prefill_fails_alone(lm, monkeypatch):
    alone = {p: lm.generate(p, max_new_tokens=12, temperature=0)[0].token_ids for p in PROMPTS}
    results, sizes = generated_while_waiting_together(lm, monkeypatch, PROMPTS, fail_start="galaxy far away")
    assert sizes == [1, 3], sizes
    assert "this request cannot start" in str(results.pop(PROMPTS[1]))
    # the two after it moved up into its rows and decode from their own prompts
    assert results == {p: alone[p] for p in PROMPTS if p != PROMPTS[1]}


def test_empty_prompt_samples_unconditionally_from_endoftext(lm):
    (s,) = lm.generate("", max_new_tokens=5, temperature=0)
    assert s.prompt_tokens == 1
    with torch.no_grad():
        expected_first = int(lm.model(torch.tensor([[50256]]))[0, -1].argmax())
    assert s.token_ids[0] == expected_first


def test_long_prompt_keeps_its_last_tokens_and_says_so(lm):
    prompt = " ".join(f"word{i}" for i in range(3000))  # ~ 9000 tokens
    (s,) = lm.generate(prompt, max_new_tokens=24, temperature=0)
    assert s.prompt_truncated
    assert s.prompt_tokens == 1024 - 1  # room for the first new token; the window slides for the rest
    kept = lm.prepare_prompt(prompt, room=24).ids
    assert lm.decode(kept).endswith("word2999")


@pytest.mark.parametrize("room", [0, 1, 1023])
def test_the_prompt_always_fits_the_position_table_with_room_for_a_token(lm, room):
    ids = lm.prepare_prompt("x " * 5000, room=room).ids
    assert len(ids) == 1024 - min(room, 1)


def test_huge_paste_is_capped_before_tokenizing(lm, monkeypatch):
    seen: list[int] = []
    encode = lm.tokenizer.encode
    monkeypatch.setattr(lm.tokenizer, "encode", lambda text, *a, **k: seen.append(len(text)) or encode(text, *a, **k))
    (s,) = lm.generate("a" * 10_000_000 + " the end", max_new_tokens=3)
    assert seen == [MAX_PROMPT_CHARS]
    assert s.prompt_truncated and s.prompt_tokens <= 1023


@pytest.mark.parametrize("prompt", ["🦄🦄 unicorns", "\x00\x07\x1b[31m control", "tab\tand\nnewline", "日本語のテキスト",
                                    "<script>alert(1)</script>", "   "])
def test_odd_prompts_generate(lm, prompt):
    (s,) = lm.generate(prompt, max_new_tokens=8, seed=1)
    assert s.prompt_tokens >= 1 and len(s.token_ids) >= 1
    assert s.text == lm.decode(s.token_ids)


def test_streamed_text_never_ends_inside_a_character():
    emoji_ids_text = "🦄"  # four UTF-8 bytes, split over several GPT-2 byte tokens
    partial = emoji_ids_text.encode()[:2].decode("utf-8", errors="replace")
    assert partial.endswith("\ufffd")
    assert visible_text("hi " + partial, (), final=False).text == "hi "
    assert visible_text("hi " + partial, (), final=True).text == "hi " + partial
    assert visible_text("hi 🦄", (), final=False).text == "hi 🦄"


@pytest.mark.parametrize("seed", range(3))
def test_each_tokens_text_is_its_share_of_the_shown_text_cut_or_grown_at_the_end(seed):
    """fit_pieces (every streamed token: each token's text, for the coloured tokens) against what it must give: the
    pieces cut where the shown text ends (a stop string, a held-back tail), or the last one grown by what the text
    adds (a flush), on random pieces: empty ones, emoji, whole words."""
    import random

    from gpt2_core.generate.detokenize import fit_pieces

    rng = random.Random(seed)
    for _ in range(200):
        pieces = [rng.choice(["", " the", "🦄", "a", " 日本", "\ufffd", " word"]) for _ in range(rng.randrange(0, 12))]
        joined = "".join(pieces)
        text = joined[: rng.randrange(0, len(joined) + 1)] if rng.random() < 0.7 else joined + rng.choice(["", "\ufffd"])
        out = fit_pieces(pieces, text)
        assert len(out) == len(pieces) and ("".join(out) == text or not pieces)
        ends = [len("".join(pieces[: i + 1])) for i in range(len(pieces))]
        for i, piece in enumerate(out[:-1]):  # each piece is the text's span under its own piece's, cut at the end
            assert piece == text[ends[i] - len(pieces[i]) : min(ends[i], len(text))], (pieces, text, out)


def test_streaming_an_emoji_never_shows_a_broken_character(lm, monkeypatch):
    """Force the model to 'generate' a unicorn emoji token by token and watch every streamed update."""
    wait_idle(lm)
    forced = lm.tokenizer.encode(" 🦄 and 日本")
    assert len(forced) > 3
    force_tokens(monkeypatch, forced)
    updates = [u[0].text for u in lm.stream("x", max_new_tokens=len(forced))]
    assert updates[-1] == " 🦄 and 日本"
    assert not any("\ufffd" in text for text in updates)


def test_stop_string_ends_the_sample_before_it(lm):
    (full,) = lm.generate("Stop test", max_new_tokens=30, temperature=0)
    stop = full.text[12:16]
    assert stop.strip(), full.text
    updates = list(lm.stream("Stop test", max_new_tokens=30, temperature=0, stop=[stop, "never-appears"]))
    final = updates[-1][0]
    assert final.finish_reason == "stop"
    assert final.text == full.text[: full.text.find(stop)]
    assert stop in lm.decode(final.token_ids) and stop not in lm.decode(final.token_ids[:-1])
    assert not any(stop in u[0].text for u in updates)


def test_endoftext_ends_a_sample_with_reason_eos(lm, monkeypatch):
    wait_idle(lm)
    force_tokens(monkeypatch, [262, 3797, 50256])
    (s,) = lm.generate("Hi", max_new_tokens=50)
    assert s.finish_reason == "eos"
    assert s.token_ids == [262, 3797]  # <|endoftext|> itself is not part of the text


def test_closing_the_stream_cancels_within_a_step(lm):
    stream = lm.stream("Cancel me", max_new_tokens=500, temperature=1.0)
    for _ in range(3):
        next(stream)
    stream.close()
    steps_at_cancel = lm.engine.steps
    lm.generate("after", max_new_tokens=2)  # the engine is free again and serves the next request
    assert lm.engine.steps - steps_at_cancel <= 2 + 1, "generation went on after the caller left"
    assert lm.engine.running == 0


def test_request_past_its_deadline_ends_with_timeout(lm):
    updates = list(lm.stream("slow", max_new_tokens=500, deadline_s=0.001))
    assert updates[-1][0].finish_reason == "timeout"
    assert len(updates[-1][0].token_ids) < 500


def test_next_token_probs_are_the_models_softmax(lm):
    top = lm.next_token_probs("The capital of France is", k=5)
    assert len(top) == 5
    probs = [p for _, _, p in top]
    assert probs == sorted(probs, reverse=True) and sum(probs) <= 1.0 + 1e-6
    with torch.no_grad():
        expected = lm.model(torch.tensor([lm.tokenizer.encode("The capital of France is")]))[0, -1].softmax(-1)
    for text, token_id, p in top:
        assert p == pytest.approx(float(expected[token_id]), rel=1e-5)
        assert text == lm.decode([token_id])


def test_sequence_logprob_matches_transformers_loss(lm, hf_model):
    text = "The dog barked at the mailman."
    ids = [50256] + lm.tokenizer.encode(text)
    with torch.no_grad():
        loss = hf_model(torch.tensor([ids]), labels=torch.tensor([ids])).loss  # mean over len(ids) - 1 predictions
    assert lm.sequence_logprob(text) == pytest.approx(-float(loss) * (len(ids) - 1), rel=1e-4)


@pytest.mark.heavy
def test_compiled_decode_step_gives_the_eager_results(tiny_checkpoint, lm):
    """torch.compile'd decoding (compiled.py) changes no greedy token or seeded sample, alone or beside a batch."""
    from torch._dynamo.utils import compilation_time_metrics, counters

    from gpt2_core import load_model

    before = counters["stats"]["unique_graphs"]
    retraces = len(compilation_time_metrics.get("compile_attempt_1", []))
    fast = load_model(tiny_checkpoint, device="cpu", dtype="fp32", compile=True)
    assert fast.engine.decoding == "compiled", "compilation failed on this machine (see the log)"
    compiled_graphs = counters["stats"]["unique_graphs"]
    # one compile for every lone step: other lengths and a bigger cache (the warm-up tries both) reuse its graph
    assert compiled_graphs - before == 1, f"the warm-up compiled {compiled_graphs - before} graphs"
    # traced once: a model float left symbolic (nn.Embedding's norm_type) made Dynamo trace the step a second time
    assert len(compilation_time_metrics.get("compile_attempt_1", [])) == retraces, "Dynamo traced the step twice"
    prompt_ids = lm.tokenizer.encode("Compiled or not,")
    greedy = fast.generate("Compiled or not,", max_new_tokens=40, temperature=0)[0].token_ids
    expected = lm.generate("Compiled or not,", max_new_tokens=40, temperature=0)[0].token_ids
    eager_logits = lambda prefix: lm.model(torch.tensor([prompt_ids + prefix]))[0, -1]  # noqa: E731
    assert assert_same_greedy_path(greedy, expected, eager_logits) >= 10  # Inductor's kernels sum in another order
    # A seeded draw compares uniform numbers with cumulative probabilities: a 1e-6 difference in them changes a
    # token about once in a million draws, so the same seed gives the same tokens (and 40 draws here)
    expected = lm.generate("Compiled or not,", max_new_tokens=40, seed=11, top_k=40, temperature=0.9)[0].token_ids
    assert fast.generate("Compiled or not,", max_new_tokens=40, seed=11, top_k=40, temperature=0.9)[0].token_ids \
        == expected
    batch = [s.token_ids for s in fast.generate("Three at once", max_new_tokens=30, num_samples=3, seed=5)]
    assert batch == [s.token_ids for s in lm.generate("Three at once", max_new_tokens=30, num_samples=3, seed=5)]
    assert fast.generate("alone again", max_new_tokens=5)[0].token_ids  # one sequence after a batch (a bigger cache)
    assert counters["stats"]["unique_graphs"] == compiled_graphs, "recompiled while serving (a stall for everyone)"
    fast.close()


def test_closing_the_model_ends_running_and_waiting_requests_with_an_error(tiny_checkpoint):
    from gpt2_core import load_model

    lm = load_model(tiny_checkpoint, device="cpu", dtype="fp32", max_batch=1)
    running = lm.stream("first", max_new_tokens=500)
    next(running)  # admitted: the batch (of one) is full now
    waiting = lm.stream("second", max_new_tokens=5)
    errors: list[BaseException] = []
    waiter = threading.Thread(target=lambda: errors.extend(_drain_error(waiting)))
    waiter.start()
    wait_until(lambda: lm.engine.waiting == 1, message="the second request to wait for the only row")
    lm.close()
    waiter.join(timeout=10)
    assert not waiter.is_alive(), "a waiting request was left hanging when the model closed"
    assert len(errors) == 1 and "the model was unloaded" in str(errors[0])
    with pytest.raises(RuntimeError, match="the model was unloaded"):
        list(running)
    # asked after the close: one error, whatever is asked (an explanation asserted; scoring ran on)
    for use in (lambda: lm.generate("third", max_new_tokens=5), lambda: lm.next_token_probs("third"),
                lambda: lm.next_token_distribution("third"), lambda: lm.score_text("third"),
                lambda: lm.sequence_logprob("third"), lambda: lm.attention("third"), lambda: lm.logit_lens("third")):
        with pytest.raises(RuntimeError, match=r"the model .* is closed: load it again \(load_model\) to use it"):
            use()
    assert lm.closed


def _drain_error(stream) -> list[BaseException]:
    try:
        list(stream)
    except RuntimeError as e:
        return [e]
    return []


@pytest.mark.heavy
def test_background_compile_swaps_in_while_requests_run(tiny_checkpoint, lm):
    from gpt2_core import load_model

    fast = load_model(tiny_checkpoint, device="cpu", dtype="fp32")
    compiling = fast.compile(background=True)
    during = fast.generate("While compiling,", max_new_tokens=30, temperature=0)[0].token_ids  # eager meanwhile
    compiling.join(timeout=300)
    assert fast.engine.decoding == "compiled"
    after = fast.generate("While compiling,", max_new_tokens=30, temperature=0)[0].token_ids
    assert during == after == lm.generate("While compiling,", max_new_tokens=30, temperature=0)[0].token_ids
    fast.close()


def test_a_checkpoints_short_context_limits_the_prompt_not_the_new_tokens(tmp_path, hf_model):
    from conftest import random_hf_model, save_layout

    from gpt2_core import load_model

    short = load_model(save_layout(random_hf_model(n_positions=64), tmp_path / "short", "hub"), device="cpu", dtype="fp32")
    (s,) = short.generate("word " * 100, max_new_tokens=100, temperature=0)
    assert s.prompt_truncated and s.prompt_tokens == 63 and len(s.token_ids) == 100
    with pytest.raises(ValueError, match=r"`max_new_tokens` has to be an integer in \[1, 1023\], but is 1024"):
        short.generate("Hello", max_new_tokens=1024)
    short.close()


def test_a_row_that_cannot_be_sampled_ends_only_its_own_request(lm, monkeypatch):
    import gpt2_core.generate.engine as engine

    real = engine.draw

    def broken(logits, params, generators, histories=None):
        if any(p.temperature == 1.7 for p in params):  # a batch with the victim's rows, or one of them alone
            raise RuntimeError("probability tensor contains either inf, nan or element < 0")
        return real(logits, params, generators, histories)

    survivor = lm.stream("I keep going", max_new_tokens=30, seed=3)
    next(survivor)
    monkeypatch.setattr(engine, "draw", broken)
    with pytest.raises(RuntimeError, match="inf, nan"):
        lm.generate("I break", max_new_tokens=30, temperature=1.7, num_samples=2)
    final = list(survivor)[-1][0]
    assert final.finish_reason == "length" and len(final.token_ids) == 30


def test_a_waiting_request_that_is_cancelled_is_answered_at_once(tiny_checkpoint):
    from gpt2_core import load_model
    from gpt2_core.generate.engine import Request
    from gpt2_core.generate.settings import SamplingParams

    lm = load_model(tiny_checkpoint, device="cpu", dtype="fp32", max_batch=1)
    running = lm.stream("I hold the only row", max_new_tokens=1000)
    next(running)
    waiting = lm.engine.submit(Request([50256], SamplingParams(), [1], 5, deadline=time.monotonic() + 60))
    waiting.cancel()
    events = waiting.events.get(timeout=10)  # while the other request still runs
    assert [e.finish_reason for e in events] == ["cancelled"] and lm.engine.running == 1
    running.close()
    lm.close()


def test_context_meter_on_a_short_checkpoint_reads_the_prompt_and_refuses_only_out_of_range(tmp_path):
    from conftest import random_hf_model, save_layout

    from gpt2_core import load_model

    short = load_model(save_layout(random_hf_model(n_positions=64), tmp_path / "short", "hub"), device="cpu", dtype="fp32")
    assert short.prepare_prompt("Hello", room=150).ids == short.tokenizer.encode("Hello")  # the slider at 150
    with pytest.raises(ValueError, match=r"`max_new_tokens` has to be an integer in \[0, 1023\], but is 5000"):
        short.prepare_prompt("Hello", room=5000)
    short.close()


@pytest.fixture(scope="module")
def short_context(tmp_path_factory):
    """A GPT-2 with a 32-token context: past it in a few steps."""
    from conftest import random_hf_model, save_layout

    from gpt2_core import load_model

    lm = load_model(save_layout(random_hf_model(seed=4, n_positions=32), tmp_path_factory.mktemp("ctx32"), "hub"),
                    device="cpu", dtype="fp32")
    yield lm
    lm.close()


def test_a_short_context_model_writes_past_it_each_token_drawn_from_the_window_it_saw(short_context):
    """Asked for 3x its context, the model writes all of it: when the window is full, it keeps its last half-context
    (the prompt's beginning leaves first), and each reported probability is the one that window gave."""
    lm = short_context
    prompt = "The first words of a prompt that the window will lose"
    (s,) = lm.generate(prompt, max_new_tokens=96, temperature=0)
    assert len(s.token_ids) == 96 and s.finish_reason == "length" and not s.prompt_truncated
    view = lm.tokenizer.encode(prompt)  # the reference: crop the view as the engine does, one full forward a step
    for i, (token, prob) in enumerate(zip(s.token_ids, s.token_probs)):
        if len(view) > 32:
            view = view[-(32 // 2 + 1):]
        with torch.no_grad():
            logits = lm.model(torch.tensor([view]))[0, -1]
        assert_rank(1, logits, token)  # greedy: the likeliest in this window, up to near-ties
        assert prob == pytest.approx(float(logits.softmax(-1)[token]), abs=1e-4), f"token {i}"
        view.append(token)


def test_a_prompt_is_not_trimmed_for_the_new_tokens_it_asks_for(short_context):
    prompt_ids = short_context.prepare_prompt("ROMEO. What say you, my lord?", room=31).ids
    assert short_context.tokenizer.decode(prompt_ids) == "ROMEO. What say you, my lord?"
    (s,) = short_context.generate("ROMEO. What say you, my lord?", max_new_tokens=31, temperature=0)
    assert s.prompt_tokens == len(prompt_ids) and not s.prompt_truncated and len(s.token_ids) == 31


def test_the_unicorn_example_writes_all_its_tokens_on_the_bundled_model():
    """The offline classroom's first click: OpenAI's prompt with the example's settings on the 128-token mini-gpt2."""
    from demo.examples import load_examples
    from gpt2_core import load_model
    from gpt2_core.checkpoint import BUNDLED

    unicorn = load_examples().unicorn
    mini = load_model(BUNDLED["mini-gpt2"], device="cpu", dtype="fp32")
    try:
        assert unicorn.settings.max_new_tokens > mini.context_length
        (s,) = mini.generate(unicorn.prompt, **vars(unicorn.settings))
        assert len(s.token_ids) == unicorn.settings.max_new_tokens or s.finish_reason == "eos"
        assert len(s.token_ids) > mini.context_length and s.prompt_tokens == len(mini.tokenizer.encode(unicorn.prompt))
    finally:
        mini.close()

"""The remote backend's client, offline: every answer here was recorded from a real vLLM 0.32 server on the bundled
mini-gpt2 (tests/vllm/record.py), and replayed; failures are made with httpx's transports. The same checkpoint runs
locally beside it, so "the same answers" is checked against gpt2_core's own engine.
The live server suite is tests/test_vllm.py (opt-in: `bash tests/vllm/run`)."""

from __future__ import annotations

import asyncio
import math
import threading
import time
from pathlib import Path

import httpx
import pytest
import torch
from numerics import assert_rank, assert_ranks, assert_same_greedy_path, assert_top_ids
from ui_helpers import wait_until

from gpt2_core import load_model
from gpt2_core.backend import ATTENTION, FeatureUnavailableError
from gpt2_core.checkpoint import BUNDLED
from gpt2_core.explain.distribution import reported_sampling_probs
from gpt2_core.generate.settings import SamplingParams
from gpt2_core.remote import (
    BackendAuthError,
    BackendRequestError,
    BackendUnavailableError,
    CompletionsClient,
    RemoteModel,
)
from gpt2_core.testing.recorded import ReplayTransport
from tests.vllm.record import PROMPT, SCORED

RECORDED = Path(__file__).parent / "data" / "vllm-mini-gpt2.jsonl"
URL = "http://vllm.test:8000"
TOLERANCE = 1e-3  # log-probabilities, fp32 on both sides (the server's kernels and this CPU's differ)


@pytest.fixture(scope="module")
def local():
    lm = load_model(BUNDLED["mini-gpt2"], device="cpu", dtype="fp32")
    yield lm
    lm.close()


def local_logits(local, ids: list[int]) -> torch.Tensor:
    """The local engine's logits at every position of `ids` (T, vocab): what recorded answers are checked against."""
    with torch.no_grad():
        return local.model(torch.tensor([ids]))[0].float()


def greedy_prefix(local, theirs, ours, prompt_ids: list[int]) -> int:
    """How many greedy ids the server and the local engine share: all, unless they parted at a near-tie."""
    return assert_same_greedy_path(theirs.token_ids, ours.token_ids,
                                   lambda prefix: local_logits(local, prompt_ids + prefix)[-1])


def replaying() -> tuple[RemoteModel, ReplayTransport]:
    transport = ReplayTransport.load(RECORDED)
    return RemoteModel(URL, client=CompletionsClient(URL, transport=transport)), transport


def test_connect_reads_the_servers_model_context_and_tokenizer(local):
    remote, transport = replaying()
    description = remote.describe()
    assert description.context is None and transport.requests == []  # nothing asked before the first use
    remote.connect()
    assert remote.name == "mini-gpt2" and remote.context_length == 128 == local.context_length
    assert remote.eos_token_id == local.eos_token_id
    assert remote.tokenizer.encode(PROMPT) == local.tokenizer.encode(PROMPT)
    description = remote.describe()
    assert description.remote and description.where == f"the model server at {URL}"
    assert description.parameters == local.num_parameters()
    assert description.memory_bytes is None and description.precision is None  # the server does not say
    assert ATTENTION in description.unavailable
    assert remote.backend.max_alternatives == description.max_alternatives == 20  # the limit its refusal of 100 named


def test_a_server_that_allows_more_logprobs_reports_more():
    replay = ReplayTransport.load(RECORDED)

    def handle(request: httpx.Request) -> httpx.Response:
        if b'"logprobs": 100' in request.content or b'"logprobs":100' in request.content:
            return httpx.Response(200, json={"choices": [{"index": 0, "text": "", "logprobs": None}]})
        return replay.handle_request(request)

    remote = RemoteModel(URL, client=CompletionsClient(URL, transport=httpx.MockTransport(handle))).connect()
    assert remote.backend.max_alternatives == 100
    assert remote.backend._stream_logprobs(SamplingParams(top_k=40)) == 40  # "after your settings" known for top-k 40
    assert remote.backend._stream_logprobs(SamplingParams(top_k=0)) == 20


def test_greedy_equals_the_local_engine(local):
    remote, _ = replaying()
    (theirs,) = remote.generate(PROMPT, max_new_tokens=24, temperature=0, seed=1, alternatives=5)
    (ours,) = local.generate(PROMPT, max_new_tokens=24, temperature=0, seed=1, alternatives=5)
    prompt_ids = local.prepare_prompt(PROMPT, room=24).ids
    n = greedy_prefix(local, theirs, ours, prompt_ids)
    assert n >= 12 and len(ours.token_ids) == len(theirs.token_ids) == 24 and theirs.finish_reason == "length"
    if n == 24:
        assert theirs.text == ours.text and theirs.token_texts == ours.token_texts
    for p, q in zip(theirs.token_probs[:n], ours.token_probs[:n]):
        assert abs(math.log(p) - math.log(q)) < TOLERANCE
    rows = local_logits(local, prompt_ids + ours.token_ids)[len(prompt_ids) - 1 : len(prompt_ids) - 1 + n]
    assert_ranks(theirs.token_ranks[:n], rows, theirs.token_ids[:n])
    for a, b, row in zip(theirs.alternatives, ours.alternatives, rows):
        assert_top_ids([c.token_id for c in a], row)
        ours_by_id = {d.token_id: d for d in b}
        for c in a:
            if c.token_id in ours_by_id:
                d = ours_by_id[c.token_id]
                assert abs(c.prob - d.prob) < TOLERANCE and c.sampling_prob == d.sampling_prob  # greedy: 1 and 0s


def test_sample_i_is_seeded_with_seed_plus_i_and_ranks_are_completed():
    remote, transport = replaying()
    samples = remote.generate(PROMPT, max_new_tokens=16, temperature=0.9, top_k=0, seed=11, num_samples=2,
                              alternatives=3)
    streamed = [r["body"] for r in transport.requests if r["body"] and r["body"].get("stream")]
    assert sorted(b["seed"] for b in streamed) == [11, 12]
    assert all(b["model"] == "mini-gpt2" and b["logprobs"] == 20 and b["return_tokens_as_token_ids"]
               for b in streamed)
    assert [s.seed for s in samples] == [11, 12]
    (alone,) = remote.generate(PROMPT, max_new_tokens=16, temperature=0.9, top_k=0, seed=12)
    assert alone.token_ids == samples[1].token_ids
    # Some drawn tokens were beyond the server's top 20 (temperature 0.9, no top-k): their ranks came afterwards
    # from one scoring request, so that every rank is known at the end.
    assert all(None not in s.token_ranks and len(s.token_ranks) == len(s.token_ids) for s in samples)
    assert any(r > 20 for s in samples for r in s.token_ranks)
    scoring = [r["body"] for r in transport.requests if r["body"] and "prompt_logprobs" in r["body"]]
    assert scoring and all(b["prompt_logprobs"] == 0 for b in scoring)


def test_ranks_filled_afterwards_equal_the_local_ranks(local):
    remote, _ = replaying()
    samples = remote.generate(PROMPT, max_new_tokens=16, temperature=0.9, top_k=0, seed=11, num_samples=2)
    for sample in samples:
        ids = local.prepare_prompt(PROMPT, room=16).ids + sample.token_ids
        rows = local_logits(local, ids)[-len(sample.token_ids) - 1 : -1]
        assert_ranks(sample.token_ranks, rows, sample.token_ids)  # up to near-ties in the vocabulary's long tail


def test_a_stop_string_ends_the_sample_as_locally(local):
    remote, _ = replaying()
    (theirs,) = remote.generate(PROMPT, max_new_tokens=40, temperature=0, seed=1, stop=["\n\n"])
    (ours,) = local.generate(PROMPT, max_new_tokens=40, temperature=0, seed=1, stop=["\n\n"])
    assert theirs.finish_reason == ours.finish_reason == "stop"
    prompt_ids = local.prepare_prompt(PROMPT, room=40).ids
    assert greedy_prefix(local, theirs, ours, prompt_ids) == len(ours.token_ids), "parted at a near-tie: pick a prompt"
    assert theirs.text == ours.text and "\n\n" not in theirs.text


def test_next_token_distribution_equals_the_local_one(local):
    remote, transport = replaying()
    theirs = remote.next_token_distribution(PROMPT, temperature=0.8, top_k=10, k=12)
    ours = local.next_token_distribution(PROMPT, temperature=0.8, top_k=10, k=12)
    row = local_logits(local, local.prepare_prompt(PROMPT, room=1).ids)[-1]
    assert_top_ids([c.token_id for c in theirs], row)  # the same order up to near-ties
    ours_by_id = {c.token_id: c for c in ours}
    for a in theirs:
        if a.token_id in ours_by_id:  # a near-tie at the 12th place may list another token there
            b = ours_by_id[a.token_id]
            assert abs(a.prob - b.prob) < TOLERANCE and abs(a.sampling_prob - b.sampling_prob) < TOLERANCE
    assert sum(c.sampling_prob == 0 for c in theirs) == 2  # top-k 10 of 12 shown
    sent = len(transport.requests)
    # Other settings redraw from the cached answer: no second request
    again = remote.next_token_distribution(PROMPT, temperature=1.0, top_k=0, k=5)
    assert len(transport.requests) == sent
    assert [c.prob for c in again] == [c.prob for c in theirs[:5]]
    for c in again:  # temperature 1, nothing cut: the model's own, renormalised over the vocabulary
        assert c.sampling_prob == pytest.approx(c.prob, rel=1e-5)


def test_scoring_equals_the_local_scores(local):
    remote, _ = replaying()
    theirs, ours = remote.score_text(SCORED, top=8), local.score_text(SCORED, top=8)
    assert [(s.text, s.start, s.end, s.token_id) for s in theirs] == [(s.text, s.start, s.end, s.token_id) for s in ours]
    ids = [s.token_id for s in ours]
    rows = local_logits(local, [local.eos_token_id, *ids])[:-1]  # the first token is conditioned on <|endoftext|>
    for a, b, row in zip(theirs, ours, rows):
        assert abs(math.log(a.prob) - math.log(b.prob)) < TOLERANCE
        assert_rank(a.rank, row, a.token_id)
        assert_top_ids([x[1] for x in a.alternatives], row)
    assert abs(remote.sequence_logprob("To be, or not to be") - local.sequence_logprob("To be, or not to be")) < 1e-3


def test_what_the_server_cannot_do_says_why():
    remote, _ = replaying()
    with pytest.raises(FeatureUnavailableError, match="model server reports only tokens"):
        remote.attention("Hello")
    with pytest.raises(ValueError, match=r"`text` has to be at most 126 tokens"):
        remote.score_text("word " * 300)
    with pytest.raises(BackendRequestError, match="maximum context length is 128 tokens"):  # the real 400 answer
        remote.backend._client.complete(model="mini-gpt2", prompt=[0] * 200, max_tokens=1)


# ---- the sampling probabilities that the reported top tokens decide -----------------------------------------------

@pytest.mark.parametrize("params, known", [
    (SamplingParams(temperature=0.0), True),
    (SamplingParams(temperature=0.7, top_k=5), True),
    (SamplingParams(temperature=1.3, top_k=20, top_p=0.8), True),
    (SamplingParams(temperature=1.0, top_k=0, top_p=0.3), True),  # the nucleus ends within the reported tokens
    (SamplingParams(temperature=1.0, top_k=0, top_p=0.999), False),  # it goes on past them
    (SamplingParams(temperature=1.0, top_k=0), True),
    (SamplingParams(temperature=0.7, top_k=0), False),  # needs the whole vocabulary's normaliser
    (SamplingParams(temperature=1.0, top_k=40), False),
    (SamplingParams(temperature=1.0, top_k=5, repetition_penalty=1.2), False),
])
def test_sampling_probs_from_the_reported_tokens_are_exact_or_none(params, known):
    from gpt2_core.generate.sampling import logits_to_probs

    logits = torch.randn(500, generator=torch.Generator().manual_seed(3)) * 3
    logprobs = logits.log_softmax(-1)
    top = torch.topk(logprobs, 20)
    reported = [(int(i), float(lp)) for lp, i in zip(top.values, top.indices)]
    got = reported_sampling_probs(reported, params)
    if not known:
        assert got == [None] * 20
        return
    expected = logits_to_probs(logits[None], [params])[0].over_vocabulary(500)[top.indices]
    assert torch.allclose(torch.tensor(got, dtype=torch.float32), expected, atol=1e-5)


# ---- failures ---------------------------------------------------------------------------------------------------

def counting(handler):
    calls = []

    def handle(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return handler(request)

    return httpx.MockTransport(handle), calls


def refuse(request):
    raise httpx.ConnectError("[Errno 111] Connection refused", request=request)


def test_a_server_that_cannot_be_reached_gives_a_clear_message_and_safe_requests_are_retried_once():
    transport, calls = counting(refuse)
    client = CompletionsClient(URL, transport=transport)
    with pytest.raises(BackendUnavailableError, match=r"model server at http://vllm.test:8000 cannot be reached"):
        client.complete(model="mini-gpt2", prompt=[1], max_tokens=1)
    assert len(calls) == 2
    calls.clear()

    async def read():
        async for _ in client.stream(model="mini-gpt2", prompt=[1]):
            pass

    with pytest.raises(BackendUnavailableError, match="cannot be reached"):
        client.start(read()).result()
    assert len(calls) == 1  # a stream is never sent twice


def test_a_slow_server_times_out_with_a_clear_message():
    def slow(request):
        raise httpx.ReadTimeout("timed out", request=request)

    transport, _ = counting(slow)
    with pytest.raises(BackendUnavailableError, match="did not answer in time"):
        CompletionsClient(URL, transport=transport).models()


def recorded_stream_lines() -> tuple[dict, list[bytes]]:
    exchange = next(e for e in ReplayTransport.load(RECORDED).answers.values()
                    if e["body"] and e["body"].get("stream") and e["body"]["max_tokens"] == 24)
    return exchange, [line.encode() + b"\n" for line in exchange["text"].split("\n")]


class Chunks(httpx.AsyncByteStream):
    """A recorded stream's lines, sent slowly, then (optionally) a dropped connection; notes when it is closed."""

    def __init__(self, lines: list[bytes], *, delay: float = 0.0, fail_after: int | None = None):
        self.lines, self.delay, self.fail_after = lines, delay, fail_after
        self.closed = threading.Event()

    async def __aiter__(self):
        for i, line in enumerate(self.lines):
            if self.closed.is_set():
                raise httpx.ReadError("the connection was closed")  # as a real socket read does
            if self.fail_after is not None and i == self.fail_after:
                raise httpx.RemoteProtocolError("peer closed connection without sending complete message body")
            await asyncio.sleep(self.delay)
            yield line

    async def aclose(self) -> None:
        self.closed.set()


def streaming_model(lines: list[bytes], **options) -> tuple[RemoteModel, list[Chunks]]:
    """A model whose server streams `lines` (as Chunks(lines, **options)) to every generation request; the streams
    it opened, in order."""
    replay = ReplayTransport.load(RECORDED)
    streams = []

    def handle(request: httpx.Request) -> httpx.Response:
        if b'"stream": true' in request.content or b'"stream":true' in request.content:
            streams.append(Chunks(lines, **options))
            return httpx.Response(200, headers={"content-type": "text/event-stream"}, stream=streams[-1])
        return replay.handle_request(request)

    return RemoteModel(URL, client=CompletionsClient(URL, transport=httpx.MockTransport(handle))), streams


def test_a_server_gone_mid_stream_keeps_the_text_so_far_and_says_so():
    _, lines = recorded_stream_lines()
    remote, _ = streaming_model(lines, fail_after=12)
    seen = []
    with pytest.raises(BackendUnavailableError, match="stopped answering in the middle of the text"):
        for update in remote.stream(PROMPT, max_new_tokens=24, temperature=0, seed=1):
            seen.append(update[0].text)
    assert seen and seen[-1]  # the tokens that came are what the caller already has


def test_stop_closes_the_stream_and_the_deadline_ends_it():
    _, lines = recorded_stream_lines()
    remote, streams = streaming_model(lines, delay=0.05)
    updates = remote.stream(PROMPT, max_new_tokens=24, temperature=0, seed=1)
    next(updates), next(updates)
    updates.close()  # what Stop does (Gradio closes the generator)
    assert streams[0].closed.wait(2.0), "closing the generator must close the connection (vLLM then aborts)"
    wait_until(lambda: not asyncio.all_tasks(remote.backend._client.loop), timeout=5,
               message="the reading task to end")  # cancelled: this side's doing, not the server's
    assert remote.problem is None

    slow, streams = streaming_model(lines, delay=0.2)
    (sample,) = slow.generate(PROMPT, max_new_tokens=24, temperature=0, seed=1, deadline_s=0.7)
    assert sample.finish_reason == "timeout" and 0 < len(sample.token_ids) < 24
    assert streams[0].closed.wait(2.0)


def test_concurrent_generations_need_no_thread_each_and_cancelling_ends_them_at_once():
    _, lines = recorded_stream_lines()
    remote, streams = streaming_model(lines, delay=0.05)  # 24 tokens: about 1.3 s a text
    remote.connect()
    threads = threading.active_count()
    generations = [remote.stream(PROMPT, max_new_tokens=24, temperature=0, seed=1, num_samples=2) for _ in range(3)]
    for updates in generations:
        next(updates)
    wait_until(lambda: len(streams) == 6, timeout=5, message="every sample's stream to open")
    assert threading.active_count() <= threads  # six streams on the client's one loop: no thread or timer each
    start = time.monotonic()
    for updates in generations:
        updates.close()  # Stop
    assert all(stream.closed.wait(1.0) for stream in streams)
    assert time.monotonic() - start < 0.5, "each stream closes when cancelled, not when its text is over"
    wait_until(lambda: not asyncio.all_tasks(remote.backend._client.loop), timeout=5, message="the reading tasks to end")
    assert threading.active_count() <= threads and remote.problem is None


def test_panel_reports_a_down_server_and_clears_when_it_is_back(monkeypatch):
    from demo.config import AppConfig
    from demo.model_panel import info_markdown, unavailable_markdown
    from demo.models import start_models
    from gpt2_core.remote import model as remote_model

    monkeypatch.setattr(remote_model, "PROBE_EVERY_S", 0.0)
    replay = ReplayTransport.load(RECORDED)
    up = threading.Event()

    def handle(request):
        return replay.handle_request(request) if up.is_set() else refuse(request)

    config = AppConfig(backend=URL)
    models = start_models(config, remote=lambda url, name: RemoteModel(
        url, name, client=CompletionsClient(url, transport=httpx.MockTransport(handle))))
    try:
        lm = models.gpt2.current
        with pytest.raises(BackendUnavailableError):
            lm.connect()
        assert "model server cannot be used right now" in unavailable_markdown(models)
        assert "cannot be reached" in unavailable_markdown(models)
        up.set()
        assert unavailable_markdown(models) == ""  # the panel's next refresh asks again, and the server answers
        lm.connect()
        info = info_markdown(models)
        assert "`mini-gpt2`" in info and f"runs on** the model server at {URL}" in info and "128 tokens" in info
    finally:
        models.close()


def test_a_finished_generation_leaves_no_thread_or_task_behind():
    remote, _ = replaying()
    remote.connect()
    threads = set(threading.enumerate())
    remote.generate(PROMPT, max_new_tokens=16, temperature=0.9, top_k=0, seed=11, num_samples=2)
    assert set(threading.enumerate()) <= threads  # no reading thread, no deadline timer
    wait_until(lambda: not asyncio.all_tasks(remote.backend._client.loop), timeout=5, message="the reading tasks to end")


def test_a_deadline_before_the_server_answers_ends_the_text_at_once():
    async def stalled(request):  # a server busy with others: no headers yet
        await asyncio.sleep(1.5)
        return httpx.Response(503, json={"error": {"message": "busy"}})

    replay = ReplayTransport.load(RECORDED)

    async def handle(request):
        return await stalled(request) if b'"stream"' in request.content else replay.handle_request(request)

    remote = RemoteModel(URL, client=CompletionsClient(URL, transport=httpx.MockTransport(handle)))
    start = time.monotonic()
    (sample,) = remote.generate(PROMPT, max_new_tokens=24, temperature=0, seed=1, deadline_s=0.2)
    assert sample.finish_reason == "timeout" and sample.token_ids == []
    assert time.monotonic() - start < 1.2  # the caller was told at the deadline, not when the server answered


def test_a_stream_that_is_not_json_gives_a_clear_message():
    _, lines = recorded_stream_lines()
    broken = lines[:4] + [b'data: {"choices": [{"index": 0, "te\n', b"\n"]
    remote, _ = streaming_model(broken)
    with pytest.raises(BackendUnavailableError, match="sent something that is not JSON"):
        remote.generate(PROMPT, max_new_tokens=24, temperature=0, seed=1)


def test_a_wrong_key_says_how_to_set_it_and_is_not_retried():
    def unauthorized(request):
        return httpx.Response(401, json={"error": "Unauthorized"})

    transport, calls = counting(unauthorized)
    remote = RemoteModel(URL, client=CompletionsClient(URL, transport=transport))
    with pytest.raises(BackendAuthError, match="GPT2_BACKEND_API_KEY"):
        remote.connect()
    assert len(calls) == 1 and "GPT2_BACKEND_API_KEY" in remote.describe().problem
    with pytest.raises(BackendAuthError):  # again at once, from the recorded failure: no second request yet
        remote.generate(PROMPT, max_new_tokens=4)
    assert len(calls) == 1

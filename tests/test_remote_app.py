"""The app in remote mode (--backend), offline: the GPT-2 server's answers are replayed from a recording of a real
vLLM (tests/data/vllm-mini-gpt2.jsonl), so the whole page path runs: API endpoints, tabs that say why they are
unavailable, and the model panel."""

from __future__ import annotations

import httpx
import pytest
from gradio_client import Client
from test_browser import browser  # noqa: F401 (fixture)
from test_remote import RECORDED, URL
from ui_helpers import launched_app

from demo.config import AppConfig
from gpt2_core import load_model
from gpt2_core.checkpoint import BUNDLED
from gpt2_core.remote import CompletionsClient, RemoteModel
from gpt2_core.testing.recorded import ReplayTransport
from tests.vllm.record import PROMPT

pytest_plugins = ["fixtures_ui"]


@pytest.fixture(scope="module")
def remote_app(tiny_bert):
    transport = ReplayTransport.load(RECORDED)

    def remote(url, name):
        return RemoteModel(url, name, client=CompletionsClient(url, transport=transport))

    with launched_app("mini-gpt2", tiny_bert, backend=URL, remote=remote) as running:
        running.transport = transport
        yield running


@pytest.fixture(scope="module")
def client(remote_app):
    return Client(remote_app.url, verbose=False)


def test_generate_runs_on_the_server(client, remote_app):
    texts = client.predict(PROMPT, 24, 0, 40, 1.0, 1.0, 1, 1, api_name="/generate")
    sent = [r["body"] for r in remote_app.transport.requests if r["body"] and r["body"].get("stream")]
    assert sent and sent[-1]["seed"] == 1 and sent[-1]["max_tokens"] == 24 and sent[-1]["model"] == "mini-gpt2"
    local = load_model(BUNDLED["mini-gpt2"], device="cpu", dtype="fp32")  # the checkpoint the server ran
    (ours,) = local.generate(PROMPT, max_new_tokens=24, temperature=0, seed=1)
    local.close()
    assert texts[0] == ours.text and texts[0]
    assert "`mini-gpt2`" in texts[4] and "of 128" in texts[5]  # stats name the model; the server's context


def test_scoring_runs_on_the_server(client):
    from tests.vllm.record import SCORED

    segments = client.predict(SCORED, api_name="/score")[0]
    assert "".join(s["token"] for s in segments) == SCORED


@pytest.mark.parametrize("api, args", [("/attention", ("Hello there", 1, 1)), ("/layers", ("Hello there", "")),
                                       ("/scale", ("Hello", 1))])
def test_what_needs_a_local_model_says_why(client, api, args):
    with pytest.raises(Exception, match="not available with this model server") as refused:
        client.predict(*args, api_name=api)
    assert "Start the app without --backend" in str(refused.value)


def test_the_page_has_no_model_picker_and_names_the_server(remote_app):
    from demo.model_panel import info_markdown

    assert remote_app.models.choices == []  # nothing to switch to: the server serves one model
    remote_app.models.gpt2.current.connect()
    info = info_markdown(remote_app.models)
    assert f"runs on** the model server at {URL}" in info and "**precision**" not in info


def test_backend_flag_and_variable(capsys):
    config = AppConfig.from_env_and_args(["--backend", "http://gpu-box:8000/", "--model", "gpt2"], {})
    assert config.backend == "http://gpu-box:8000" and config.model == "gpt2"
    assert AppConfig.from_env_and_args([], {"GPT2_BACKEND": "https://vllm.example"}).backend == "https://vllm.example"
    assert AppConfig.from_env_and_args([], {}).backend is None and AppConfig().source == "gpt2"
    with pytest.raises(SystemExit):
        AppConfig.from_env_and_args(["--backend", "gpu-box:8000"], {})
    assert "`backend` has to be a URL starting with http:// or https://" in capsys.readouterr().err


def test_the_servers_key_comes_from_the_environment_only_and_is_sent():
    config = AppConfig.from_env_and_args(["--backend", "https://vllm.example"], {"GPT2_BACKEND_API_KEY": "s3cret"})
    assert config.backend_api_key == "s3cret" and "s3cret" not in repr(config)
    seen = []

    def handle(request):
        seen.append(request.headers.get("authorization"))
        return httpx.Response(200, json={"data": []})

    CompletionsClient(config.backend, api_key=config.backend_api_key, transport=httpx.MockTransport(handle)).models()
    assert seen == ["Bearer s3cret"]


def test_a_public_page_does_not_tell_visitors_where_the_server_is():
    from demo.models import start_models

    def refuse(request):
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    seen = {}

    def remote(url, name, **options):
        seen.update(options)
        return RemoteModel(url, name, client=CompletionsClient(url, transport=httpx.MockTransport(refuse), **options))

    models = start_models(AppConfig(backend="http://10.0.0.7:8000", host="0.0.0.0"), remote=remote)
    try:
        with pytest.raises(Exception, match="the model server cannot be reached") as refused:
            models.gpt2.current.connect()
        assert "10.0.0.7" not in str(refused.value) and seen == {"show_address": False}
        assert "10.0.0.7" not in models.gpt2.current.describe().where
    finally:
        models.close()


@pytest.mark.smoke
@pytest.mark.browser
def test_the_layers_and_inside_tabs_say_on_the_page_why_they_are_unavailable(remote_app, browser):  # noqa: F811
    """In remote mode the Layers tab shows, in place of its grid, that the lens needs every layer's hidden state and
    a model server reports only the last layer's tokens; Inside says the same of attention; in Spanish on a Spanish
    page."""
    from demo.i18n import tables
    from gpt2_core.backend import ATTENTION, LENS
    from gpt2_core.remote.model import REMOTE_UNAVAILABLE as UNAVAILABLE

    for query, table in (("", {}), ("?lang=es", tables()["es"])):
        page = browser.new_context(viewport={"width": 1280, "height": 720}).new_page()
        try:
            page.goto(remote_app.url + query)
            page.get_by_role("tab", name=table.get("Layers", "Layers")).click()
            shown = page.locator("#layers-unavailable")
            shown.wait_for(timeout=15_000)
            said = " ".join(shown.inner_text().split())
            assert table.get(UNAVAILABLE[LENS], UNAVAILABLE[LENS]).rstrip(".") in said, said
            assert table.get("Not available with this model server:", "Not available") in said, said
            assert page.locator("#layers-grid").count() == 0 and page.locator("#layers-show").count() == 0
            page.get_by_role("tab", name=table.get("Inside", "Inside")).click()
            inside = " ".join(page.locator("#inside-unavailable").inner_text().split())
            assert table.get(UNAVAILABLE[ATTENTION], UNAVAILABLE[ATTENTION]).rstrip(".") in inside, inside
        finally:
            page.context.close()

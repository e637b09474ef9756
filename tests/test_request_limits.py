"""What one request may send (demo/request_limits.py): a body larger than the page ever sends is refused before
Gradio reads it, whoever launched the app, and Gradio remembers a bounded number of sessions.

Served with training off, as on a public host; the shared test app (training on, as on the host's own machine) still
takes a 10 MB prompt and trims it (test_bad_input.py).
"""

from __future__ import annotations

import json

import httpx
import pytest
from gradio_client import Client
from test_browser import VIEWPORT, browser  # noqa: F401 (fixture)
from ui_helpers import launched_app

from demo.request_limits import BODY_BYTES, SESSIONS, TRAINING_BODY_BYTES, body_limit
from demo.train_tab import MAX_TEXT_CHARS

pytest_plugins = ["fixtures_ui"]

SETTINGS = [2, 0.8, 40, 1.0, 1.0, 1, 1]  # /generate's max_new_tokens ... num_samples


@pytest.fixture(scope="module")
def public(tiny_checkpoint, tiny_bert):
    with launched_app(tiny_checkpoint, tiny_bert, allow_training=False) as running:
        yield running


def call(url: str, body, params: dict | None = None, **headers) -> httpx.Response:
    return httpx.post(url.rstrip("/") + "/gradio_api/call/generate", content=body, params=params,
                      headers={"content-type": "application/json", **headers}, timeout=60)


def generates(url: str) -> bool:
    return bool(Client(url, verbose=False, analytics_enabled=False).predict("Hello", *SETTINGS, api_name="/generate")[0])


def test_a_body_over_the_limit_is_refused_with_the_sizes_and_the_server_serves_on(public):
    body = json.dumps({"data": ["a" * 2 * BODY_BYTES, *SETTINGS]}).encode()
    answer = call(public.url, body)
    assert answer.status_code == 413
    assert answer.json()["detail"] == answer.json()["error"]
    assert "This request is 512 KB, and this demo takes at most 256 KB at once" in answer.json()["detail"]
    assert generates(public.url)


def test_the_refusal_is_in_the_pages_language(public):
    body = json.dumps({"data": ["a" * 2 * BODY_BYTES, *SETTINGS]}).encode()
    answer = call(public.url, body, {"lang": "fr"}, **{"accept-language": "es"})  # a link's language first
    assert answer.status_code == 413 and "Cette requête fait 512 Ko" in answer.json()["detail"]
    answer = call(public.url, body, **{"accept-language": "es-ES,es;q=0.9"})
    assert "Esta petición ocupa 512 KB" in answer.json()["detail"]


def test_a_chunked_body_without_a_length_is_counted_as_it_comes(public):
    def chunks():
        yield b'{"data": ["'
        for _ in range(4):
            yield b"a" * (BODY_BYTES // 2)
        yield b'", 2, 0.8, 40, 1.0, 1.0, 1, 1]}'

    answer = call(public.url, chunks())  # httpx sends an iterator chunked, with no Content-Length
    assert answer.status_code == 413 and "at most 256 KB" in answer.json()["detail"]
    assert generates(public.url)


def test_a_body_under_the_limit_still_generates_from_a_trimmed_prompt(public):
    data = ["a" * (BODY_BYTES - 1000) + " the end", *SETTINGS]
    answer = call(public.url, json.dumps({"data": data}).encode())
    assert answer.status_code == 200
    events = httpx.get(f"{public.url.rstrip('/')}/gradio_api/call/generate/{answer.json()['event_id']}", timeout=60)
    assert "event: complete" in events.text and "trimmed" in events.text


def test_uploads_over_the_limit_are_refused(public):
    files = {"files": ("big.txt", b"a" * (BODY_BYTES + 1), "text/plain")}
    answer = httpx.post(public.url.rstrip("/") + "/gradio_api/upload", files=files, timeout=60)
    assert answer.status_code == 413


def test_gradio_remembers_a_bounded_number_of_sessions(public):
    config = httpx.get(public.url.rstrip("/") + "/config", timeout=30)
    assert config.status_code == 200
    assert public.demo.state_session_capacity == SESSIONS  # Gradio's default (10,000) would keep about 5 GB here
    assert public.demo.max_file_size == BODY_BYTES


def test_the_limit_with_training_on_takes_the_largest_training_text():
    largest = json.dumps({"data": ["Shakespeare", "🦄" * MAX_TEXT_CHARS, "scratch", 1]}, ensure_ascii=False)
    assert BODY_BYTES < len(largest.encode()) <= body_limit(training=True) == TRAINING_BODY_BYTES
    assert body_limit(training=False) == BODY_BYTES


@pytest.mark.browser
def test_the_page_says_why_a_huge_paste_is_not_written_and_frees_generate(browser, public):  # noqa: F811
    page = browser.new_context(viewport=VIEWPORT).new_page()
    page.set_default_timeout(15_000)
    try:
        page.goto(public.url)
        page.locator("#prompt textarea").fill("a" * (2 * BODY_BYTES))
        page.locator("#generate-button").click()
        page.get_by_text("and this demo takes at most 256 KB at once").first.wait_for()  # the error toast
        page.get_by_text("Not written: the server did not take this request").wait_for()
        assert page.locator("#generate-button").is_enabled() and public.models.gpt2.in_flight() == 0
        page.locator("#prompt textarea").fill("Hello")  # and the next click writes
        page.locator("#generate-button").click()
        page.get_by_text("Done").first.wait_for()
    finally:
        page.context.close()

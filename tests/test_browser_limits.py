"""What a person sees at the limits, in Debian's chromium: HTML typed into the page stays text (no script runs, no
element appears), a closed tab stops its generation in the engine, and a full queue says the demo is busy.

Uses test_browser.py's `browser` fixture (skipped with its reason where chromium is absent).
"""

from __future__ import annotations

import pytest
from gradio_client import Client
from test_browser import VIEWPORT, browser, open_compare_tab, set_slider, type_sentence  # noqa: F401 (fixture)
from ui_helpers import as_toast, wait_until

from demo.generate_tab import GENERATE_CONCURRENCY

pytestmark = pytest.mark.browser
pytest_plugins = ["fixtures_ui"]

ATTACK = "<script>alert('script')</script><img src=x onerror=\"alert('img')\"><b id=injected>bold</b>"
STEPS_AFTER_CLOSE = 25  # Gradio notices the closed connection at its next message to the page


def open_page(browser, url: str):  # noqa: F811 (the fixture's value)
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.dialogs = []
    page.on("dialog", lambda dialog: (page.dialogs.append(dialog.message), dialog.dismiss()))
    page.goto(url)
    page.locator("#prompt textarea").wait_for()
    return page


def assert_nothing_injected(page) -> None:
    assert page.dialogs == [], f"a script ran: {page.dialogs}"
    assert page.locator("img[src='x']").count() == 0 and page.locator("#injected").count() == 0


@pytest.mark.smoke
def test_html_in_the_prompt_stays_text(browser, app):  # noqa: F811
    page = open_page(browser, app.url)
    try:
        prompt = page.locator("#prompt textarea")
        prompt.fill(ATTACK)
        wait_until(lambda: prompt.input_value() == ATTACK, message="the prompt to be typed")
        set_slider(page, "max-new-tokens", 8)
        page.locator("#generate-button").click()
        wait_until(lambda: "done" in page.locator("#stats").inner_text(), timeout=15, message="the generation")
        assert prompt.input_value() == ATTACK
        assert_nothing_injected(page)
    finally:
        page.context.close()


@pytest.mark.parametrize("sentence", [ATTACK + " The ___ barked.", ATTACK + " and no blank"],
                         ids=["with a blank", "in the error message"])
def test_html_in_the_sentence_stays_text(browser, app, sentence):  # noqa: F811
    page = open_page(browser, app.url)
    try:
        open_compare_tab(page)
        type_sentence(page, sentence)
        page.locator("#compare-button").click()
        if "___" in sentence:
            wait_until(lambda: "<script>alert('script')</script>" in page.locator("#what-each-saw").inner_text(),
                       message="the sentence shown as written")
        else:  # the message quotes the sentence: as text
            page.get_by_text(as_toast("`sentence` has to contain exactly one blank"), exact=False).first.wait_for()
            assert "<img src=x onerror" in page.get_by_text("has to contain exactly one blank").first.inner_text()
        assert_nothing_injected(page)
    finally:
        page.context.close()


def test_closing_the_tab_stops_the_generation(browser, app):  # noqa: F811
    engine = app.models.gpt2.current.engine
    page = open_page(browser, app.url)
    page.locator("#prompt textarea").fill("Nobody will read this")
    set_slider(page, "max-new-tokens", 500)  # 10 s at 20 ms a token (the page allows up to 512)
    page.locator("#generate-button").click()
    wait_until(lambda: page.locator("#sample-view-1 .token.highlighted").count() > 0, message="streaming to start")
    steps_at_close = engine.steps
    page.context.close()
    wait_until(lambda: engine.running == 0 and app.models.gpt2.in_flight() == 0, timeout=10,
               message="the engine to drop the closed tab's request")
    assert engine.steps - steps_at_close <= STEPS_AFTER_CLOSE


def test_a_full_queue_tells_the_visitor_the_demo_is_busy(browser, limits_app, gate):  # noqa: F811
    clients = [Client(limits_app.url, verbose=False, analytics_enabled=False, download_files=False)
               for _ in range(GENERATE_CONCURRENCY + 2)]
    page = open_page(browser, limits_app.url)
    gate.close()
    try:
        jobs = []
        for i, client in enumerate(clients):  # 16 running, then 2 waiting: the queue (2) is full
            jobs.append(client.submit("Busy", max_new_tokens=4, seed=1, api_name="/generate"))
            if i < GENERATE_CONCURRENCY:
                wait_until(lambda i=i: limits_app.models.gpt2.in_flight() == i + 1, message="a slot to be taken")
        wait_until(lambda: all(job.status().code.name == "IN_QUEUE" for job in jobs[-2:]), message="a full queue")
        page.locator("#generate-button").click()
        page.get_by_text("This application is currently busy. Please try again.").first.wait_for()
        # and the page is free again: Generate enabled, the run state saying nothing was written
        page.get_by_text("Not written: the server did not take this request").wait_for()
        assert page.locator("#generate-button").is_enabled()
        assert page.locator("#generate-button").inner_text() == "Generate"
    finally:
        gate.open()
        page.context.close()
    assert all("done" in job.result(timeout=60)[4] for job in jobs)

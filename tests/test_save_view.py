"""Saving a view for lesson notes (demo/save_view.py): coloured text as a self-contained web page, and the Generate
run's downloads (.json with every setting, the model and the app; .html). The PNGs are painted by the browser:
tests/test_browser_save_view.py saves them in chromium."""

from __future__ import annotations

import json
from dataclasses import fields
from html.parser import HTMLParser
from pathlib import Path

import gradio as gr
import pytest

from demo import streams
from demo.exports import Exports, app_version
from demo.generate_tab import Page, make_generate_view
from demo.models import AppModels, LazyFillMask, ModelHolder
from demo.save_view import coloured_html
from demo.tokens import BUCKETS, Coloured, TokenRow
from demo.workspace import Workspace
from gpt2_core import SamplingParams


class Parsed(HTMLParser):
    """Every tag and attribute of a page, and each token span's (class, title, text)."""

    def __init__(self, page: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.tokens: list[list[str]] = []
        self.text: list[str] = []
        self._in_token = False
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs))
        self._in_token = tag == "span" and "t" in attrs.get("class", "").split()
        if self._in_token:
            self.tokens.append([attrs["class"], attrs.get("title"), ""])

    def handle_endtag(self, tag):
        self._in_token = False

    def handle_data(self, data):
        self.text.append(data)
        if self._in_token:
            self.tokens[-1][2] += data


TOKENS = [TokenRow(" <script>alert(1)</script>", 11, 3, 0.25), TokenRow(" Tom & \"Jerry's\"", 12, 50, 0.0125),
          TokenRow(" rare", 13, 4321, 0.0001), TokenRow("\n", 14, None, 0.5)]


def test_the_html_export_is_self_contained_with_the_legend_and_every_tokens_probability_and_rank():
    page = coloured_html(title="Title <b>bold</b>", caption=["GPT-2 gpt2 (fp32) \u00b7 temperature 0.8 \u00b7 top-k 40"],
                         texts=[("Sample 1", Coloured(["Say", " <it>"], TOKENS))], note="How to read it.")
    parsed = Parsed(page)
    text = "".join(parsed.text)
    # self-contained: nothing fetched or run, no address anywhere
    assert {tag for tag, _ in parsed.tags} <= {"html", "head", "meta", "title", "style", "body", "h1", "h2", "p", "span",
                                               "i", "section", "div", "footer"}
    assert "http" not in page and "url(" not in page and "@import" not in page and "src=" not in page
    assert all(not key.startswith("on") for _, attrs in parsed.tags for key in attrs)
    # tokens are text, never markup, and each says its probability and rank
    assert "<script>" not in page and "<it>" not in page and "<b>" not in page
    assert parsed.tokens == [
        ["t top-10", "probability 25.0%, rank 3", " <script>alert(1)</script>"],
        ["t top-100", "probability 1.2%, rank 50", " Tom & \"Jerry's\""],
        ["t rarer", "probability 0.0%, rank 4,321", " rare"],
        ["t", "probability 50.0%, rank not known", "\u23ce\n"],  # a rank not known yet is uncoloured, as on the page
    ]
    assert "Say <it>" in text and "Title <b>bold</b>" in text, "the prompt (dimmed) and the title, as text"
    assert all(name in text for _, name in BUCKETS), "the legend names every colour"
    assert "temperature 0.8" in text and "How to read it." in text
    assert f"GPT-2 Playground {app_version()}" in text


@pytest.mark.parametrize("token, shown", [("\n", "\u23ce\n"), ("\n\n", "\u23ce\u23ce\n\n"), (" \n", " \u23ce\n"),
                                          (" the", " the")])
def test_a_generated_line_break_is_a_mark_to_see_and_click_before_the_break(token, shown):
    """Gradio draws a segment that is only "\n" as a bare line break, with no box: the token could not be seen or
    clicked. The prompt's own line breaks stay as typed."""
    coloured = Coloured(["To be\n"], [TokenRow(token, 198, 1, 0.4), TokenRow("Or", 5574, 2, 0.1)])
    assert coloured.segments() == [("To be\n", None), (shown, "top 10"), ("Or", "top 10")]
    assert coloured.token_at(1).text == token and coloured.token_at(2).text == "Or", "a click still finds its token"
    assert coloured.segments(marked=False)[1] == (token, "top 10"), "an API's tokens join to the text"
    page = Parsed(coloured_html(title="t", caption=[], texts=[("Sample 1", coloured)]))
    assert [text for _, _, text in page.tokens] == [shown, "Or"], "the saved page as the page shows it"


def test_the_app_version_is_the_projects():
    pyproject = (Path(__file__).resolve().parent.parent / "pyproject.toml").read_text(encoding="utf-8")
    assert app_version() != "unknown" and f'version = "{app_version()}"' in pyproject


@pytest.fixture
def generated(lm):
    """One finished Generate run through the page's handler (2 samples, every setting off its default): its last
    update, the page's outputs, and the settings asked for."""
    page = Page([gr.HighlightedText(render=False) for _ in range(4)],
                *(gr.Textbox(render=False) for f in fields(Page) if f.name != "views"))
    models = AppModels(ModelHolder(lambda s: lm, "tiny"), LazyFillMask(lambda s: None, "bert"), choices=[])
    workspace = Workspace()
    asked = dict(max_new_tokens=6, temperature=0.7, top_k=5, top_p=0.9, repetition_penalty=1.1, seed=1234,
                 num_samples=2)
    generate = make_generate_view(models, Exports(workspace), page, deadline_s=60)
    try:
        *_, last = generate("Once upon a time", *asked.values(), request=gr.Request())
        yield last, page, asked
    finally:
        workspace.remove()


def test_the_updates_between_the_first_and_the_last_are_plain_values_for_every_output_but_two(lm, monkeypatch):
    """Gradio builds a new component, config and all, for each component an update returns and for each output it
    leaves out: the page's updates between its first and its last give every output a plain value (the page wrote
    gpt2's shape 2.2x faster, benchmarks/bench_page.py), except the run state and Generate, whose text must not come back after
    Stop. The first update shows the boxes and turns the buttons on; the last gives the downloads."""
    monkeypatch.setattr(streams, "STREAM_INTERVAL_S", 0.0)  # an update per token
    monkeypatch.setattr(streams, "UPDATES_PER_SECOND", float("inf"))
    monkeypatch.setattr(streams, "TOKENS_REDRAWN_PER_SECOND", float("inf"))
    page = Page([gr.HighlightedText(render=False) for _ in range(4)],
                *(gr.Textbox(render=False) for f in fields(Page) if f.name != "views"))
    models = AppModels(ModelHolder(lambda s: lm, "tiny"), LazyFillMask(lambda s: None, "bert"), choices=[])
    workspace = Workspace()
    try:
        first, *between, last = make_generate_view(models, Exports(workspace), page, deadline_s=60)(
            "Once upon a time", 8, 0.8, 40, 1.0, 1.0, 5, 2, request=gr.Request())
    finally:
        workspace.remove()
    assert len(between) >= 6  # a token each
    left_out = {page.run_state, page.button}
    for update in between:
        assert set(update) == set(page.components()) - left_out
        assert not any(isinstance(value, gr.components.Component) for value in update.values())
        assert update[page.views[2]] is None and update[page.download_json] is None  # the hidden box, no file yet
        assert update[page.stop] == "Stop"  # its own label: a late update after Stop changes nothing
    assert isinstance(first[page.views[0]], gr.HighlightedText) and first[page.views[0]].visible is True
    assert first[page.views[2]].visible is False and first[page.copy].interactive is True
    assert last[page.download_json].interactive is True and last[page.stop].interactive is False
    assert last[page.run_state].startswith("**Done**")


def test_the_json_export_records_every_setting_the_model_and_the_app(generated, lm):
    last, page, asked = generated
    record = json.loads(Path(last[page.download_json].value["path"]).read_text(encoding="utf-8"))
    assert record["model"] == lm.name and record["prompt"] == "Once upon a time"  # as before
    assert set(record["settings"]) == {f.name for f in fields(SamplingParams)}, "every field the sampler took"
    assert record["settings"] == {**asked, "stop": []}
    d = lm.describe()
    assert record["model_details"] == dict(name=lm.name, precision=d.precision, parameters=d.parameters,
                                           context=d.context, where="cpu", remote=False)
    assert record["model_details"]["precision"] == "float32"  # the fixture loads the exact engine
    app = record["app"]
    assert app["name"] == "GPT-2 Playground" and app["version"] == app_version()
    assert app["exported_at"][:4].isdigit() and app["exported_at"].endswith("+00:00")
    assert [s["seed"] for s in record["samples"]] == [1234, 1235]  # sample i uses seed + i
    assert all(len(s["tokens"]) == 6 and s["text"] == "".join(t["text"] for t in s["tokens"])
               for s in record["samples"])


def test_the_html_download_and_the_pictures_caption_name_the_model_and_settings(generated, lm):
    last, page, _ = generated
    caption = last[page.caption]
    assert caption == (f"GPT-2 {lm.name} (float32) \u00b7 temperature 0.7 \u00b7 top-k 5 \u00b7 top-p 0.9 \u00b7 "
                       "repetition penalty 1.1 \u00b7 max new tokens 6 \u00b7 seeds 1234, 1235 (one per sample)")
    assert last[page.save_png].interactive is True and last[page.download_html].interactive is True
    parsed = Parsed(Path(last[page.download_html].value["path"]).read_text(encoding="utf-8"))
    text = "".join(parsed.text)
    assert caption in text and "Sample 1 (machine-generated), seed 1234" in text and "Sample 2" in text
    assert "Once upon a time" in text and "Machine-generated." in text
    assert len(parsed.tokens) == 12 and all(title.startswith("probability ") and ", rank " in title
                                            for _, title, _ in parsed.tokens)

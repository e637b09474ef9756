"""The Scale tab (gpt2_core/scale.py, demo/scale_tab.py) and the Inside tab (demo/inside_tab.py): sizes run one after
another within the memory budget, the same seed for all, surprise measured; attention drawn as a triangle and a
square. Unit tests on small random checkpoints, then the served app over its API and in chromium."""

from __future__ import annotations

import math
import re

import pytest
import torch
from gradio_client import Client
from test_browser import VIEWPORT, browser  # noqa: F401 (fixture)
from test_browser_save_view import dark, saved_png, share
from ui_helpers import as_toast, launched_app, wait_until

from demo.models import AppModels, LazyFillMask, ModelHolder
from demo.scale_tab import SizeRunner, render_cards
from gpt2_core import GPTConfig, SamplingParams, load_model
from gpt2_core.scale import bits_per_token, plan
from gpt2_core.testing import random_checkpoint

pytest_plugins = ["fixtures_ui"]

HUMAN = "It was a fine morning, and the three of us sat in the boat, thinking of nothing in particular."
BUDGET = 40_000_000  # bytes: the two small sizes fit (13 and 27 MB in fp32), the third (58 MB) does not
APP_BUDGET = 10_000_000  # the app's Scale tab loads int8 on a CPU: the two small sizes (3 and 7 MB) fit, 15 MB does not


@pytest.fixture(scope="module")
def sizes(tmp_path_factory):
    root = tmp_path_factory.mktemp("sizes")
    shapes = {"small": (2, 2, 64), "medium": (4, 4, 128), "large": (2, 4, 256)}
    return {name: str(random_checkpoint(root / name, GPTConfig(n_layer=n, n_head=h, n_embd=d, block_size=128),
                                        seed=i))
            for i, (name, (n, h, d)) in enumerate(shapes.items())}


def test_plan_runs_what_is_here_and_fits_and_says_why_not_for_the_rest(sizes):
    planned = plan([sizes["large"], sizes["small"], "gpt2-xl-not-here/nope", sizes["medium"], "/no/such/dir"],
                   budget_bytes=BUDGET)
    by_source = {p.source: p for p in planned}
    assert [p.source for p in planned][:3] == [sizes["small"], sizes["medium"], sizes["large"]], "smallest first"
    assert by_source[sizes["small"]].skip is None and by_source[sizes["medium"]].skip is None
    assert by_source[sizes["large"]].skip == ("needs 58 MB in fp32, over this host's budget of 40 MB for this tab "
                                              "(--scale-memory 0.1 would take it)")
    assert "python -m gpt2_core download gpt2-xl-not-here/nope" in by_source["gpt2-xl-not-here/nope"].skip
    assert by_source["/no/such/dir"].skip == "not on this machine"


def test_the_budget_is_the_hosts_or_a_third_of_the_memory_it_may_use(monkeypatch, tmp_path):
    import demo.config as config

    assert config.AppConfig(scale_memory_gb=2.5).scale_budget_bytes == 2_500_000_000
    assert config.AppConfig.from_env_and_args(["--scale-memory", "1"]).scale_budget_bytes == 1_000_000_000
    limit = tmp_path / "memory.max"
    limit.write_text("3000000000\n")
    real_path = config.Path
    monkeypatch.setattr(config, "Path", lambda p: limit if p == "/sys/fs/cgroup/memory.max" else real_path(p))
    assert config.AppConfig().scale_budget_bytes == 1_000_000_000, "a container's limit counts, not the host's"
    limit.write_text("max\n")
    assert config.AppConfig().scale_budget_bytes > 1_000_000_000, "no limit set: the machine's memory"


def test_bits_per_token_is_the_mean_surprise_under_transformers(sizes):
    from transformers import GPT2LMHeadModel

    lm = load_model(sizes["small"], device="cpu", dtype="fp32")
    try:
        ids = [lm.config.eos_token_id] + lm.tokenizer.encode(HUMAN)
        hf = GPT2LMHeadModel.from_pretrained(sizes["small"]).eval()
        with torch.no_grad():
            logprobs = hf(torch.tensor([ids])).logits[0, :-1].log_softmax(-1)
        expected = -logprobs.gather(-1, torch.tensor(ids[1:])[:, None]).mean().item() / math.log(2)
        assert bits_per_token(lm, HUMAN) == pytest.approx(expected, abs=1e-4)
    finally:
        lm.close()


def test_sizes_run_one_at_a_time_with_the_same_seed_and_are_released(sizes, lm):
    import gc
    import weakref

    alive_at_load, loaded = [], []  # weak references: a model still in memory is alive, closed or not

    def load(directory):
        gc.collect()
        alive_at_load.append(sum(ref() is not None for ref in loaded))
        model = load_model(directory, device="cpu", dtype="fp32")
        loaded.append(weakref.ref(model.model))
        return model

    models = AppModels(ModelHolder(lambda s: lm, "shared"), LazyFillMask(lambda s: None, "bert"), [])
    runner = SizeRunner(models, (sizes["small"], sizes["medium"], sizes["large"]), BUDGET, HUMAN, load=load)
    updates = list(runner.run("Once upon a time", SamplingParams(seed=7, max_new_tokens=12)))
    columns = updates[-1]
    assert [c.state for c in columns] == ["done", "done", "skipped"]
    streamed = len(updates)
    del updates
    gc.collect()
    assert alive_at_load == [0, 0], "each size's weights are gone before the next one loads"
    assert all(ref() is None for ref in loaded), "and none is left after the run"
    assert streamed > 4, "the columns stream"
    assert len(loaded) == 2, "the size over the budget is never loaded"
    for column in columns[:2]:
        assert column.tokens_per_s > 0 and column.memory_bytes > 0 and column.bits_per_token > 0
        reference = load_model(column.planned.directory, device="cpu", dtype="fp32")
        try:  # the same prompt and seed as a plain generate with the tab's settings
            (sample,) = reference.generate("Once upon a time", max_new_tokens=12, seed=7, temperature=0.8, top_k=40)
            assert column.text == sample.text
        finally:
            reference.close()
    html = render_cards(columns)
    assert html.count("class='scale-card") == 2 and "Not run here" in html and "needs 58 MB" in html
    assert re.search(r"<li><b>[^<]+</b> \([^)]+\): ", html), "the size left out, its name, size and why"
    from demo.i18n import speaking

    with speaking("fr"):
        assert re.search(r"<li><b>[^<]+</b> \([^)]+\) : ", render_cards(columns)), "French: a space before the colon"


def test_a_scale_run_streams_within_the_pages_update_budget(sizes, lm, monkeypatch):
    """A Scale run counts as one more streaming generation (all tabs together update the page no more than
    UPDATES_PER_SECOND times a second) and, with generations streaming beside it, waits as long as they do between
    its updates."""
    from contextlib import ExitStack

    from demo import scale_tab, streams
    from demo.streams import STREAMS

    asked = []

    def interval(streaming: int, alone: float | None = None, shown: int = 0) -> float:
        asked.append((streaming, alone, shown))
        return math.inf  # a budget spent: no update between the size's first token and its last

    monkeypatch.setattr(streams, "update_interval", interval)
    models = AppModels(ModelHolder(lambda s: lm, "shared"), LazyFillMask(lambda s: None, "bert"), [])
    runner = SizeRunner(models, (sizes["small"],), BUDGET, HUMAN,
                        load=lambda directory: load_model(directory, device="cpu", dtype="fp32"))
    with ExitStack() as others:
        for _ in range(3):
            others.enter_context(STREAMS.streaming())
        updates = [(c.state, c.text) for (c,) in runner.run("Once upon a time", SamplingParams(seed=7, max_new_tokens=12))]
        assert STREAMS.count == 3, "the run left the budget at its end"
    # the three others and the run itself; a size's text is short (its tokens redraw cheaply)
    assert asked and set(asked) == {(4, scale_tab.STREAM_INTERVAL_S, 0)}, asked
    assert [state for state, _ in updates] == ["waiting", "loading", "writing", "writing", "done"], updates
    (_, first), (_, last) = updates[2:4]
    assert "" != first != last == updates[-1][1] and last.startswith(first), updates  # the first token, the whole text


@pytest.mark.parametrize("parameters, shown", [(4_200_000, "4.2M parameters"), (124_439_808, "124M parameters"),
                                               (1_557_611_200, "1,558M parameters")])
def test_a_cards_size_agrees_with_the_figures_table(parameters, shown):
    from demo.scale_tab import Column, figures_table
    from gpt2_core.scale import Planned

    column = Column(Planned("a size", parameters, 1, None, None), state="done", bits_per_token=5.0)
    assert f"<p class='scale-size'>{shown} " in render_cards([column])
    assert f"{figures_table([column]).data.iloc[0]['parameters (M)']:,.{1 if parameters < 1e7 else 0}f}M parameters" == shown


@pytest.mark.parametrize("lang, shown", [
    ("en", ["gpt2-xl", "1,557.6", "3.00 GB", "1,234.5", "10.43", "done"]),
    ("es", ["gpt2-xl", "1557,6", "3,00 GB", "1234,5", "10,43", "hecho"]),
    ("fr", ["gpt2-xl", "1\u202f557,6", "3,00 Go", "1\u202f234,5", "10,43", "terminé"]),
])
def test_the_figures_table_writes_its_numbers_as_the_pages_language_and_keeps_their_values(lang, shown):
    """What the page shows of each cell (Gradio's display values) is written in the page's language, read when the
    table is made (Gradio writes the cells out later, outside the request); the values stay numbers, to sort by, and
    the chart's points carry the same rounded figures."""
    import gradio as gr

    from demo.i18n import speaking
    from demo.scale_tab import Column, chart_data, figures_table
    from gpt2_core.scale import Planned

    columns = [Column(Planned("gpt2-xl", 1_557_611_200, 1, None, None), state="done", tokens_per_s=1234.49,
                      memory_bytes=3_000_000_000, bits_per_token=10.4321),
               Column(Planned("gpt2", 124_439_808, 1, None, None))]
    with speaking(lang):
        table = figures_table(columns)
    sent = gr.Dataframe(interactive=False).postprocess(table)
    assert sent.metadata is not None and sent.metadata["display_value"][0] == shown
    assert sent.metadata["display_value"][1][3:5] == ["", ""], "a size not run yet has no figures, not NaN"
    assert sent.data[0][1] == pytest.approx(1557.6) and sent.data[0][4] == pytest.approx(10.43)
    points = chart_data(columns)  # a point's tooltip shows the table's figures, not 10.4321 or 1557.6112
    assert points.to_dict("records") == [{"parameters (millions)": 1557.6, "bits per token": 10.43, "model": "gpt2-xl"}]


@pytest.fixture(scope="module")
def scale_app(tiny_checkpoint, tiny_bert, sizes):
    with launched_app(tiny_checkpoint, tiny_bert, scale_models=(sizes["small"], sizes["medium"], sizes["large"]),
                      scale_memory_gb=APP_BUDGET / 1e9) as running:
        yield running


def test_attention_and_scale_api(scale_app):
    client = Client(scale_app.url, verbose=False, analytics_enabled=False, download_files=False)
    result = client.predict("The dog chased the cat because it was hungry.", 2, 2, api_name="/attention")
    gpt2, bert = torch.tensor(result["gpt2"]["weights"]), torch.tensor(result["bert"]["weights"])
    assert result["gpt2"]["layer"] == 2 and result["gpt2"]["head"] == 2
    assert gpt2.shape[0] == len(result["gpt2"]["tokens"]) and torch.all(gpt2.triu(1) == 0)
    torch.testing.assert_close(gpt2.sum(-1), torch.ones(len(gpt2)), atol=1e-4, rtol=0)
    assert result["bert"]["tokens"][0] == "[CLS]" and bert.triu(1).sum() > 0, "BERT looks both ways"
    only_gpt2 = client.predict("Hello there", 1, 3, api_name="/attention")  # the test BERT has 2 heads, GPT-2 4
    assert len(only_gpt2["gpt2"]["weights"]) == 2 and "`head` has to be an integer from 1 to 2" in only_gpt2["bert"]["error"]
    with pytest.raises(Exception, match=r"`layer` has to be an integer from 1 to \d+ for .*tiny-gpt2.*, but is 99"):
        client.predict("Hello there", 99, 1, api_name="/attention")
    figures = client.predict("Once upon a time", 5, api_name="/scale")
    assert [f["state"] for f in figures] == ["done", "done", "skipped"]
    assert all(f["bits_per_token"] > 0 and f["text"] for f in figures[:2]) and "needs" in figures[2]["note"]


def open_tab(browser, url: str, tab: str, viewport: dict = VIEWPORT):  # noqa: F811
    """A fresh page on the app, on `tab` (once the page is ready: a load would otherwise reset the tab)."""
    page = browser.new_context(viewport=viewport).new_page()
    page.set_default_timeout(30_000)
    page.goto(url)
    page.locator("#prompt textarea").wait_for()
    page.get_by_role("tab", name=tab).click()
    return page


@pytest.mark.browser
def test_inside_draws_a_triangle_and_a_square_and_a_head_click_changes_them(browser, scale_app):  # noqa: F811
    page = open_tab(browser, scale_app.url, "Inside")
    try:
        wait_until(lambda: page.locator("#inside-gpt2-map svg rect").count() > 10, timeout=30, message="GPT-2's map")
        wait_until(lambda: page.locator("#inside-bert-map svg rect").count() > 10, timeout=30, message="BERT's map")
        T = page.locator("#inside-follow input[type=radio]").count()
        unseen = page.locator("#inside-gpt2-map svg rect[fill='#e5e7eb']").count()
        assert unseen == T * (T - 1) // 2, "GPT-2's cells right of the diagonal are the unseen future"
        assert page.locator("#inside-bert-map svg rect[fill='#e5e7eb']").count() == 0, "BERT sees everything"
        assert "looks most at" in page.locator("#inside-links").inner_text()
        before = page.locator("#inside-gpt2-map").inner_html()
        page.locator("#inside-gpt2-heads .thumbnail-item").nth(2).click()
        wait_until(lambda: "head 3" in page.locator("#inside-links").inner_text(), message="head 3's links")
        assert page.locator("#inside-gpt2-map").inner_html() != before, "and its map"
        assert page.locator("#inside-gpt2-head input[type=number]").input_value() == "3"
    finally:
        page.context.close()


@pytest.mark.browser
def test_scale_shows_the_sizes_side_by_side_with_figures(browser, scale_app):  # noqa: F811
    page = open_tab(browser, scale_app.url, "Scale")
    try:
        assert not page.locator("#scale-chart-save-png").is_visible(), "no chart yet, nothing to save"
        wait_until(lambda: "waiting" in page.locator("#scale-figures").inner_text(), message="the sizes, before a run")
        before = page.locator("#scale-figures").inner_text()
        assert "bits per token" in before and "small" in before and "large" not in before, before
        page.locator("#scale-run").click()
        wait_until(lambda: "Done" in page.locator("#scale-state").inner_text(), timeout=60, message="every size")
        cards = page.locator("#scale-columns .scale-card")
        assert cards.count() == 2
        first, second = cards.nth(0).bounding_box(), cards.nth(1).bounding_box()
        assert first["y"] == second["y"] and second["x"] > first["x"] + first["width"] - 1, "side by side"
        assert all("bits per token" in cards.nth(i).inner_text() for i in range(2)), [cards.nth(i).inner_text() for i in range(2)]
        assert "needs 15 MB in int8" in page.locator("#scale-columns .scale-skipped").inner_text()
        table = page.locator("#scale-figures").inner_text()
        assert "small" in table and "medium" in table and "large" not in table, "figures of the sizes that ran"
        assert page.locator("#scale-chart").is_visible()
        page.locator("#scale-chart .vega-embed svg").wait_for()  # Vega draws it after the chart is shown
        name, picture = saved_png(page, "#scale-chart-save-png")  # under its title, with the prompt and seed
        assert name == "gpt2-scale.png" and share(picture, dark) > 0.005
    finally:
        page.context.close()


@pytest.mark.browser
@pytest.mark.parametrize("box, typed, message", [
    ("#scale-tokens input[type=number]", "500", "`max_new_tokens` has to be an integer in [10, 100], but is 500"),
    ("#scale-tokens input[type=number]", "0", "`max_new_tokens` has to be an integer in [10, 100], but is 0"),
    # every size draws with the same seed: no -1 (random) offered, and one range for any seed refused
    ("#scale-seed input", "1.5", "`seed` has to be an integer in [0, 9007199254740991] on this page "),
    ("#scale-seed input", "-1", "`seed` has to be an integer in [0, 9007199254740991] on this page "),
    ("#scale-seed input", "1152921504606846977", "`seed` has to be an integer in [0, 9007199254740991] "
                                                 "on this page "
                                                 "(a browser keeps whole numbers exact up to there; the API takes seeds "
                                                 "up to 9223372036854775807), but is 1152921504606846977"),
])
def test_scale_refuses_a_number_typed_out_of_range_by_name(browser, scale_app, box, typed, message):  # noqa: F811
    """The browser clamps a slider's box to its range and Gradio rounds a Number: either would run a setting the
    class did not type, in silence."""
    page = open_tab(browser, scale_app.url, "Scale")
    try:
        page.locator(box).fill(typed)
        page.locator(box).press("Enter")
        page.locator("#scale-run").click()
        wait_until(lambda: any(as_toast(message) in t for t in page.locator(".toast-body").all_inner_texts()),
                   message="the message naming the setting")
        assert len(page.locator(".toast-body").all_inner_texts()) == 1, "one message"
        assert "Ready" in page.locator("#scale-state").inner_text() and page.locator("#scale-columns .scale-card "
                                                                                       ".scale-text").count() == 0
    finally:
        page.context.close()


def test_inside_says_why_bert_is_missing_and_still_draws_gpt2(lm):
    from demo.inside_tab import MapCache, make_draw
    from gpt2_core import ModelUnavailableError

    def no_bert(source):
        raise ModelUnavailableError("model 'bert-base-uncased' is not in the cache (~/.cache) <offline>")

    models = AppModels(ModelHolder(lambda s: lm, "shared"), LazyFillMask(no_bert, "bert-base-uncased"), [])
    shown = make_draw(models, MapCache(), new_sentence=True)("The cat sat because it was tired.", 1, 1, 1, 1, None,
                                                             None)
    gpt2_map, bert_map = shown[5], shown[10]
    assert "<svg" in gpt2_map and "it" in shown[1]
    # each word of the links in Unicode's isolates: an Arabic word cannot reorder the percentages around it
    words = re.findall(r"\*\*([^*]+)\*\*(?= looks| \()", shown[1].split("): ", 1)[1])
    assert len(words) >= 2 and all(w[0] == "\u2068" and w[-1] == "\u2069" for w in words), shown[1]
    assert bert_map == ("<p class='unavailable'>BERT is not available: model 'bert-base-uncased' is not in the cache "
                        "(~/.cache) &lt;offline&gt;</p>"), "the HTML shows the message as written, escaped once"


@pytest.mark.parametrize("seed", [-1, -5, None, 1.5, 2**63])
def test_scale_refuses_every_bad_seed_with_one_message(seed):
    from demo.scale_tab import check_inputs
    from gpt2_core.generate.settings import MAX_SEED

    with pytest.raises(ValueError) as error:
        check_inputs("Hello", seed, 20)
    assert str(error.value).startswith(f"`seed` has to be an integer in [0, {MAX_SEED}]: every size draws with the "
                                       "same seed, but is "), str(error.value)
    assert check_inputs("Hello", 7, 20)[1].seed == 7


def test_stop_says_stopped_only_for_a_run_it_cut_short_and_an_error_marks_the_unfinished_sizes():
    import gradio as gr

    from demo.scale_tab import Column, after_run, make_run
    from gpt2_core.scale import Planned

    def columns(*states: str) -> list[Column]:
        return [Column(Planned(f"size {i}", 10**6 * (i + 1), 1, None, None), state=s) for i, s in enumerate(states)]

    for never_ran in ([], columns("done", "skipped")):  # Stop while the run waited its turn; a run that finished
        *shown, run, stop = after_run(never_ran)
        assert all(value == gr.skip() for value in shown), "nothing ran: nothing claimed"
        assert run.interactive is True and stop.interactive is False
    line, cards, _, marked, run, stop = after_run(columns("done", "writing", "waiting", "skipped"))
    assert line == "**Stopped.** The sizes that finished keep their text and figures."
    assert [c.state for c in marked] == ["done", "stopped", "stopped", "skipped"] and cards.count("scale-stopped") == 2
    assert run.interactive is True and stop.interactive is False
    assert after_run(columns("loading", "waiting"))[0] == "**Stopped** before any size finished."

    class Breaks:
        def run(self, prompt, params):
            ran = columns("done", "writing", "waiting")
            yield ran
            raise RuntimeError("the machine fell over")

    updates = make_run(Breaks())("Once upon a time", 7, 20)
    next(updates)
    line, cards, _, _, _, marked = next(updates)  # before the error: the sizes it left unfinished say so
    assert line.startswith("**Not finished:**") and [c.state for c in marked] == ["done", "failed", "failed"]
    assert cards.count("scale-failed") == 2
    with pytest.raises(gr.Error, match="Something went wrong on the server"):  # logged with its traceback
        next(updates)


def test_a_run_of_one_size_says_why_there_is_no_chart_and_what_would_give_one():
    """Offline, only the bundled model runs: the page said "Compare the texts" with one text and drew no chart."""
    from demo.scale_tab import Column, make_run
    from gpt2_core.scale import Planned

    def ran(*states: str):
        class Runner:
            def run(self, prompt, params):
                yield [Column(Planned(f"size {i}", 10**6 * (i + 1), 1, None, None), state=s,
                               bits_per_token=9.0 - i if s == "done" else None)
                       for i, s in enumerate(states)]
        return list(make_run(Runner())("Once upon a time", 7, 20))[-1]

    line, *_, chart_box, _ = ran("done", "skipped", "skipped")
    assert line == ("**Done.** One size ran, so there is nothing to compare it with and no chart: the chart of "
                    "surprise against size needs at least two. The sizes under *Not run here* say what each would "
                    "need.") and chart_box.visible is False
    assert ran("done")[0].endswith("needs at least two."), "no size left out: nothing to point at"
    for states in (("failed",), ("done", "failed", "skipped")):  # a failure is no reason to download another size
        line, *_, chart_box, _ = ran(*states)
        assert line.startswith("**Done.** Too few sizes ran for a chart (it needs at least two): a failed size's card "
                               "says why.") and chart_box.visible is False, states
    line, *_, chart_box, _ = ran("done", "done", "skipped")
    assert line == "**Done.** Compare the texts, then the surprise of each size at the human paragraph."
    assert chart_box.visible is True

"""The explanations through the app's API (gradio_client): /score and /explore, on the shared tiny app."""

from __future__ import annotations

import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from demo.tokens import BUCKETS, bucket

pytest_plugins = ["fixtures_ui"]


@pytest.fixture(scope="module")
def client(app) -> Client:
    return Client(app.url, verbose=False, analytics_enabled=False, download_files=False)


@pytest.mark.parametrize("text", ["The cat sat on the mat.", "Émoji 🤖 and 日本語,\n\ttoo"])
def test_score_returns_coloured_tokens_that_join_to_the_text(client, app, text):
    coloured, counts, _histogram = client.predict(text, api_name="/score")
    tokens = coloured if isinstance(coloured, list) else coloured["value"]
    assert "".join(t["token"] for t in tokens) == text
    scores = [s for s in app.models.gpt2.current.score_text(text) if s.text]
    assert [t["class_or_confidence"] for t in tokens] == [bucket(s.rank) for s in scores]
    assert {t["class_or_confidence"] for t in tokens} <= {name for _, name in BUCKETS}
    assert f"{len(app.models.gpt2.current.tokenizer.encode(text))} tokens in all" in counts


def test_score_of_one_token_says_token_not_tokens(client, app):
    assert len(app.models.gpt2.current.tokenizer.encode("Hello")) == 1
    _coloured, counts, _histogram = client.predict("Hello", api_name="/score")
    assert "\n\n1 token in all." in counts and "tokens in all" not in counts


@pytest.mark.parametrize("text", ["", "  \n "])
def test_score_of_no_text_says_what_to_do_instead_of_empty_charts(client, text):
    coloured, counts, histogram = client.predict(text, api_name="/score")
    tokens = coloured if isinstance(coloured, list) else coloured["value"]
    assert tokens == [] and "Nothing to colour yet" in counts and "0 tokens" not in counts
    assert histogram is None or not histogram.get("value")


def test_score_refuses_a_text_past_its_limit_and_serves_on(client):
    with pytest.raises(AppError, match=r"`text` has to be at most 20000 characters long, but has 20001"):
        client.predict("a" * 20_001, api_name="/score")
    assert client.predict("fine", api_name="/score")[0]


def test_explore_returns_the_settings_distribution_as_a_label(client, app):
    prompt = "The weather today is"
    label, raw, _cut = client.predict(prompt, 0.7, 5, 1.0, api_name="/explore")
    expected = app.models.gpt2.current.next_token_distribution(prompt, temperature=0.7, top_k=5, top_p=1.0, k=12)
    confidences = {c["label"]: c["confidence"] for c in label["confidences"]}
    assert confidences == pytest.approx({c.token_text: c.sampling_prob for c in expected}, abs=1e-6)
    assert sum(confidences.values()) == pytest.approx(1.0, abs=1e-5)  # top-k 5: all the mass is on the chart
    assert sum(v > 0 for v in confidences.values()) == 5
    assert {c["label"]: c["confidence"] for c in raw["confidences"]} == pytest.approx(
        {c.token_text: c.prob for c in expected}, abs=1e-6)


def test_moving_a_slider_does_not_run_the_model(client, app):
    model = app.models.gpt2.current.model
    forwards = []
    forward = model.forward
    model.forward = lambda *a, **kw: forwards.append(1) or forward(*a, **kw)
    try:
        prompt = "A sentence whose next word is explored with the sliders"
        for temperature, top_k, top_p in [(1.0, 0, 1.0), (0.5, 0, 1.0), (1.5, 10, 1.0), (0.8, 40, 0.5), (2.0, 3, 0.9)]:
            label, *_ = client.predict(prompt, temperature, top_k, top_p, api_name="/explore")
            assert label["confidences"]
        assert len(forwards) == 1, "only the first call, for a new prompt, may run the model"
    finally:
        del model.forward


@pytest.mark.parametrize("settings, message", [
    ((0.7, 5, 0.0), "`top_p` has to be a finite number in (0, 1], but is 0"),
    ((3.0, 5, 1.0), "`temperature` has to be a finite number in [0, 2], but is 3"),
    ((0.7, -1, 1.0), "`top_k` has to be an integer in [0, 50257], but is -1"),
])
def test_explore_refuses_bad_settings_naming_them(client, settings, message):
    with pytest.raises(AppError) as error:
        client.predict("Hello", *settings, api_name="/explore")
    assert message in str(error.value)


def test_every_result_names_the_model_that_made_it(client, app):
    name = app.models.gpt2.current.name
    _, counts, _ = client.predict("Named results.", api_name="/score")
    _, _, note = client.predict("Named", 0.8, 40, 1.0, api_name="/explore")
    *_, seen = client.predict("The ___ barked.", api_name="/compare")
    (_, _, _, _, stats, _) = client.predict("Named", 4, 0.8, 40, 1.0, 1.0, 1, 1, api_name="/generate")
    assert all(f"`{name}`" in text for text in (counts, note, seen, stats))


def test_a_suggestion_ends_after_a_whole_word():
    from demo.explore_tab import SUGGESTION_TOKENS, shown_suggestion, whole_words
    from demo.tokens import TokenRow

    pieces = [" I", "'ll", " show", " a", " little", " t", "ale", " of", " the", " k", "ing", "dom"]
    rows = [TokenRow(text, i, 1, 0.5) for i, text in enumerate(pieces)]
    kept = whole_words(rows)
    assert "".join(r.text for r in kept) == " I'll show a little tale of"  # never "... a little t"
    assert len(kept) >= SUGGESTION_TOKENS - 1 and shown_suggestion(" a\nb") == "\u2026 a \u23ce b"
    one_word = [TokenRow(text, i, 1, 0.5) for i, text in enumerate([" super", "cal", "ifr", "ag"])]
    assert whole_words(one_word) == one_word  # no word boundary: all of it


def test_a_machine_sample_continues_the_human_paragraphs_first_sentence():
    """Spot the machine's "Fill with a GPT-2 sample" continued "There were four of us—George, and William Samuel" (8
    words), so the box began with a lone comma: it continues the whole first sentence, or 8 words of a long one."""
    from contextlib import contextmanager
    from types import SimpleNamespace

    from demo.examples import load_examples
    from demo.score_tab import SAMPLE_PROMPT_WORDS, make_machine_sample, opening_of

    examples = load_examples()
    jerome, darwin = (h.text for h in examples.human[:2])
    assert opening_of(jerome) == "There were four of us\u2014George, and William Samuel Harris, and myself, and Montmorency."
    assert jerome.startswith(opening_of(jerome) + " We were")
    assert opening_of(darwin) == " ".join(darwin.split()[:SAMPLE_PROMPT_WORDS]), "a sentence of 3 lines: its first words"
    assert opening_of("Mr. K. Smith came home. Then") == "Mr. K. Smith came home."
    assert opening_of("She said, \u201cWe are late!\u201d Then they ran.") == "She said, \u201cWe are late!\u201d"
    prompts = []

    class Model:
        name = "stub"

        def generate(self, prompt, **settings):
            prompts.append(prompt)
            return [SimpleNamespace(text=" We went up the river.", seed=7)]

    @contextmanager
    def use(session):
        yield Model()

    text, caption = make_machine_sample(SimpleNamespace(use=use), examples)(SimpleNamespace(session_hash="s"))
    assert prompts == [opening_of(jerome)] and text == "We went up the river."
    assert f"continuing \u201c{opening_of(jerome)}\u201d" in caption

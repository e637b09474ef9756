"""The logit lens (gpt2_core/explain/lens.py, TextModel.logit_lens, the Layers tab's /layers endpoint): every layer's
reading equals transformers' hidden states read through ln_f and the LM head, the last row is the model's own
next-token distribution, the watched token's rank agrees with the lists, bad input is refused by name, and a model
server refuses with the reason."""

from __future__ import annotations

import pytest
import torch
from gradio_client import Client
from gradio_client.exceptions import AppError
from numerics import PROB_ATOL, assert_rank, assert_top_ids

from gpt2_core import load_model
from gpt2_core.backend import LENS, FeatureUnavailableError
from gpt2_core.checkpoint import BUNDLED
from gpt2_core.explain.lens import MAX_LENS_TOKENS, committed_rows, lens_ids
from gpt2_core.testing import random_hf_model, save_layout

TEXT = "The Eiffel Tower is in the city of Paris, and Ünïcödé 🦄 too."
pytest_plugins = ["fixtures_ui"]

SHAPES = {  # a few GPT-2 shapes: the lens walks whatever blocks the model has
    "3 layers": dict(n_layer=3, n_head=4, n_embd=64),
    "5 layers, scaled attention": dict(n_layer=5, n_head=2, n_embd=32, scale_attn_by_inverse_layer_idx=True),
    "48 layers, gpt2-xl's depth": dict(n_layer=48, n_head=4, n_embd=64),  # (its width does not change the walk)
}


def sharp_hf_model(seed: int, **sizes):
    """A random GPT-2 with peaked distributions (a large init), so that every layer's guesses differ."""
    return random_hf_model(seed, vocab_size=50257, n_positions=128, initializer_range=0.3, **sizes)


def transformers_lens(hf, ids: list[int]) -> torch.Tensor:
    """transformers' hidden states read through ln_f and the LM head: (n_layer + 1, T, vocab) logits.

    hidden_states[0] is the embeddings and hidden_states[i] block i's output, except the last: transformers gives
    ln_f's output there (the model's last hidden state), so the last block's raw output is taken from ln_f's input
    instead, and read through ln_f once, not twice."""
    raw = {}
    hook = hf.transformer.ln_f.register_forward_pre_hook(lambda _module, args: raw.setdefault("last", args[0]))
    try:
        with torch.no_grad():
            out = hf(torch.tensor([ids]), output_hidden_states=True)
    finally:
        hook.remove()
    states = list(out.hidden_states)
    assert len(states) == hf.config.n_layer + 1
    torch.testing.assert_close(states[-1], hf.transformer.ln_f(raw["last"]))  # the convention this function handles
    states[-1] = raw["last"]
    with torch.no_grad():
        logits = torch.stack([hf.lm_head(hf.transformer.ln_f(h))[0] for h in states]).float()
    torch.testing.assert_close(logits[-1], out.logits[0].float(), atol=1e-4, rtol=0)  # the last row: the model's own
    return logits


@pytest.mark.parametrize("shape", ["3 layers", "5 layers, scaled attention",
                                   pytest.param("48 layers, gpt2-xl's depth", marks=pytest.mark.slow)])
def test_every_layer_equals_transformers_hidden_states_through_ln_f_and_the_head(tmp_path, shape):
    hf = sharp_hf_model(5, **SHAPES[shape])
    lm = load_model(save_layout(hf, tmp_path, "hub"), device="cpu", dtype="fp32")
    try:
        ids = lm.tokenizer.encode(TEXT)
        expected = transformers_lens(hf, ids).softmax(-1)  # (rows, T, vocab)
        vocab = lm.config.vocab_size
        found = lens_ids(lm.model, ids, top=vocab)  # every token's probability at every row and position
        order = found.top_ids.argsort(-1)
        probs = found.top_probs.gather(-1, order)  # back in vocabulary order
        assert probs.shape == expected.shape == (hf.config.n_layer + 1, len(ids), vocab)
        torch.testing.assert_close(probs, expected, atol=PROB_ATOL, rtol=0)
        assert not torch.allclose(expected[0], expected[-1], atol=0.05), "the layers guess differently"

        lens = lm.logit_lens(TEXT, top=5, target=" Paris")
        logits = transformers_lens(hf, ids)
        for row in range(len(lens.layers)):
            for t, cell in enumerate(lens.cells[row]):
                assert_top_ids([i for _, i, _ in cell.top], logits[row, t])
                for _, i, p in cell.top:
                    assert abs(p - float(expected[row, t, i])) < PROB_ATOL
                assert abs(cell.target_prob - float(expected[row, t, lens.target_id])) < PROB_ATOL
                assert_rank(cell.target_rank, logits[row, t], lens.target_id)
                assert_rank(cell.final_rank, logits[row, t], int(logits[-1, t].argmax()))
    finally:
        lm.close()


def test_the_last_row_is_the_models_own_next_token_distribution(lm):
    text = "It was a bright cold day in April, and the clocks"
    lens = lm.logit_lens(text, top=5)
    assert lens.layers == ["embeddings", "layer 1", "layer 2"] and len(lens.cells) == lm.config.n_layer + 1
    assert "".join(lens.tokens) == text and lens.token_ids == lm.tokenizer.encode(text)
    last = lens.cells[-1][-1].top
    expected = lm.next_token_probs(text, k=5)
    assert [i for _, i, _ in last] == [i for _, i, _ in expected]
    assert [p for *_, p in last] == pytest.approx([p for *_, p in expected], abs=1e-6)
    with torch.no_grad():
        own = lm.model(torch.tensor([lens.token_ids]))[0].softmax(-1)  # (T, vocab): the forward the engine runs
    for t, cell in enumerate(lens.cells[-1]):
        assert cell.final_rank == 1
        assert [p for *_, p in cell.top] == pytest.approx(own[t, [i for _, i, _ in cell.top]].tolist(), abs=1e-6)
    assert lens.final_guesses() == [cell.top[0] for cell in lens.cells[-1]]


def test_the_watched_tokens_rank_agrees_with_the_lists_and_commitment_with_the_ranks(lm):
    lens = lm.logit_lens("The dog barked at the mailman all morning", top=20, target=" the")
    for row in lens.cells:
        for cell in row:
            listed = [i for _, i, _ in cell.top]
            if lens.target_id in listed:
                place = listed.index(lens.target_id)
                assert cell.target_prob == pytest.approx(cell.top[place][2], abs=1e-7)
                assert cell.target_rank == place + 1 or cell.top[cell.target_rank - 1][2] == cell.target_prob  # a tie
            else:
                assert cell.target_rank > 20 and cell.target_prob <= cell.top[-1][2]
    for t, first in enumerate(lens.committed):
        ranks = [row[t].final_rank for row in lens.cells]
        assert all(r == 1 for r in ranks[first:]), (t, first, ranks)
        assert first == 0 or ranks[first - 1] != 1, (t, first, ranks)


def test_committed_rows_is_the_first_row_from_which_the_answer_stays_on_top():
    final_ranks = torch.tensor([[1, 5, 1, 9],
                                [3, 1, 1, 2],
                                [1, 1, 1, 1]])  # rows (embeddings, layer 1, output) x 4 positions
    assert committed_rows(final_ranks) == [2, 1, 0, 2]  # position 0 was on top at the embeddings, lost it, came back


def test_a_quantized_model_reads_its_own_head(tiny_checkpoint):
    int8 = load_model(tiny_checkpoint, device="cpu", quantize="int8")
    try:
        text = "Quantized layers give the same shape of answer"
        lens = int8.logit_lens(text, top=3, target=" the")
        assert len(lens.cells) == int8.config.n_layer + 1 and int8.precision == "int8"
        expected = int8.next_token_probs(text, k=3)
        assert [i for _, i, _ in lens.cells[-1][-1].top] == [i for _, i, _ in expected]
        assert [p for *_, p in lens.cells[-1][-1].top] == pytest.approx([p for *_, p in expected], abs=1e-5)
    finally:
        int8.close()


def test_the_bundled_model_reads_through_its_four_layers():
    mini = load_model(BUNDLED["mini-gpt2"], device="cpu", dtype="fp32")
    try:
        text = "ROMEO.\nO Romeo, Romeo, wherefore art"
        lens = mini.logit_lens(text, target=" thou")
        assert lens.layers == ["embeddings", "layer 1", "layer 2", "layer 3", "layer 4"]
        assert [i for _, i, _ in lens.cells[-1][-1].top] == [i for _, i, _ in mini.next_token_probs(text, k=5)]
        assert lens.cells[-1][-1].target_rank == 1, "the trained model knows its Shakespeare"
        assert lens.vocab_size == 4096
    finally:
        mini.close()


@pytest.mark.parametrize("vocab_size, worst, ticks", [
    (4096, 1200, ["1st (top)", "10th", "100th", "1,000th", "4,096th"]),  # the bundled model: down to its last word
    (50257, 1200, ["1st (top)", "10th", "100th", "1,000th", "10,000th"]),  # GPT-2: the next power of ten
    (None, 40, ["1st (top)", "10th", "100th"]),  # not told: as before
])
def test_the_watched_words_rank_axis_ends_at_the_vocabularys_last_word_or_a_power_of_ten(vocab_size, worst, ticks):
    import re

    from demo.lens_pictures import CHART_HEIGHT, CHART_TOP, rank_chart_svg
    from gpt2_core.explain.lens import LensCell, LogitLens

    def cell(rank: int) -> LensCell:
        return LensCell([(" Paris", 6342, 0.6)], final_rank=rank)

    lens = LogitLens(tokens=["The", " city"], token_ids=[464, 1748], layers=["embeddings", "layer 1", "layer 2"],
                     cells=[[cell(worst)] * 2, [cell(7)] * 2, [cell(1)] * 2], committed=[2, 2], vocab_size=vocab_size)
    chart = rank_chart_svg(lens, 1)
    labels = re.findall(r'text-anchor="end">([^<]+)</text>', chart)
    assert labels == ticks
    ticks_y = [float(y) for y in re.findall(r'<line [^>]*y1="([0-9.]+)"', chart)]
    dots_y = [float(y) for y in re.findall(r'<circle [^>]*cy="([0-9.]+)"', chart)]
    assert ticks_y == sorted(ticks_y) and ticks_y[0] == min(dots_y) == CHART_TOP  # the 1st on top: the output's
    assert max(dots_y) < ticks_y[-1] < CHART_HEIGHT  # the worst rank above the axis' end, inside the chart


def test_the_lens_leaves_decoding_untouched(lm):
    before = lm.generate("Hello world", max_new_tokens=12, temperature=0)[0].token_ids
    lm.logit_lens("Hello world, and more words here", target=" and")
    assert lm.generate("Hello world", max_new_tokens=12, temperature=0)[0].token_ids == before


def test_target_has_to_be_exactly_one_token_and_says_which_pieces_it_has(lm):
    with pytest.raises(ValueError, match=r"^`target` has to be exactly one token of the vocabulary, but ' Parisian' is "
                                         r"2 tokens \(' Paris' \+ 'ian'\): try its first token, ' Paris'$"):
        lm.logit_lens("The city of", target=" Parisian")
    # a character of several tokens: each shown as its bytes (not as '' + '' + ' 🦄'), and no first token offered
    with pytest.raises(ValueError, match=r"^`target` has to be exactly one token of the vocabulary, but ' 🦄' is "
                                         r"3 tokens \('\[bytes 20 f0 9f\]' \+ '\[bytes a6\]' \+ '\[bytes 84\]'\)$"):
        lm.logit_lens("The city of", target=" 🦄")
    with pytest.raises(ValueError, match=r"^`target` has to be exactly one token of the vocabulary, but '  Paris' is "
                                         r"2 tokens \(' ' \+ ' Paris'\)$"):  # a space alone is no word to watch
        lm.logit_lens("The city of", target="  Paris")
    with pytest.raises(ValueError, match=r"`target` has to be exactly one token of the vocabulary, but is empty"):
        lm.logit_lens("The city of", target="")
    with pytest.raises(ValueError, match=r"`target` has to be a string of one token, or None, but is int"):
        lm.logit_lens("The city of", target=6342)
    assert lm.logit_lens("The city of", target=" Paris").target_id == 6342
    assert lm.logit_lens("The city of", target="Paris").target_id == 40313, "no space: another token, taken as typed"


def test_text_and_top_are_checked_with_the_grids_limit(lm):
    with pytest.raises(ValueError, match=rf"`text` has to be 1 to {MAX_LENS_TOKENS} tokens long to read it through "
                                         r"the layers, but has 0"):
        lm.logit_lens("")
    with pytest.raises(ValueError, match=rf"`text` has to be 1 to {MAX_LENS_TOKENS} tokens long .* but has 70"):
        lm.logit_lens(" word" * 70)
    with pytest.raises(ValueError, match=r"`top` has to be an integer in \[1, 20\], but is 0"):
        lm.logit_lens("fine", top=0)
    with pytest.raises(ValueError, match=r"`text` has to be a string, but is NoneType"):
        lm.logit_lens(None)


def test_a_model_server_refuses_with_the_reason():
    from test_remote import replaying

    remote, transport = replaying()
    assert LENS in remote.describe().unavailable
    with pytest.raises(FeatureUnavailableError, match="The logit lens is not available here: .*model server reports "
                                                      "only the last layer's tokens"):
        remote.logit_lens("Hello")
    with pytest.raises(FeatureUnavailableError, match="not available in remote mode"):
        remote.backend.logit_lens([1, 2], top=5, target=None)
    assert transport.requests == [], "refused before asking the server anything"


def test_every_cells_ink_reads_on_its_blue():
    from demo.lens_pictures import blend, ink_on, luminance

    for p in [i / 500 for i in range(501)]:
        background = luminance(blend(p))
        ink = luminance((255, 255, 255) if ink_on(blend(p)) == "#ffffff" else (0, 0, 0))
        lighter, darker = max(background, ink), min(background, ink)
        assert (lighter + 0.05) / (darker + 0.05) >= 4.5, p  # WCAG AA for the cells' 15 px text


def test_a_guess_made_of_control_characters_is_drawn_in_letters():
    from demo.lens_pictures import cell_label, shown

    assert cell_label("\x10") == "\\x10" and cell_label(" \x7f") == "\\x7f"  # a font draws them as nothing or a box
    assert shown(" a\x0b") == "\u2423a\\x0b" and cell_label("\n") == "\u23ce" and shown("\t") == "\u21e5"


def test_the_text_is_coloured_by_when_the_model_committed_to_each_word(lm):
    from demo.lens_pictures import band, commitment_segments

    (sample,) = lm.generate("The history of", max_new_tokens=8, temperature=0)
    lens = lm.logit_lens("The history of" + sample.text)
    segments = commitment_segments(lens)
    assert "".join(text for text, _ in segments) == "The history of" + sample.text
    generated = lm.tokenizer.encode("The history of") + sample.token_ids
    shown = [t for t in range(len(lens.tokens)) if lens.tokens[t]]  # the tokens with text of their own
    assert len(segments) == len(shown) and segments[0][1] is None, "nothing guessed the first token"
    n_layer, checked = len(lens.layers) - 1, 0
    for (_, category), t in zip(segments[1:], shown[1:]):
        top_guess = lens.cells[-1][t - 1].top[0][1] == lens.token_ids[t]
        assert category == (band(lens.committed[t - 1], n_layer) if top_guess else None), t
        # greedy: every generated token was the top guess (a last partial character re-encodes otherwise)
        if t >= 3 and t < len(generated) and lens.token_ids[t] == generated[t]:
            assert top_guess, t
            checked += 1
    assert checked >= 6
    assert [band(r, 12) for r in (0, 1, 4, 5, 8, 9, 11, 12)] == [
        "embeddings", "early layers", "early layers", "middle layers", "middle layers", "late layers", "late layers",
        "last layer only"]


def test_the_commitment_saves_as_a_page_with_each_words_layer_in_the_pages_language(lm):
    import html
    import re

    from demo.i18n import speaking, tables
    from demo.lens_pictures import COMMIT_COLORS, band, commitment_html, commitment_segments, row_name

    (sample,) = lm.generate("The history of", max_new_tokens=8, temperature=0)
    lens = lm.logit_lens("The history of" + sample.text)
    page = commitment_html(lens, model="GPT-2 tiny (fp32)")
    spans = [(cls, html.unescape(tip), html.unescape(text))
             for cls, tip, text in re.findall(r"<span class='(t[^']*)' title='([^']*)'>([^<]*)</span>", page)]
    assert "".join(text for _, _, text in spans) == "The history of" + sample.text  # (no markup in these tokens)
    coloured = [(cls, tip) for cls, tip, _ in spans if cls != "t"]
    assert coloured and len(coloured) == sum(1 for _, category in commitment_segments(lens) if category)
    n_layer = len(lens.layers) - 1
    expected = {f"t {band(r, n_layer).replace(' ', '-')}": f"GPT-2's top guess from {row_name(lens, r)} on"
                for r in range(n_layer + 1)}
    assert all(expected.get(cls) == tip for cls, tip in coloured), coloured
    assert all(f"</i>{name}</span>" in page for name in COMMIT_COLORS), "the legend names every band"
    assert "GPT-2 tiny (fp32)" in page and "<script" not in page and "http" not in page.split("<footer>")[0]
    with speaking("es"):
        spanish = commitment_html(lens, model="GPT-2 tiny (fp32)")
    assert "<html lang='es'>" in spanish and tables()["es"]["When GPT-2 committed to each word"] in spanish
    assert all(f"</i>{tables()['es'][name]}</span>" in spanish for name in COMMIT_COLORS)
    assert "la predicción principal de GPT-2 desde" in spanish


@pytest.fixture(scope="module")
def client(app) -> Client:
    return Client(app.url, verbose=False, analytics_enabled=False, download_files=False)


def test_layers_endpoint_returns_the_lens_as_json(client, app):
    text = "The Eiffel Tower is in the city of"
    found = client.predict(text, " Paris", api_name="/layers")
    lm = app.models.gpt2.current
    lens = lm.logit_lens(text, top=5, target=" Paris")
    assert found["model"] == lm.name and found["tokens"] == lens.tokens and found["target"] == " Paris"
    assert found["layers"] == lens.layers and found["committed"] == lens.committed
    assert len(found["cells"]) == len(lens.layers) and all(len(row) == len(lens.tokens) for row in found["cells"])
    for row, expected_row in zip(found["cells"], lens.cells):
        for cell, expected in zip(row, expected_row):
            assert [g["id"] for g in cell["top"]] == [i for _, i, _ in expected.top]
            assert [g["prob"] for g in cell["top"]] == pytest.approx([p for *_, p in expected.top], abs=1e-6)
            assert cell["target_rank"] == expected.target_rank and cell["final_rank"] == expected.final_rank
    without = client.predict(text, "", api_name="/layers")
    assert without["target"] is None and "target_rank" not in without["cells"][0][0]


def test_layers_endpoint_names_a_bad_target_and_serves_on(client):
    with pytest.raises(AppError, match=r"`target` has to be exactly one token of the vocabulary, but ' Parisian' is 2"):
        client.predict("The city of", " Parisian", api_name="/layers")
    assert client.predict("The city of", "", api_name="/layers")["cells"]


def test_a_guess_that_is_part_of_a_character_is_explained_under_the_grid():
    """The bundled model's embeddings guess bytes of a character for "The Eiffel Tower is in the city of", which the
    grid writes as [bytes f3]: a class asked what they were. The grid's help says, only where one is shown."""
    from demo.lens_pictures import grid_html
    from gpt2_core.explain.lens import LensCell, LogitLens

    def lens(guess: str) -> LogitLens:
        return LogitLens(tokens=["The", " city"], token_ids=[464, 1748], layers=["embeddings", "layer 1"],
                         cells=[[LensCell([(guess, 7, 0.2)], final_rank=3)] * 2, [LensCell([(" of", 286, 0.4)], 1)] * 2],
                         committed=[1, 1])

    assert "[bytes f3]</button>" in grid_html(lens("[bytes f3]"))
    assert ("<code>[bytes f3]</code>: a token that is only part of a character, written as its bytes"
            in grid_html(lens("[bytes f3]")))
    assert "part of a character" not in grid_html(lens(" Paris"))

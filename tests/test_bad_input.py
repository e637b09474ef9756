"""Bad input at every door: the Python API, /generate and /compare over gradio_client (and raw HTTP), and the CLI.

Each bad value is refused with a message naming the parameter and its allowed range, before any tensor is made (the
model's prefill is never called), and the next request works. Odd prompts (empty, 1023 / 1024 / 5000 tokens, 10 MB,
emoji, control characters, HTML) are generated from, trimmed visibly where too long. The browser side of HTML in a
prompt is in test_browser_limits.py.
"""

from __future__ import annotations

import io
import json
import math

import httpx
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from gpt2_core.cli import main
from gpt2_core.generate.settings import MAX_SEED

pytest_plugins = ["fixtures_ui"]

RANGES = {"max_new_tokens": "[1, 1023]", "temperature": "[0, 2]", "top_p": "(0, 1]", "top_k": "[0, 50257]",
          "seed": f"[0, {MAX_SEED}]"}
BAD = [("max_new_tokens", 0), ("max_new_tokens", -1), ("max_new_tokens", 3.7), ("max_new_tokens", 10**9),
       ("temperature", -1), ("temperature", math.nan), ("temperature", math.inf),
       ("top_p", 0), ("top_p", 1.5), ("top_p", math.nan),
       ("top_k", -5), ("top_k", 2.5), ("top_k", 10**6),
       ("seed", 2**64), ("seed", 1.5), ("seed", "abc")]
NOT_JSON = [(name, value) for name, value in BAD if isinstance(value, float) and not math.isfinite(value)]
IDS = [f"{name}={value!r}" for name, value in BAD]
HTML = "<script>alert('prompt')</script><img src=x onerror=alert(1)> & <b>bold</b>"
ODD = {"empty": "", "whitespace": "  \n\t  ", "emoji": "🦄🦄 unicorns 👩‍🔬 and flags 🇫🇷", "html": HTML,
       "control": "\x00\x07\x1b[31mred\x1b[0m\x7f\r\n\u202e reversed \ufeff"}


def tokens(n: int) -> str:
    """A prompt of exactly n GPT-2 tokens ("the" then " the" n-1 times; BPE never merges across the spaces)."""
    return "the" + " the" * (n - 1)


def message_names(message: str, name: str) -> bool:
    return f"`{name}` has to be" in message and RANGES[name] in message


class Prefills:
    """Counts a model's prefill calls: the moments a prompt becomes a tensor on the device."""

    def __init__(self, monkeypatch):
        self._monkeypatch = monkeypatch
        self.count = 0

    def watch(self, model) -> None:
        prefill = model.prefill

        def counted(*args, **kwargs):
            self.count += 1
            return prefill(*args, **kwargs)

        self._monkeypatch.setattr(model, "prefill", counted)


@pytest.fixture
def prefills(monkeypatch) -> Prefills:
    return Prefills(monkeypatch)


# ---- the Python API ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name,value", BAD, ids=IDS)
def test_python_api_refuses_bad_settings_before_any_tensor(lm, prefills, name, value):
    prefills.watch(lm.model)
    with pytest.raises(ValueError) as error:
        lm.generate("Hello", **{"max_new_tokens": 2, name: value})
    assert message_names(str(error.value), name), str(error.value)
    assert prefills.count == 0
    assert lm.generate("Hello", max_new_tokens=2, seed=1)[0].token_ids


@pytest.mark.parametrize("n,kept,truncated", [(1023, 1023, False), (1024, 1023, True), (5000, 1023, True)])
def test_python_api_keeps_the_end_of_a_long_prompt(lm, n, kept, truncated):
    assert len(lm.tokenizer.encode(tokens(n))) == n
    (sample,) = lm.generate(tokens(n), max_new_tokens=1, seed=1)
    assert (sample.prompt_tokens, sample.prompt_truncated, len(sample.token_ids)) == (kept, truncated, 1)


def test_python_api_temperature_near_zero_is_accepted(lm):
    (sample,) = lm.generate("Hello", max_new_tokens=4, temperature=1e-9)
    assert sample.token_ids == lm.generate("Hello", max_new_tokens=4, temperature=0)[0].token_ids


# ---- /generate over gradio_client and raw HTTP -------------------------------------------------------------------
@pytest.fixture(scope="module")
def client(app) -> Client:
    return Client(app.url, verbose=False, analytics_enabled=False, download_files=False)


def generate(client: Client, prompt: str = "Hello", **settings) -> tuple:
    return client.predict(prompt, **{"max_new_tokens": 2, "seed": 1, **settings}, api_name="/generate")


@pytest.mark.parametrize("name,value", [b for b in BAD if b not in NOT_JSON],
                         ids=[i for b, i in zip(BAD, IDS) if b not in NOT_JSON])
def test_api_refuses_bad_settings_before_any_tensor_and_serves_on(client, app, prefills, name, value):
    prefills.watch(app.models.gpt2.current.model)
    with pytest.raises(AppError) as error:
        generate(client, **{name: value})
    assert message_names(str(error.value), name), str(error.value)
    assert "Traceback" not in str(error.value)
    assert prefills.count == 0
    assert generate(client)[0] and prefills.count == 1


@pytest.mark.parametrize("name,value", NOT_JSON, ids=[f"{n}={v!r}" for n, v in NOT_JSON])
def test_nan_and_inf_are_refused_by_the_client_and_by_the_server(client, app, name, value):
    with pytest.raises(ValueError, match="not JSON compliant"):  # gradio_client will not send them
        generate(client, **{name: value})
    data = ["Hello", 2, 0.8, 40, 1.0, 1.0, 1, 1]
    data[["prompt", "max_new_tokens", "temperature", "top_k", "top_p"].index(name)] = value
    body = json.dumps({"data": data})  # Python writes NaN / Infinity, which the server's JSON parser reads
    api = app.url.rstrip("/") + "/gradio_api/call/generate"
    event_id = httpx.post(api, content=body, headers={"content-type": "application/json"}).json()["event_id"]
    answer = httpx.get(f"{api}/{event_id}", timeout=30).text
    assert "event: error" in answer and message_names(answer, name), answer
    assert generate(client)[0]


@pytest.mark.parametrize("prompt", ODD.values(), ids=ODD.keys())
def test_api_generates_from_odd_prompts(client, prompt):
    texts = generate(client, prompt)
    assert isinstance(texts[0], str) and "prompt token" in texts[5]
    assert "trimmed" not in texts[5] and "done" in texts[4]


@pytest.mark.parametrize("n,shown", [(1023, "1023 prompt tokens + 1 new = 1024 of 1024"),
                                     (1024, "1023 prompt tokens + 1 new = 1024 of 1024"),
                                     (5000, "1023 prompt tokens + 1 new = 1024 of 1024")])
def test_api_long_prompt_keeps_its_end_and_says_so_past_the_context(client, n, shown):
    meter = generate(client, tokens(n), max_new_tokens=1)[5]
    assert shown in meter
    assert ("trimmed" in meter) == (n > 1023)


def test_api_ten_megabyte_prompt_is_trimmed_and_the_server_serves_on(client):
    meter = generate(client, "a" * 10_000_000 + " the end")[5]
    assert "trimmed" in meter and "1024" in meter
    assert generate(client)[0]


def test_error_message_quotes_a_huge_bad_value_only_in_part(client):
    with pytest.raises(AppError) as error:
        generate(client, top_k="9" * 1_000_000 + "x")
    assert message_names(str(error.value), "top_k") and len(str(error.value)) < 300


# ---- /compare ------------------------------------------------------------------------------------------------------
def test_compare_shows_html_in_the_sentence_as_text(client):
    seen = client.predict("<script>alert(1)</script> The ___ barked.", api_name="/compare")[3]
    assert "\\<script\\>alert\\(1\\)\\</script\\>" in seen  # escaped for Markdown: shown, not rendered


@pytest.mark.parametrize("sentence, message", [
    ("", "exactly one blank, written ___ or [MASK], but has 0"),
    ("   ", "exactly one blank, written ___ or [MASK], but has 0"),
    ("🦄 ___ [MASK] 🦄", "exactly one blank, written ___ or [MASK], but has 2"),
    ("x ___ " * 2_000_000, "`sentence` has to be at most 1000 characters, but has 12000000"),
])
def test_compare_refuses_sentences_without_one_blank(client, sentence, message):
    with pytest.raises(AppError) as error:
        client.predict(sentence, api_name="/compare")
    assert message in str(error.value) and len(str(error.value)) < 300
    assert client.predict("A ___ sat.", api_name="/compare")[0]["confidences"]


# ---- the CLI -------------------------------------------------------------------------------------------------------
CLI_FLAGS = {"max_new_tokens": "--max-new-tokens", "temperature": "--temperature", "top_p": "--top-p",
             "top_k": "--top-k", "seed": "--seed"}


@pytest.mark.parametrize("name,value", BAD, ids=IDS)
def test_cli_refuses_bad_settings_before_loading(name, value, capsys):
    # A model that does not exist: were the value checked only after loading, this would exit 1, not 2.
    code = main(["generate", "--model", "/no/such/model", CLI_FLAGS[name], str(value)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and message_names(err, name), err


@pytest.mark.parametrize("prompt", ODD.values(), ids=ODD.keys())
def test_cli_generates_from_odd_prompts(tiny_checkpoint, prompt, capsys):
    assert main(["generate", "--model", str(tiny_checkpoint), "--device", "cpu", "--prompt", prompt,
                 "--max-new-tokens", "3", "--seed", "1", "--temperature", "1e-9", "--json"]) == 0
    sample = json.loads(capsys.readouterr().out)
    assert len(sample["token_ids"]) == 3 and sample["prompt_tokens"] >= 1 and not sample["prompt_truncated"]


def test_cli_reads_a_ten_megabyte_prompt_from_stdin_and_keeps_its_end(tiny_checkpoint, monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO("a" * 10_000_000 + " the end"))
    assert main(["generate", "--model", str(tiny_checkpoint), "--device", "cpu", "--prompt-file", "-",
                 "--max-new-tokens", "2", "--json"]) == 0
    sample = json.loads(capsys.readouterr().out)
    assert sample["prompt_truncated"] and sample["prompt_tokens"] == 1023


def test_cli_unreadable_prompt_file_exits_2(tmp_path, capsys):
    (tmp_path / "latin1.txt").write_bytes(b"caf\xe9")
    for path in (tmp_path / "missing.txt", tmp_path / "latin1.txt"):
        assert main(["generate", "--model", "/no/such/model", "--prompt-file", str(path)]) == 2
        err = capsys.readouterr().err
        assert "`prompt_file` has to be a readable UTF-8 text file" in err and err.count("\n") == 1


def test_a_message_quoting_the_users_html_carries_it_as_text(client):
    with pytest.raises(AppError) as error:  # the page's error toast renders HTML, so the quote is escaped
        client.predict("<b id=x>no blank</b>", api_name="/compare")
    assert "&lt;b id=x&gt;no blank&lt;/b&gt;" in str(error.value) and "<b" not in str(error.value)


# ---- what a script can send that the page cannot: lone surrogates, settings at the very edge of their ranges -------
def raw_call(app, endpoint: str, data: list) -> str:
    """The events of one raw /gradio_api/call (JSON may carry a lone surrogate as "\\ud800"; gradio_client cannot)."""
    api = app.url.rstrip("/") + f"/gradio_api/call/{endpoint}"
    body = json.dumps({"data": data})  # ensure_ascii: "\ud800" goes as its escape
    event_id = httpx.post(api, content=body, headers={"content-type": "application/json"}).json()["event_id"]
    return httpx.get(f"{api}/{event_id}", timeout=60).text


LONE = "The \ud800 ___ barked"
TEXT_DOORS = {"generate": (["prompt"], [LONE, 2, 0.8, 40, 1.0, 1.0, 1, 1]),
              "explore": (["prompt"], [LONE, 0.8, 40, 1.0]),
              "score": (["text"], [LONE]),
              "compare": (["sentence"], [LONE]),
              "attention": (["text"], [LONE, 0, 0]),
              "layers": (["text", "target"], [LONE, "\udfff"]),
              "scale": (["prompt"], [LONE, 1])}


@pytest.mark.parametrize("endpoint", TEXT_DOORS)
def test_a_lone_surrogate_is_refused_naming_the_parameter(app, client, endpoint):
    names, data = TEXT_DOORS[endpoint]
    answer = raw_call(app, endpoint, data)
    assert "event: error" in answer and "has to be valid Unicode text" in answer, answer
    assert any(f"`{name}` has to be valid Unicode text" in answer for name in names), answer
    assert "Something went wrong" not in answer
    assert generate(client)[0]


@pytest.mark.parametrize("name,value", [("temperature", 1e-38), ("temperature", 5e-324), ("top_p", 5e-324),
                                        ("repetition_penalty", 1e-39)])
def test_settings_at_the_edge_of_their_ranges_generate(app, name, value):
    data = ["Hello", 4, 0.8, 40, 1.0, 1.0, 1, 1]
    data[["prompt", "max_new_tokens", "temperature", "top_k", "top_p", "repetition_penalty"].index(name)] = value
    answer = raw_call(app, "generate", data)
    assert "event: complete" in answer and "done" in answer, answer


def test_explore_at_the_edge_of_the_ranges_gives_probabilities(app):
    for data in (["Hello", 1e-40, 40, 1.0], ["Hello", 0.8, 0, 5e-324]):
        answer = raw_call(app, "explore", data)
        assert "event: complete" in answer, answer
        after_settings = json.loads(answer.split("data: ", 1)[1].splitlines()[0])[0]
        confidences = [c["confidence"] for c in after_settings["confidences"]]
        assert confidences and None not in confidences and max(confidences) == pytest.approx(1.0), confidences


def test_a_refusal_in_a_tabs_place_draws_the_name_as_code_and_the_quoted_text_as_written():
    """Inside and Layers show a refused text's message where the maps or the grid were (gr.Markdown): the parameter's
    name as code, as the run state and the toasts draw it, and the text it quotes never as formatting."""
    from demo.errors import message_markdown

    message = "`text` has to be 1 to 64 tokens long to read it through the layers, but has 65: '*bold* <b>x</b> `y`'"
    shown = message_markdown(message)
    assert shown.startswith("`text` has to be 1 to 64 tokens long")  # code, not \`text\`
    assert "\\*bold\\* \\<b\\>x\\</b\\> \\`y\\`" in shown  # the quoted text as written, its backticks too
    assert message_markdown("`max_new_tokens` has to be an integer") == "`max_new_tokens` has to be an integer"

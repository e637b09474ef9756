"""The app through its API, as gradio_client sees it, on tiny checkpoints; and its start-up (flags, env, no model).

The shared `app` fixture (fixtures_ui.py) serves the real demo with a GPT-2 slowed to 20 ms per token, so streaming
and Stop can be observed. Nothing here needs the network: the Hub is out of reach and the tests do not ask it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from dataclasses import replace
from pathlib import Path

import gradio as gr
import httpx
import pytest
import torch
from gradio_client import Client
from gradio_client.exceptions import AppError
from ui_helpers import free_port, launched_app, wait_until

from demo import AppConfig
from demo.errors import GENERIC_MESSAGE
from demo.examples import load_examples
from demo.model_panel import info_markdown, make_switch, memory_table
from demo.models import AppModels, LazyFillMask, ModelHolder
from gpt2_core import PRESETS, ModelUnavailableError, load_model
from gpt2_core.bert.compare import split_blank

pytest_plugins = ["fixtures_ui"]

ROOT = Path(__file__).resolve().parent.parent
UNICORN = ("In a shocking finding, scientist discovered a herd of unicorns living in a remote, previously unexplored "
           "valley, in the Andes Mountains. Even more surprising to the researchers was the fact that the unicorns "
           "spoke perfect English.")


@pytest.fixture(scope="module")
def client(app) -> Client:
    return Client(app.url, verbose=False, analytics_enabled=False, download_files=False)


def generate(client: Client, prompt: str = "Hello", **settings):
    return client.predict(prompt, **{"max_new_tokens": 8, **settings}, api_name="/generate")


# ---- /generate ------------------------------------------------------------------------------------------------------
def test_api_has_generate_and_compare_with_named_parameters(client):
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert sorted(endpoints) == ["/attention", "/compare", "/explore", "/generate", "/layers", "/scale",
                                 "/score"]  # helper events stay private
    names = [p["parameter_name"] for p in endpoints["/generate"]["parameters"]]
    assert names == ["prompt", "max_new_tokens", "temperature", "top_k", "top_p", "repetition_penalty", "seed",
                     "num_samples"]
    assert [p["parameter_name"] for p in endpoints["/compare"]["parameters"]] == ["sentence"]
    assert [p["parameter_name"] for p in endpoints["/explore"]["parameters"]] == ["prompt", "temperature", "top_k",
                                                                                   "top_p"]
    assert [p["parameter_name"] for p in endpoints["/score"]["parameters"]] == ["text"]
    assert [p["parameter_name"] for p in endpoints["/attention"]["parameters"]] == ["text", "layer", "head"]
    assert [p["parameter_name"] for p in endpoints["/scale"]["parameters"]] == ["prompt", "seed"]
    assert [p["parameter_name"] for p in endpoints["/layers"]["parameters"]] == ["text", "target"]


def test_generate_streams_growing_text(client):
    job = client.submit("Once upon a time", max_new_tokens=30, seed=3, api_name="/generate")
    final = job.result(timeout=30)
    texts = [output[0] for output in job.outputs()]
    assert len(set(texts)) >= 4, "the text should arrive in several steps, not at once"
    growing = all(b.startswith(a) for a, b in zip(texts, texts[1:], strict=False))
    assert growing, "each update should extend the previous text"
    assert final[0] == texts[-1] and len(final[0]) > 0
    assert "30" in final[4] and "done" in final[4]  # tokens generated, finished
    assert "4 prompt tokens + 30 new = 34 of 1024" in final[5]


def test_same_seed_same_text_and_the_random_seed_is_shown(client):
    first, again = generate(client, seed=1234, max_new_tokens=12), generate(client, seed=1234, max_new_tokens=12)
    assert first[0] == again[0] and first[0]
    assert "`1234`" in first[4]
    random_run = generate(client, seed=-1, max_new_tokens=12)
    shown_seed = int(random_run[4].split("**Seed** `")[1].split("`")[0])
    assert generate(client, seed=shown_seed, max_new_tokens=12)[0] == random_run[0]
    assert generate(client, seed=99, max_new_tokens=12)[0] != first[0]


def test_samples_fill_their_boxes_side_by_side(client):
    result = generate(client, num_samples=3, seed=5)
    assert all(result[:3]) and result[3] == ""
    assert len(set(result[:3])) == 3
    assert "`5, 6, 7`" in result[4]


def test_long_prompt_is_trimmed_with_a_notice(client):
    result = generate(client, "word " * 1500, max_new_tokens=4, seed=1)
    assert "1023 prompt + 4 new = 1027 tokens, more than the 1024 the model sees at once" in result[5]
    assert "trimmed" in result[5] and "window slid" in result[5]


@pytest.mark.parametrize("settings, message", [
    ({"num_samples": 2.5}, "`num_samples` has to be an integer in [1, 4], but is 2.5"),
    ({"num_samples": 5}, "`num_samples` has to be an integer in [1, 4], but is 5"),  # the page shows 4 boxes
    ({"seed": -5}, "`seed` has to be -1 (random) or an integer in [0, 9223372036854775807], but is -5"),
    ({"seed": 3.5}, "`seed` has to be -1 (random) or an integer"),
    ({"top_p": 5}, "`top_p` has to be a finite number in (0, 1], but is 5"),
    ({"top_k": -5}, "`top_k` has to be an integer in [0, 50257], but is -5"),
    ({"temperature": -1}, "`temperature` has to be a finite number in [0, 2], but is -1"),
    ({"max_new_tokens": 0}, "`max_new_tokens` has to be an integer in [1, 1023], but is 0"),
])
def test_bad_parameter_fails_that_call_and_the_next_call_works(client, settings, message):
    with pytest.raises(AppError) as error:
        generate(client, **settings)
    assert message in str(error.value)
    assert "Traceback" not in str(error.value)
    assert generate(client, seed=1)[0]


def test_stop_ends_the_work_in_the_engine(client, app):
    engine = app.models.gpt2.current.engine
    steps_before = engine.steps
    job = client.submit("Stop me", max_new_tokens=500, seed=1, api_name="/generate")
    wait_until(lambda: len(job.outputs()) >= 3, message="streaming to start")
    job.cancel()
    wait_until(lambda: engine.running == 0 and app.models.gpt2.in_flight() == 0, timeout=5,
               message="the engine to drop the stopped request")
    assert engine.steps - steps_before < 250, "the engine decoded on after Stop"  # 500 steps take 10 s
    assert generate(client, seed=1)[0]


# ---- /compare -------------------------------------------------------------------------------------------------------
def test_compare_returns_both_models_candidates(client):
    from ui_helpers import WORDS

    bert, gpt2_next, ranking, seen = client.predict("The ___ barked at the mailman all morning.", api_name="/compare")
    bert_words = [c["label"] for c in bert["confidences"]]
    assert len(bert_words) == 8 and set(bert_words) <= set(WORDS)
    assert len(gpt2_next["confidences"]) == 8
    assert sorted(c["label"] for c in ranking["confidences"]) == sorted(bert_words)
    assert sum(c["confidence"] for c in ranking["confidences"]) == pytest.approx(1.0)
    assert "GPT-2 read:** The" in seen


@pytest.mark.parametrize("sentence, blanks", [("The dog barked.", 0), ("The ___ barked at the ___.", 2)])
def test_compare_needs_exactly_one_blank(client, sentence, blanks):
    with pytest.raises(AppError, match=f"`sentence` has to contain exactly one blank.*but has {blanks}"):
        client.predict(sentence, api_name="/compare")
    assert client.predict("A ___ sat.", api_name="/compare")[0]["confidences"]


# ---- errors, a missing model --------------------------------------------------------------------------------------
class BrokenLM:
    """A real model that fails inside generation with a message that must not reach the browser."""

    def __init__(self, lm):
        self._lm = lm

    def stream(self, prompt="", params=None, **settings):
        raise RuntimeError("secret internal detail")
        yield

    def __getattr__(self, name):
        return getattr(self._lm, name)


def test_internal_error_reaches_the_client_as_a_generic_message(tiny_checkpoint, tiny_bert, caplog):
    def load_broken(source, **kwargs):
        return BrokenLM(load_model(source, **kwargs))

    with launched_app(tiny_checkpoint, tiny_bert, load_gpt2=load_broken) as running:
        client = Client(running.url, verbose=False, analytics_enabled=False, download_files=False)
        with pytest.raises(AppError) as error:
            generate(client)
    assert GENERIC_MESSAGE in str(error.value) and "secret" not in str(error.value)
    assert "secret internal detail" in caplog.text  # logged for the host, with its traceback


def test_app_without_gpt2_serves_the_bundled_model_and_says_why(tmp_path):
    """`python app.py` with the default model, not cached, Hub unreachable: the page serves the bundled mini model
    (real words, offline) and says that and why, with the fix for GPT-2."""
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "GRADIO_ANALYTICS_ENABLED": "False",
           "GPT2_DEVICE": "cpu"}
    for host_choice in ("GPT2_THREADS", "GRADIO_SERVER_NAME", "HOST", "GPT2_SHARE"):  # the defaults, as a newcomer's
        env.pop(host_choice, None)
    process = subprocess.Popen([sys.executable, "app.py", "--port", str(port)], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        config = wait_until(lambda: fetch_config(port), timeout=60, interval=0.2, message="the app to serve")
        client = Client(f"http://127.0.0.1:{port}/", verbose=False, analytics_enabled=False, download_files=False)
        sample, *_, stats, _ = client.predict("ROMEO.", 24, 0.8, 40, 1.0, 1.0, 7, 1, api_name="/generate")
    finally:
        process.terminate()
        console = process.communicate(timeout=20)[0]
    page = json.dumps(config)
    assert "A small model trained on Shakespeare serves here, not GPT-2: why" in page and "mini-gpt2" in page
    assert "python -m gpt2_core download gpt2" in page  # and how to get GPT-2 itself
    assert "python -m gpt2_core download gpt2" in console
    assert "`mini-gpt2`" in stats and len(sample.split()) >= 5  # words, from a trained model
    assert "Traceback" not in console
    assert f"Running on local URL:  http://127.0.0.1:{port}" in console
    assert "restart with --share" in console and "share=True" not in console  # the app's flag, not launch()
    cores = torch.get_num_threads()  # PyTorch's default here is the app's: the same environment
    if cores > 1 and not os.environ.get("OMP_NUM_THREADS"):  # a browser on this machine gets a core
        assert f"PyTorch's CPU threads: {cores - 1}, not {cores}: one core is left for the browser" in console


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_stopping_the_app_removes_its_temporary_files(tmp_path, stop):
    """An upload received, then the app stopped as a container (SIGTERM) or Ctrl+C (SIGINT) stops it: Gradio's
    copies of the files it received are gone, and so is anything the app wrote to the temp directory. What it keeps
    on purpose, Inductor's compiled graphs, has a folder in the user's cache instead (a reboot may empty the temp
    directory)."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "GRADIO_ANALYTICS_ENABLED": "False",
           "GPT2_DEVICE": "cpu", "TMPDIR": str(temp), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    for chosen in ("GRADIO_TEMP_DIR", "TORCHINDUCTOR_CACHE_DIR"):
        env.pop(chosen, None)  # as on a host that did not choose them
    process = subprocess.Popen([sys.executable, "app.py", "--port", str(port)], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_until(lambda: fetch_config(port), timeout=60, interval=0.2, message="the app to serve")
        answer = httpx.post(f"http://127.0.0.1:{port}/gradio_api/upload",
                            files={"files": ("my-text.txt", b"ROMEO. What say you?\n" * 50)}, timeout=30)
        assert answer.status_code == 200, answer.text
        assert any(p.name == "my-text.txt" for p in temp.rglob("*")), "the upload landed in the app's own cache"
    finally:
        process.send_signal(stop)
        console = process.communicate(timeout=30)[0]
    assert process.returncode == 0 and "Traceback" not in console, console[-2000:]  # it stopped, not killed
    # (importing torch._dynamo makes Inductor's default folder there, empty: the app's graphs go to its own folder)
    left = [p for p in temp.iterdir() if not (p.name.startswith("torchinductor_") and not any(p.iterdir()))]
    assert left == [], f"left behind: {sorted(str(p) for p in temp.rglob('*'))}"
    assert len(list((tmp_path / "cache" / "gpt2-playground" / "torchinductor").iterdir())) == 1  # this CPU's folder


def test_a_stop_while_the_app_starts_still_removes_its_temporary_files(tmp_path):
    """A container stopped while the app is still loading (SIGTERM before the page serves; its default action would
    kill the app on the spot): the app's temporary folder, made first thing, goes all the same."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "GRADIO_ANALYTICS_ENABLED": "False",
           "GPT2_DEVICE": "cpu", "TMPDIR": str(temp)}
    env.pop("GRADIO_TEMP_DIR", None)
    process = subprocess.Popen([sys.executable, "app.py", "--port", str(free_port())], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_until(lambda: list(temp.glob("gpt2-playground-gradio-*")), timeout=60, interval=0.05,
                   message="the app's temporary folder")
    finally:
        process.send_signal(signal.SIGTERM)
        console = process.communicate(timeout=60)[0]
    assert "Running on local URL" not in console, "the stop came after start-up: this test needs it during"
    # (-SIGINT is Python's own exit on a KeyboardInterrupt it did not catch, after its clean-up)
    assert process.returncode != -signal.SIGTERM, "SIGTERM's default action killed the app before any clean-up"
    assert list(temp.iterdir()) == [], f"left behind: {sorted(str(p) for p in temp.rglob('*'))}"


def test_closing_the_app_removes_its_workspace_of_downloads_and_training_runs(tiny_checkpoint, tmp_path):
    from demo import build_demo, start_models
    from demo.exports import Exports

    config = AppConfig(model=str(tiny_checkpoint), device="cpu", allow_training=True)
    models = start_models(config)
    demo = build_demo(config, models=models)
    assert demo.workspace.root is None, "nothing is written before a visitor asks for a file"
    path = Exports(demo.workspace).write("gpt2-sample.txt", "ROMEO.")
    run = demo.jobs.start("teacher", "ROMEO. What say you?\n" * 400, init="tiny", minutes=5)
    root = demo.workspace.root
    assert root is not None and Path(path).is_file() and run.out_dir.parent.is_relative_to(root)
    demo.close()  # what app.py does on Ctrl+C and SIGTERM
    models.close()
    assert not root.exists() and run.finished, "the training child ended and the workspace went"


def fetch_config(port: int) -> dict | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/config", timeout=2) as response:
            return json.loads(response.read())
    except OSError:
        return None


def test_generate_without_a_model_explains_the_fix():
    def unavailable(source, **kwargs):
        raise ModelUnavailableError(f"model {source!r} is not cached. Fix: `python -m gpt2_core download {source}`")

    holder = ModelHolder(unavailable, "gpt2")
    assert holder.current is None and "python -m gpt2_core download gpt2" in holder.error
    with pytest.raises(ModelUnavailableError, match="download gpt2"):
        with holder.use():
            pass


# ---- switching models -----------------------------------------------------------------------------------------------
@pytest.fixture
def two_models(tmp_path, tiny_checkpoint):
    from conftest import random_hf_model, save_layout

    other = save_layout(random_hf_model(seed=1), tmp_path / "other", "hub")
    sources = {"gpt2": tiny_checkpoint, "distilgpt2": other}
    holder = ModelHolder(lambda name: load_model(sources.get(name, "/nowhere/" + name), device="cpu", dtype="fp32"), "gpt2")
    yield holder
    holder.close()


def test_switch_lets_running_requests_finish_on_the_old_model(two_models):
    holder = two_models
    with holder.use() as old:
        stream = old.stream("Hi", max_new_tokens=20, seed=1)
        next(stream)
        new = holder.switch("distilgpt2")
        assert holder.current is new is not old
        rest = list(stream)  # the old model goes on serving the request it started
        assert rest[-1][0].finish_reason == "length"
    with pytest.raises(RuntimeError, match="closed"):  # closed once its last request ended
        old.generate("Hi", max_new_tokens=2)
    with holder.use() as current:
        assert current is new and current.generate("Hi", max_new_tokens=2, seed=1)[0].token_ids


def test_failed_switch_keeps_the_old_model(two_models):
    before = two_models.current
    with pytest.raises(ModelUnavailableError, match="not-a-model"):
        two_models.switch("not-a-model")
    assert two_models.current is before and two_models.error is None


def test_page_can_only_switch_to_the_listed_models(two_models):
    models = AppModels(two_models, LazyFillMask(lambda s: None, "bert"), choices=["gpt2", "distilgpt2"])
    switch = make_switch(models)
    with pytest.raises(gr.Error, match="`model` has to be one of gpt2, distilgpt2, but is 'someone/evil-repo'"):
        switch("someone/evil-repo", progress=lambda *a, **k: None)
    banner, info, status, _ = switch("distilgpt2", progress=lambda *a, **k: None)
    assert "distilgpt2" in status and "Loaded" in status


def test_model_panel_states_size_device_precision_and_memory(lm):
    models = AppModels(ModelHolder(lambda s: lm, "tiny"), LazyFillMask(lambda s: None, "bert"), choices=[])
    info = info_markdown(models)
    assert f"{lm.num_parameters() / 1e6:.1f}M" in info and "cpu" in info and "fp32" in info and "MB" in info
    assert "fp32 (exact" in info  # what the precision means
    table = memory_table()
    assert all(name in table for name in PRESETS) and "nf4" in table


def test_the_fast_path_says_so_in_the_panel_and_beside_its_probabilities(tiny_checkpoint):
    """The CPU default (int8): the panel's line says what int8 means, the explanations that their numbers come from it;
    the exact engine's explanations name the model alone."""
    from demo.precision_notes import source_note

    fast = load_model(tiny_checkpoint, device="cpu")
    try:
        models = AppModels(ModelHolder(lambda s: fast, "tiny"), LazyFillMask(lambda s: None, "bert"), choices=[])
        info = info_markdown(models)
        assert "**precision** int8 (the same next word as fp32 at 97% of places)" in info
        d = fast.describe()
        assert "int8" in source_note(d) and "fast path" in source_note(d)
        assert source_note(replace(d, precision="float32")) == f"`{d.name}`"
        compiling = info_markdown(AppModels(ModelHolder(lambda s: _Described(fast, decoding="compiling"), "tiny"),
                                            LazyFillMask(lambda s: None, "bert"), choices=[]))
        assert "compiling in the background" in compiling
    finally:
        fast.close()


class _Described:
    """A model whose description says `decoding` (a compile in progress takes seconds to show for real)."""

    def __init__(self, lm, **changes):
        self.lm, self.changes = lm, changes

    def describe(self):
        return replace(self.lm.describe(), **self.changes)


# ---- start-up settings and examples ---------------------------------------------------------------------------------
def test_flags_win_over_environment_over_defaults():
    env = {"GPT2_MODEL": "gpt2-medium", "GRADIO_SERVER_NAME": "0.0.0.0", "PORT": "8080", "GPT2_SHARE": "1",
           "BERT_MODEL": "/models/bert", "GPT2_QUANTIZE": "int8", "GPT2_DEVICE": "cuda"}
    from_env = AppConfig.from_env_and_args([], env)
    assert from_env == AppConfig(model="gpt2-medium", bert_model="/models/bert", quantize="int8", device="cuda",
                                 host="0.0.0.0", port=8080, share=True)
    flags = AppConfig.from_env_and_args(["--model", "distilgpt2", "--port", "9000", "--no-share"], env)
    assert (flags.model, flags.port, flags.share, flags.host) == ("distilgpt2", 9000, False, "0.0.0.0")
    assert AppConfig.from_env_and_args([], {}) == AppConfig()
    assert AppConfig().launch_kwargs()["server_name"] == "127.0.0.1" and AppConfig().share is False


def test_compiling_is_automatic_by_default_and_can_be_forced_either_way():
    assert AppConfig.from_env_and_args([], {}).compile is None  # auto: where it pays and the memory is free
    assert AppConfig.from_env_and_args([], {"GPT2_COMPILE": "1"}).compile is True
    assert AppConfig.from_env_and_args([], {"GPT2_COMPILE": "0"}).compile is False
    assert AppConfig.from_env_and_args(["--no-compile"], {"GPT2_COMPILE": "1"}).compile is False
    assert AppConfig.from_env_and_args(["--compile"], {"GPT2_COMPILE": "off"}).compile is True


def test_the_app_asks_for_the_fast_path_unless_told_exact_or_not_to_compile(tiny_checkpoint):
    """No flags: int8 and compile "auto" (gpt2_core/precision.py decides); --compile: in the background, whatever the
    size; --no-compile: never; --exact: fp32 without quantization, the engine proven equal to transformers."""
    from demo import start_models

    asked = []

    def load(source, **kwargs):
        asked.append(kwargs)
        return load_model(source, **{**kwargs, "compile": False})  # record, do not spend the seconds

    for settings in (dict(), dict(compile=True), dict(compile=False), dict(exact=True)):
        start_models(AppConfig(model=str(tiny_checkpoint), device="cpu", **settings), load_gpt2=load).close()
    assert asked == [dict(device="cpu", quantize="auto", compile="auto"),
                     dict(device="cpu", quantize="auto", compile="background"),
                     dict(device="cpu", quantize="auto", compile=False),
                     dict(device="cpu", dtype="fp32", quantize=None, compile="auto")]


def test_exact_is_a_flag_and_an_environment_variable_and_excludes_quantize():
    assert AppConfig.from_env_and_args([]).exact is False
    assert AppConfig.from_env_and_args(["--exact"]).exact is True
    assert AppConfig.from_env_and_args([], {"GPT2_EXACT": "1"}).exact is True
    with pytest.raises(SystemExit):
        AppConfig.from_env_and_args(["--exact", "--quantize", "int8"])


def test_the_engine_leaves_a_core_to_a_browser_on_this_machine():
    """Served to 127.0.0.1 only, the page is read on this machine, whose browser redraws the text while GPT-2 writes:
    the engine takes one thread less than PyTorch's one a core. Other machines' browsers (Spaces, a classroom's
    network, a share link) leave every core to it, and so do the host's own choices."""
    here, room = AppConfig(), AppConfig(host="0.0.0.0")
    assert here.cpu_threads(2, {}) == 1 and here.cpu_threads(8, {}) == 7
    assert here.cpu_threads(1, {}) is None  # one core: nothing to leave
    assert room.cpu_threads(2, {}) is None and AppConfig(share=True).cpu_threads(2, {}) is None
    assert here.cpu_threads(2, {"OMP_NUM_THREADS": "2"}) is None  # the host's OpenMP setting stays
    assert AppConfig.from_env_and_args(["--threads", "2"], {}).cpu_threads(2, {"OMP_NUM_THREADS": "1"}) == 2
    assert AppConfig.from_env_and_args([], {"GPT2_THREADS": "3"}).cpu_threads(8, {}) == 3
    assert AppConfig.from_env_and_args(["--threads", "1"], {"GPT2_THREADS": "3"}).threads == 1  # the flag wins


def test_use_cpu_threads_gives_pytorch_the_chosen_count(monkeypatch, caplog):
    import demo.app
    from gpt2_core import threads

    used: list[int] = []
    monkeypatch.setattr(threads, "cpu_threads", lambda: 4)
    monkeypatch.setattr(threads, "use_cpu_threads", used.append)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    with caplog.at_level("INFO", logger="demo.app"):
        demo.app.use_cpu_threads(AppConfig())
        demo.app.use_cpu_threads(AppConfig(host="0.0.0.0"))  # all four: nothing to change
        demo.app.use_cpu_threads(AppConfig(threads=2))
    assert used == [3, 2]
    assert "PyTorch's CPU threads: 3, not 4: one core is left for the browser on this machine" in caplog.text


def test_bad_thread_counts_name_the_setting_and_its_range(capsys):
    for argv, env in ((["--threads", "0"], {}), ([], {"GPT2_THREADS": "two"})):
        with pytest.raises(SystemExit):
            AppConfig.from_env_and_args(argv, env)
        assert "`threads` has to be an integer in [1, 1024]" in capsys.readouterr().err


@pytest.mark.parametrize("argv, env", [(["--port", "0"], {}), (["--quantize", "int4"], {}), ([], {"PORT": "x"}),
                                       ([], {"GPT2_QUANTIZE": "int4"}), ([], {"GPT2_SHARE": "maybe"}),
                                       ([], {"GPT2_COMPILE": "fast"})])
def test_bad_start_up_settings_stop_with_a_usage_error(argv, env):
    with pytest.raises(SystemExit):
        AppConfig.from_env_and_args(argv, env)


def test_unicorn_preset_is_openais_prompt_with_a_fixed_seed():
    examples = load_examples()
    assert examples.unicorn.prompt == UNICORN
    assert examples.unicorn.settings.seed is not None
    assert {e.id for e in examples.generate} >= {"unicorn", "news", "recipe", "code", "poem", "question"}
    assert all(len(split_blank(sentence)) == 2 for sentence in examples.compare)


@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0"])
def test_the_fallback_notice_is_one_line_and_only_this_machines_page_shows_why(tmp_path, host):
    from demo import start_models
    from demo.model_panel import FALLBACK_LINE, SWITCH_OFF_LINE, unavailable_markdown

    missing = str(tmp_path / "no-such-gpt2")
    models = start_models(AppConfig(model=missing, device="cpu", host=host))
    try:
        assert models.gpt2.current is not None and models.gpt2.current.name == "mini-gpt2"
        notice = unavailable_markdown(models)
        first_line = notice.splitlines()[0]
        assert FALLBACK_LINE in first_line and "###" not in notice
        if host == "127.0.0.1":  # the teacher's own machine: why, with the path, on demand
            assert first_line.startswith("<details><summary>") and missing in notice and notice.endswith("</details>")
        else:  # a public page: that GPT-2 could not be loaded, and nothing of this host
            assert notice == f"{FALLBACK_LINE}: GPT-2 could not be loaded on this server."
            assert str(tmp_path) not in notice and "Error" not in notice and "python -m" not in notice
            assert "--allow-model-switch" in SWITCH_OFF_LINE
    finally:
        models.close()


def test_an_offline_start_logs_the_fallback_as_a_warning_and_a_missing_bert_once(caplog):
    """The bundled model serving where GPT-2 cannot be had is how an offline classroom runs: the host's console says
    so in WARNING lines, where an ERROR line alarmed a newcomer; BERT's failed load, tried again by every request,
    is logged once, where nothing in the console said why the tab showed GPT-2 only."""
    class Served:
        def close(self) -> None:
            pass

    def load(source: str):
        if source != "mini":
            raise ModelUnavailableError(f"{source} is not in the Hugging Face cache here")
        return Served()

    with caplog.at_level("INFO", logger="demo.models"):
        holder = ModelHolder(load, "gpt2", fallback="mini")
        bert = LazyFillMask(load, "bert-base-uncased")
        for _ in range(3):
            with pytest.raises(ModelUnavailableError):
                bert.get()
    assert holder.current is not None and holder.notice is not None
    levels = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert not [m for level, m in levels if level == "ERROR"], levels
    assert ("WARNING", "cannot load gpt2: gpt2 is not in the Hugging Face cache here") in levels
    assert ("WARNING", "serving the bundled mini: gpt2 could not be loaded (the page says why)") in levels
    bert_lines = [m for level, m in levels if "bert-base-uncased" in m]
    assert bert_lines == ["loading bert-base-uncased for the BERT vs GPT-2 tab",
                          "cannot load bert-base-uncased, its tabs show GPT-2 only: bert-base-uncased is not in the "
                          "Hugging Face cache here"], "one try logged, and its failure once"
    holder.retire()


def test_the_model_picker_marks_sizes_whose_files_are_not_here(tiny_checkpoint):
    from demo.model_panel import picker_choices

    models = AppModels(ModelHolder(lambda s: None, "gpt2"), LazyFillMask(lambda s: None, "bert"),
                       ["gpt2-playground-tests/not-here", "mini-gpt2", str(tiny_checkpoint)])  # none cached anywhere
    assert picker_choices(models) == [("gpt2-playground-tests/not-here (not downloaded)", "gpt2-playground-tests/not-here"),
                                      ("mini-gpt2", "mini-gpt2"),
                                      (str(tiny_checkpoint), str(tiny_checkpoint))]

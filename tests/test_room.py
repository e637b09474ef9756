"""Running a room (issue 9): the teacher's controls, share links and the defects a first run found."""

from __future__ import annotations

import json
import re
import urllib.request

import pytest
from ui_helpers import launched_app

from demo import AppConfig
from demo.model_panel import make_switch
from demo.models import AppModels, LazyFillMask, ModelHolder
from gpt2_core import load_model

pytest_plugins = ["fixtures_ui"]


# ---- the teacher's controls -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("argv, env, allowed", [
    ([], {}, True),  # 127.0.0.1: the teacher's own machine
    (["--host", "0.0.0.0"], {}, False),  # serving a room
    ([], {"GRADIO_SERVER_NAME": "0.0.0.0"}, False),  # Hugging Face Spaces
    (["--host", "0.0.0.0", "--allow-model-switch"], {}, True),
    ([], {"GRADIO_SERVER_NAME": "0.0.0.0", "GPT2_ALLOW_MODEL_SWITCH": "1"}, True),
    (["--no-allow-model-switch"], {}, False),
    ([], {"GPT2_ALLOW_MODEL_SWITCH": "0"}, False),
])
def test_model_switching_is_on_for_this_machine_and_off_for_a_room(argv, env, allowed):
    assert AppConfig.from_env_and_args(argv, env).model_switch_allowed is allowed


def test_a_bad_allow_model_switch_value_is_a_usage_error():
    with pytest.raises(SystemExit):
        AppConfig.from_env_and_args([], {"GPT2_ALLOW_MODEL_SWITCH": "perhaps"})


def page_elem_ids(url: str) -> set[str]:
    with urllib.request.urlopen(url + "config") as response:
        config = json.load(response)
    return {c["props"].get("elem_id") for c in config["components"]}


@pytest.mark.parametrize("fields, present", [
    (dict(host="127.0.0.1"), True),
    (dict(host="0.0.0.0"), False),
    pytest.param(dict(host="0.0.0.0", allow_model_switch=True), True, marks=pytest.mark.slow),  # (the flags' rule:
    pytest.param(dict(host="127.0.0.1", allow_model_switch=False), False, marks=pytest.mark.slow),  # the test above)
])
def test_the_page_has_a_model_switcher_only_where_allowed(tiny_checkpoint, tiny_bert, fields, present):
    with launched_app(tiny_checkpoint, tiny_bert, **fields) as app:  # served on 127.0.0.1 whatever `host` says
        ids = page_elem_ids(app.url)
    assert "model-info" in ids  # the model serving is always shown
    assert ("model-choice" in ids) is present and ("load-model" in ids) is present


def test_a_failed_switch_says_the_previous_model_still_serves_and_resets_the_picker(tiny_checkpoint):
    holder = ModelHolder(lambda name: load_model(tiny_checkpoint if name == "gpt2" else "/nowhere/" + name,
                                                 device="cpu", dtype="fp32"), "gpt2")
    try:
        models = AppModels(holder, LazyFillMask(lambda s: None, "bert"), choices=["gpt2", "distilgpt2"])
        _, info, status, picker = make_switch(models)("distilgpt2", progress=lambda *a, **k: None)
        assert "Could not load **distilgpt2**" in status and "still serving" in status
        assert picker.value == "gpt2"  # back to what serves
        assert holder.current is not None and holder.source == "gpt2"
    finally:
        holder.close()


# ---- seeds: -1 means random everywhere ------------------------------------------------------------------------------
def test_seed_minus_one_means_random_and_other_negatives_say_so():
    from gpt2_core import SamplingParams

    assert SamplingParams(seed=-1).seed is None and SamplingParams(seed=-1.0).seed is None
    with pytest.raises(ValueError, match=r"`seed` has to be -1 \(random\) or an integer in \[0, 9223372036854775807\], "
                                         r"but is -5"):
        SamplingParams(seed=-5)


def test_cli_takes_seed_minus_one_as_random(tiny_checkpoint, capsys):
    from gpt2_core.cli import main

    code = main(["generate", "--model", str(tiny_checkpoint), "--prompt", "Hi", "--max-new-tokens", "3",
                 "--seed", "-1", "--json", "--device", "cpu"])
    sample = json.loads(capsys.readouterr().out.splitlines()[0])
    assert code in (0, None) and 0 <= sample["seed"] < 10**9 and len(sample["token_ids"]) == 3


# ---- share links (demo/links.py; in the browser: test_browser_room.py) ----------------------------------------------
def test_read_link_checks_every_value_as_the_page_does():
    from demo.links import MAX_LINK_CHARS, read_link

    link = read_link({"tab": "generate", "prompt": "Hi", "temperature": "0.7", "top_k": "40", "top_p": "1",
                      "max_new_tokens": "150", "repetition_penalty": "1", "seed": "2019", "num_samples": "1"})
    assert link.problems == []
    assert link.values == dict(prompt="Hi", temperature=0.7, top_k=40, top_p=1, max_new_tokens=150,
                               repetition_penalty=1, seed=2019, num_samples=1)
    bad = read_link({"tab": "generate", "max_new_tokens": "5000", "top_p": "0", "seed": "-1", "x": "1",
                     "prompt": "a" * (MAX_LINK_CHARS + 1), "temperature": "nan"})
    assert bad.values == {"seed": -1}  # -1: random, as the page writes it
    assert "`max_new_tokens` has to be an integer in [1, 512], but is 5000" in bad.problems
    assert "`top_p` has to be a finite number in (0, 1], but is 0" in bad.problems
    assert any(p.startswith("`prompt` has to be at most 4000 characters") for p in bad.problems)
    assert any("`temperature`" in p for p in bad.problems) and any("`x`" in p for p in bad.problems)
    assert read_link({"tab": "nowhere"}).tab == "generate" and "`tab` has to be one of" in read_link(
        {"tab": "nowhere"}).problems[0]
    assert read_link({"tab": "explore", "max_new_tokens": "10"}).problems == [
        "`max_new_tokens` is not a setting of this tab, so it was ignored"]


def test_an_emptied_box_is_named_with_its_range_and_an_empty_link_value_is_told_the_range():
    """(They said "but is None" or "but is ''".)"""
    from demo.knobs import page_params
    from demo.links import read_link
    from demo.scale_tab import check_inputs

    for empty in (None, "", "  "):
        with pytest.raises(ValueError, match=r"^`top_p` has no number in its box: type one in \(0, 1\]$"):
            page_params(top_p=empty)
        with pytest.raises(ValueError, match=r"^`max_new_tokens` has no number in its box: type one in \[10, 100\]$"):
            check_inputs("Hello", 7, empty)
    link = read_link({"tab": "generate", "temperature": ""})  # a link has no box: its range, as before
    assert link.problems == ["`temperature` has to be a finite number in [0, 2], but is ''"] and link.values == {}


@pytest.mark.parametrize("seed, refused", [
    (2**53 - 1, False), (-1, False), (-1.0, False), (None, False), (7, False), (7.0, False),
    (2**53, True), ("1152921504606846977", True), (" 99999999999999999999999 ", True), ("-18446744073709551617", True),
    (-5, True), (3.5, True),  # one range said for any seed the page refuses (-5 and 3.5 were told the API's before)
    ("9" * 400, True), (10**400, True),  # (10**400 overflowed math.isfinite: the page's load failed)
])
def test_the_page_takes_seeds_a_browser_keeps_exact_and_refuses_others_by_name(seed, refused):
    """Past 2^53 a browser's number box rounds (2^60 + 1 would run as 2^60): typed_values sends such a seed's digits as
    typed, and a link may hold one. The API keeps seeds up to 2^63 - 1."""
    from demo.knobs import page_params
    from demo.links import read_link
    from gpt2_core import SamplingParams
    from gpt2_core.generate.settings import cut

    link = read_link({"tab": "generate", "seed": str(seed).strip() if seed is not None else "-1"})
    if not refused:
        assert page_params(seed=seed).seed == (None if seed in (None, -1) else seed) and link.problems == []
        return
    message = (r"`seed` has to be -1 \(random\) or an integer in \[0, 9007199254740991\] on this page \(a browser "
               r"keeps whole numbers exact up to there; the API takes seeds up to 9223372036854775807\), but is "
               + re.escape(cut(str(seed).strip())))  # 400 digits: the first 79 and an ellipsis
    with pytest.raises(ValueError, match=message + "$"):
        page_params(seed=seed)
    assert len(link.problems) == 1 and re.fullmatch(message, link.problems[0]), link.problems
    assert SamplingParams(seed=2**60 + 1).seed == 2**60 + 1, "the API's range"
    with pytest.raises(ValueError, match="but is " + "9" * 79 + "\u2026$"):  # pasted digits, cut as messages cut
        page_params(seed="9" * 200)


# ---- messages that name the fix -------------------------------------------------------------------------------------
def run_cli(*args: str, **env: str):
    import os
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "gpt2_core", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env})


def test_download_without_the_hub_says_so_and_how_to_copy_a_cache(tmp_path):
    out = run_cli("download", "gpt2", HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "empty-cache"))
    assert out.returncode == 1
    assert "the Hugging Face Hub cannot be reached from this machine" in out.stderr
    assert "on a machine that reaches the Hub" in out.stderr and "HF_HOME" in out.stderr
    assert "local directory" in out.stderr


def test_a_missing_model_directory_names_the_fix():
    out = run_cli("generate", "--model", "/no/such/dir")
    assert out.returncode == 1
    assert "'/no/such/dir' does not exist. Fix: pass a directory holding a GPT-2 checkpoint" in out.stderr
    assert "model.safetensors" in out.stderr and "python -m gpt2_core download gpt2" in out.stderr


@pytest.mark.slow
def test_reload_mode_watches_the_projects_code_and_not_the_virtual_environment(tmp_path):
    """`gradio app.py` used to re-read every file under the project folder (.venv's too) twice a second: a busy core."""
    import os
    import subprocess
    import sys
    import time
    from pathlib import Path

    from ui_helpers import free_port, wait_until

    root = Path(__file__).resolve().parent.parent
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "GPT2_DEVICE": "cpu",
           "GRADIO_SERVER_PORT": str(port), "GRADIO_ANALYTICS_ENABLED": "False"}
    gradio = subprocess.Popen([str(Path(sys.executable).parent / "gradio"), "app.py"], cwd=root, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def child() -> int | None:  # the `python -u app.py` that gradio starts and watches from
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == gradio.pid:
                return int(stat.parent.name)
        return None

    def cpu_seconds(pid: int) -> float:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    pid = None
    try:
        pid = wait_until(child, timeout=30, message="the app's process")
        wait_until(lambda: fetch(f"http://127.0.0.1:{port}/config"), timeout=90, interval=0.5, message="the app")
        def settled() -> bool:  # start-up work (imports, the first model panel) done: under 20% of a core for 1 s
            before = cpu_seconds(pid)
            time.sleep(1)
            return cpu_seconds(pid) - before < 0.2

        wait_until(settled, timeout=60, interval=0, message="the app to settle after start-up (it keeps a core busy)")
        before = cpu_seconds(pid)
        time.sleep(5)  # the window measured, not a wait for an event
        assert cpu_seconds(pid) - before < 2.5, "the idle app keeps a core busy"  # it was ~4.9 s of 5
    finally:
        if pid:
            os.kill(pid, 15)
        gradio.terminate()
        try:
            gradio.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            gradio.kill()


def fetch(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except OSError:
        return False

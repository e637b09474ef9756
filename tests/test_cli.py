"""`python -m gpt2_core`: generate (text and --json), info, download; bad arguments exit 2 with one line."""

import json
import subprocess
import sys

import pytest

from gpt2_core.cli import main


def run_cli(*args: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    import os

    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "gpt2_core", *args], capture_output=True, text=True, timeout=120,
                          env=env)


@pytest.mark.slow
def test_generate_json_prints_one_object_per_sample(tiny_checkpoint):
    out = run_cli("generate", "--model", str(tiny_checkpoint), "--prompt", "Hello world", "--max-new-tokens", "6",
                  "--seed", "7", "--num-samples", "2", "--json", "--device", "cpu")
    assert out.returncode == 0, out.stderr
    samples = [json.loads(line) for line in out.stdout.splitlines()]
    assert [s["seed"] for s in samples] == [7, 8]
    assert all(len(s["token_ids"]) == 6 and s["finish_reason"] == "length" and isinstance(s["text"], str)
               for s in samples)


def test_generate_is_reproducible_and_matches_the_api(tiny_checkpoint, lm, capsys):
    args = ["generate", "--model", str(tiny_checkpoint), "--prompt", "Hi", "--max-new-tokens", "5", "--seed", "3",
            "--json", "--device", "cpu", "--exact"]  # the fixture `lm` is the exact engine
    assert main(args) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["token_ids"] == lm.generate("Hi", max_new_tokens=5, seed=3)[0].token_ids


def test_generate_plain_text_prints_prompt_and_continuation(tiny_checkpoint, capsys):
    assert main(["generate", "--model", str(tiny_checkpoint), "--prompt", "Once", "--max-new-tokens", "4",
                 "--temperature", "0", "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("Once")
    assert "seed" in captured.err


def test_generate_prints_a_sample_as_it_is_written_and_keeps_it_at_ctrl_c(tiny_checkpoint, lm, monkeypatch, capsys):
    """One sample was printed whole at its end: a long one looked hung, and Ctrl-C lost all of it."""
    from types import SimpleNamespace

    from gpt2_core.lm import LanguageModel

    args = ["generate", "--model", str(tiny_checkpoint), "--prompt", "Once", "--max-new-tokens", "8", "--seed", "5",
            "--device", "cpu", "--exact"]
    assert main(args) == 0
    assert capsys.readouterr().out == "Once" + lm.generate("Once", max_new_tokens=8, seed=5)[0].text + "\n"

    def two_tokens_then_ctrl_c(self, prompt, params=None, **settings):
        yield [SimpleNamespace(text=" upon", seed=11)]
        yield [SimpleNamespace(text=" upon a", seed=11)]
        raise KeyboardInterrupt

    monkeypatch.setattr(LanguageModel, "stream", two_tokens_then_ctrl_c)
    assert main(args) == 130
    captured = capsys.readouterr()
    assert captured.out == "Once upon a\n", "the text so far, its line ended"
    assert captured.err == "[seed 11, interrupted]\npython -m gpt2_core generate: interrupted\n"


@pytest.mark.parametrize("command", ["generate", "info"])
def test_an_empty_model_is_refused_by_name(command, capsys):
    assert main([command, "--model", ""]) == 2  # (it read the current folder: ". has no config.json")
    assert capsys.readouterr().err == (f"python -m gpt2_core {command}: error: `model` has to be a Hub id (gpt2, "
                                       "distilgpt2, ...), mini-gpt2 or a folder, but is empty\n")


def test_info_reports_parameters_memory_and_device(tiny_checkpoint, lm, capsys):
    assert main(["info", "--model", str(tiny_checkpoint), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert f"{lm.num_parameters():,}" in out and "cpu" in out and "int8" in out and "MiB" in out  # a CPU's default


@pytest.mark.parametrize("args,needle", [
    (["generate", "--temperature", "nan"], "`temperature` has to be a finite number in [0, 2]"),
    (["generate", "--top-k", "-5"], "`top_k` has to be an integer in [0, 50257]"),
    (["generate", "--top-p", "1.5"], "`top_p`"),
    (["generate", "--max-new-tokens", "0"], "`max_new_tokens`"),
    (["generate", "--seed", "18446744073709551616"], "`seed`"),
    (["generate", "--num-samples", "9"], "`num_samples`"),
    (["generate", "--top-k", "2.5"], "`top_k` has to be an integer in [0, 50257], but is 2.5"),
    (["generate", "--quantize", "int4"], "invalid choice"),
    (["generate", "--dtype", "fp64"], "invalid choice"),
    (["frobnicate"], "invalid choice"),
    ([], "required"),
])
def test_bad_arguments_exit_2_with_one_line(args, needle, capsys):
    with pytest.raises(SystemExit) as exit_info:
        code = main(args)
        raise SystemExit(code)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1 and "Traceback" not in err


def test_bad_argument_in_a_real_process_has_no_traceback():
    out = run_cli("generate", "--temperature", "inf")
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "Traceback" not in out.stderr and "`temperature`" in out.stderr


@pytest.mark.slow
def test_unavailable_model_exits_1_and_names_the_fix(tmp_path):
    out = run_cli("generate", "--model", "openai-community/gpt2-medium", "--prompt", "x",
                  env_extra={"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path)})
    assert out.returncode == 1
    assert "python -m gpt2_core download openai-community/gpt2-medium" in out.stderr and "Traceback" not in out.stderr
    assert out.stderr.rstrip().endswith("Offline, the model bundled with this project runs: --model mini-gpt2 "
                                        "(trained on Shakespeare)."), "what runs here meanwhile"


@pytest.mark.slow
def test_download_of_an_unreachable_model_fails_clearly(tmp_path):
    out = run_cli("download", "distilgpt2", env_extra={"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path)})
    assert out.returncode == 1 and "distilgpt2" in out.stderr and "Traceback" not in out.stderr


def test_download_of_the_bundled_model_or_a_folder_says_there_is_nothing_to_fetch(tmp_path, monkeypatch, capsys):
    """`download mini-gpt2` told to download it "on a machine that reaches the Hub" (the Hub has no mini-gpt2), and
    `download assets/mini-gpt2` that the folder was "neither a local directory nor a model on the Hub"."""
    from gpt2_core import checkpoint
    from gpt2_core.checkpoint import BUNDLED

    def no_hub(repo_id, **kwargs):
        raise AssertionError(f"{repo_id} was looked up on the Hub")

    monkeypatch.setattr(checkpoint, "download", no_hub)
    assert main(["download", "mini-gpt2", str(tmp_path)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"mini-gpt2: bundled with this project, nothing to download ({BUNDLED['mini-gpt2']})",
        f"{tmp_path}: a folder on this machine, nothing to download"]


@pytest.mark.slow
def test_a_prompt_from_stdin_is_read_as_utf8_or_refused_by_name(tiny_checkpoint):
    """Bytes that are not UTF-8 on standard input were let through as surrogates and refused as `prompt`."""
    command = [sys.executable, "-m", "gpt2_core", "generate", "--model", str(tiny_checkpoint), "--prompt-file", "-",
               "--max-new-tokens", "2", "--device", "cpu", "--json"]
    good = subprocess.run(command, input="Caf\u00e9 ".encode(), capture_output=True, timeout=120)
    assert good.returncode == 0 and json.loads(good.stdout)["prompt_tokens"] >= 2, good.stderr
    bad = subprocess.run(command, input=b"Caf\xff ", capture_output=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.decode().startswith(
        "python -m gpt2_core generate: error: `prompt_file` has to be a readable UTF-8 text file, but '-' is not")

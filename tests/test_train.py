"""Training (gpt2_core/train): the loss goes down, a model trained from scratch learns a text, the saved folder loads in
gpt2_core and in transformers alike, fine-tuning lowers the validation loss, and the CLI reports as it goes."""

from __future__ import annotations

import json
import math
import random
import re
import signal
import subprocess
import sys
from dataclasses import replace

import pytest
import torch

from gpt2_core import load_model
from gpt2_core.config import GPTConfig
from gpt2_core.model import GPT
from gpt2_core.train.data import TokenData
from gpt2_core.train.loop import TrainConfig, train


def toy_play(lines: int = 3000, seed: int = 0) -> str:
    """A text with real regularities (a tiny grammar), so that a few seconds of training can learn it."""
    rng = random.Random(seed)
    who = ["the king", "the queen", "a knight", "the old man", "my lord", "the fool", "a lady"]
    does = ["speaks", "sings", "weeps", "laughs", "rides", "sleeps", "prays"]
    where = ["in the hall", "by the sea", "at the gate", "in the garden", "before the throne"]
    return "\n".join(f"{rng.choice(who).capitalize()} {rng.choice(does)} {rng.choice(where)}." for _ in range(lines))


QUICK = dict(minutes=None, vocab_size=300, context=64, batch_size=16, eval_every=20, eval_batches=4, sample_tokens=16)


def test_one_training_step_lowers_the_loss_on_a_fixed_batch():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=97, block_size=32, n_layer=2, n_head=2, n_embd=32))
    model.init_weights()
    x = torch.randint(97, (4, 32))
    y = torch.roll(x, -1, dims=1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    before = model.loss(x, y)
    before.backward()
    optimizer.step()
    assert float(model.loss(x, y).detach()) < float(before.detach())


def test_init_scales_the_residual_projections():
    model = GPT(GPTConfig(vocab_size=97, block_size=32, n_layer=8, n_head=2, n_embd=64))
    model.init_weights()
    with torch.no_grad():
        assert float(model.h[0].attn.c_attn.weight.std()) == pytest.approx(0.02, rel=0.1)
        assert float(model.h[0].mlp.c_proj.weight.std()) == pytest.approx(0.02 / math.sqrt(16), rel=0.1)
        assert float(model.h[0].ln_1.weight.min()) == 1.0 and float(model.h[0].attn.c_attn.bias.abs().max()) == 0.0


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("from-scratch") / "model"
    result = train(toy_play(), out, TrainConfig(init="tiny", steps=80, **QUICK))
    return out, result


def test_from_scratch_the_validation_loss_falls_well_below_its_start(trained):
    _, result = trained
    first, last = result.evaluations[0], result.evaluations[-1]
    assert first.val_loss == pytest.approx(math.log(300), abs=1.0)  # uniform guessing over the vocabulary
    assert last.val_loss < first.val_loss / 3
    assert last.step == 80 and [e.step for e in result.evaluations] == [0, 20, 40, 60, 80]
    assert first.lr == 0.0 and result.evaluations[1].lr == pytest.approx(1e-3 * 20 / 50)  # the last step's (step 19)


def test_the_saved_model_loads_in_gpt2_core_and_transformers_with_equal_logits(trained):
    from transformers import AutoTokenizer, GPT2LMHeadModel

    out, _ = trained
    lm = load_model(out, device="cpu", dtype="fp32")
    hf = GPT2LMHeadModel.from_pretrained(out).eval()
    text = "The queen sings by the sea."
    ids = AutoTokenizer.from_pretrained(out).encode(text)
    assert ids == lm.tokenizer.encode(text)
    with torch.no_grad():
        assert torch.allclose(hf(torch.tensor([ids])).logits, lm.model(torch.tensor([ids])), atol=1e-4)
    sample = lm.generate("The king", max_new_tokens=12, seed=1, temperature=0.5)[0].text
    assert any(word in sample for word in ("speaks", "sings", "weeps", "laughs", "rides", "sleeps", "prays", "the"))
    lm.close()
    record = json.loads((out / "training.json").read_text())
    assert record["steps"] == 80 and record["recipe"]["init"] == "tiny" and record["curve"][-1]["step"] == 80
    assert 0 < record["val_bits_per_character"] < 2.0 and "threads" in record["machine"]
    modes = {p.name: oct(p.stat().st_mode & 0o777) for p in (out / "config.json", out / "model.safetensors",
                                                         out / "resume" / "state.safetensors")}
    assert len(set(modes.values())) == 1, f"safetensors' files are as readable as the rest (they were 0600): {modes}"


@pytest.mark.slow
def test_fine_tuning_lowers_the_validation_loss(tiny_checkpoint, tmp_path):
    result = train(toy_play(800, seed=1), tmp_path / "tuned",
                   TrainConfig(init=str(tiny_checkpoint), steps=30, learning_rate=3e-3, **{**QUICK, "eval_every": 30}))
    assert result.evaluations[-1].val_loss < result.evaluations[0].val_loss - 1.0
    assert load_model(tmp_path / "tuned", device="cpu", dtype="fp32").config.vocab_size == 50257  # GPT-2's own vocabulary


def test_the_micro_batch_changes_the_memory_not_what_is_learned(tmp_path):
    """A step's 16 windows are drawn whole and then split: micro-batches of 5 (5+5+5+1) learn what one of 16 learns.
    (They drew their own windows and made a batch of 20, so a run resumed with another --micro-batch changed course.)"""
    from safetensors.torch import load_file

    quick = dict(QUICK, learning_rate=1e-2, warmup_steps=1, eval_every=3, bf16=False)
    plans = []
    for micro in (16, 5):
        train(toy_play(600), tmp_path / f"m{micro}", TrainConfig(init="tiny", steps=3, micro_batch=micro, **quick),
              on_plan=plans.append)
    assert [(p.micro_batch, p.accumulation, p.batch) for p in plans] == [(16, 1, 16), (5, 4, 16)]
    assert "micro-batch 5 x 4 (the last of 1) accumulated = batch 16" in plans[1].describe()
    whole, split = (load_file(tmp_path / f"m{m}" / "model.safetensors") for m in (16, 5))
    # 3 Adam steps at lr 1e-2 move a weight (std 0.02) by about its size: other windows change each tensor by ~100%;
    # the same windows, summed in another order, by ~0.01% (measured; Adam amplifies it where gradients are tiny)
    apart = max(float((whole[k] - split[k]).norm() / whole[k].norm()) for k in whole)
    assert apart < 1e-2, f"a tensor's weights differ by {apart:.1%}"


def test_the_plan_counts_the_vocabulary_the_text_gave(tmp_path):
    """A short text learns fewer than the 4096 tokens asked for; the plan counted 4096 (0.5M parameters too many)."""
    plans = []
    train(toy_play(300), tmp_path / "m", TrainConfig(init="tiny", steps=1, **{**QUICK, "vocab_size": 4096}),
          on_plan=plans.append)
    record = json.loads((tmp_path / "m" / "training.json").read_text())
    assert record["model"]["vocab_size"] < 4096 and plans[0].parameters == record["parameters"]


def test_an_overwrite_cut_short_leaves_the_old_model_as_it_was(tmp_path):
    """The new vocabulary was written into --out before the first step: a run refused or killed before its first save
    left the old weights beside a vocabulary they were not trained with."""
    old = tmp_path / "old-model"
    old.mkdir()
    for name in ("vocab.json", "merges.txt", "config.json", "model.safetensors"):
        (old / name).write_text(f"the old {name}")

    class Refused(Exception):
        pass

    def cut_short(evaluation):  # the first, before any step (as a crash or a kill there)
        raise Refused

    with pytest.raises(Refused):
        train(toy_play(300), old, TrainConfig(init="tiny", steps=1, **QUICK), on_eval=cut_short)
    assert {p.name: p.read_text() for p in old.iterdir()} == {
        name: f"the old {name}" for name in ("vocab.json", "merges.txt", "config.json", "model.safetensors")}


def test_a_run_that_cannot_fit_is_refused_before_its_vocabulary_is_trained(tmp_path, monkeypatch):
    """Training the vocabulary first (minutes on a long text) made a refusal wait for it."""
    from gpt2_core.train import loop
    from gpt2_core.train.plan import WontFitError

    monkeypatch.setattr(loop, "train_bpe", lambda *a, **k: pytest.fail("a vocabulary trained for a run that won't fit"))
    with pytest.raises(WontFitError, match="training would not fit in memory"):
        train(toy_play(300), tmp_path / "m", TrainConfig(init="tiny", steps=1, max_memory_gb=0.01, **QUICK))


def test_a_run_saved_with_a_micro_batch_above_the_batch_resumes(tmp_path):
    """A run saved when --micro-batch could exceed the batch (it made a bigger one) would be refused on resuming
    over a flag its user did not give: it resumes with the micro-batch that fits."""
    train(toy_play(600), tmp_path / "run", TrainConfig(init="tiny", steps=2, **SHORT))
    state = tmp_path / "run" / "resume" / "state.json"
    info = json.loads(state.read_text())
    info["recipe"]["micro_batch"] = 32
    state.write_text(json.dumps(info))
    plans = []
    result = train(toy_play(600), tmp_path / "run", TrainConfig(steps=3), resume=tmp_path / "run", on_plan=plans.append)
    assert result.evaluations[-1].step == 3 and plans[0].batch == SHORT["batch_size"] >= plans[0].micro_batch


def test_a_text_too_short_to_split_says_how_long_it_must_be():
    with pytest.raises(ValueError, match=r"`text` is too short to train on: it has 5 tokens, and needs at least"):
        TokenData.split(list(range(5)), context=64)


@pytest.mark.slow
def test_the_stop_signal_ends_training_and_still_saves(tmp_path):
    import threading

    stop = threading.Event()
    result = train(toy_play(1500), tmp_path / "stopped", TrainConfig(init="tiny", steps=10_000, **QUICK),
                   on_eval=lambda e: stop.set() if e.step >= 20 else None, stop=stop)
    assert result.stopped and result.evaluations[-1].step == 20
    assert (tmp_path / "stopped" / "model.safetensors").is_file()


@pytest.mark.slow
def test_cli_train_prints_one_json_object_per_evaluation(tmp_path):
    text = tmp_path / "play.txt"
    text.write_text(toy_play(1500), encoding="utf-8")
    out = subprocess.run([sys.executable, "-m", "gpt2_core", "train", "--text", str(text), "--out",
                          str(tmp_path / "cli-model"), "--steps", "50", "--eval-every", "50", "--json",
                          "--context", "64", "--dropout", "0.1"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    plan, *records = [json.loads(line) for line in out.stdout.splitlines()]
    assert set(plan) == {"plan"} and plan["plan"]["context"] == 64 and plan["plan"]["batch"] == 16
    assert [r["step"] for r in records] == [0, 50] and records[-1]["total_steps"] == 50
    assert all({"step", "train_loss", "val_loss", "elapsed_s"} <= set(r) for r in records)
    config = json.loads((tmp_path / "cli-model" / "config.json").read_text())
    assert config["n_positions"] == 64, "--context sets a from-scratch model's context"
    assert json.loads((tmp_path / "cli-model" / "training.json").read_text())["recipe"]["dropout"] == 0.1


@pytest.mark.parametrize("args, message", [
    (["--steps", "0"], "`steps` has to be an integer in [1, 10000000], but is 0"),
    (["--minutes", "-1"], "`minutes` has to be a finite number in (0, 1440], but is -1"),
    (["--steps", "5", "--minutes", "1"], "not allowed with argument"),
    (["--dropout", "1.5"], "`dropout` has to be a finite number in [0, 0.9], but is 1.5"),
    (["--context", "4"], "`context` has to be an integer in [8, 1024], but is 4"),
    (["--micro-batch", "0"], "`micro_batch` has to be an integer in [1, 16], but is 0"),
    (["--max-memory", "0"], "`max_memory` has to be a finite number in (0, 4096], but is 0"),
    (["--micro-batch", "17"], "`micro_batch` has to be an integer in [1, 16], but is 17"),  # (it splits the 16)
    (["--seed", "-3"], "`seed` has to be an integer in [0, 2147483647], but is -3"),
    (["--eval-points", "0"], "`eval_points` has to be an integer in [1, 10000], but is 0"),
    (["--eval-batches", "2.5"], "`eval_batches` has to be an integer in [1, 1000], but is 2.5"),
    (["--bpc-tokens", "0"], "`bpc_tokens` has to be an integer in [1, 1000000000], but is 0"),
    (["--eval-every", "0", "--eval-points", "5"], "`eval_every` has to be an integer in [1, 10000000], but is 0"),
    (["--resume", "somewhere", "--minutes", "1"], "`minutes` cannot be given with `resume`"),
    (["--init", " "], "`init` has to be tiny or small (from scratch), or a GPT-2 Hub id or folder to fine-tune, but is "
                      "empty"),  # (it trained a tiny model)
    # the stopped run's recipe holds: a flag that would change it is refused, even one given at its default
    (["--resume", "somewhere", "--eval-points", "20"], "`eval_points` cannot be given with `resume`"),
    (["--resume", "somewhere", "--eval-batches", "8"], "`eval_batches` cannot be given with `resume`"),
    (["--resume", "somewhere", "--seed", "0"], "`seed` cannot be given with `resume`"),
    (["--resume", "somewhere", "--init", "small"], "`init` cannot be given with `resume`"),
])
def test_cli_train_refuses_bad_arguments_with_one_line(tmp_path, capsys, args, message):
    """Refused before anything runs, so in this process (one real process below shows the same for the command)."""
    from gpt2_core.cli import main

    text = tmp_path / "t.txt"
    text.write_text(toy_play(300), encoding="utf-8")
    try:
        code = main(["train", "--text", str(text), "--out", str(tmp_path / "o"), *args])
    except SystemExit as e:  # argparse's own refusals (two flags that exclude each other)
        code = e.code
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "o").exists(), "a refused run writes nothing"


@pytest.mark.parametrize("args, eval_every, eval_points, bpc_tokens", [
    ([], 100, None, None),
    (["--eval-points", "20", "--bpc-tokens", "16384"], 10**7, 20, 16384),  # Build your own's: no step limit on points
    (["--eval-points", "20", "--eval-every", "50"], 50, 20, None),
])
def test_cli_train_turns_its_evaluation_flags_into_the_recipe(tmp_path, monkeypatch, args, eval_every, eval_points,
                                                              bpc_tokens):
    """--eval-points alone spreads its points over runs of any length (the default --eval-every of 100 capped a
    10-minute run of 6,000 steps at 60 points, not 20)."""
    from gpt2_core.cli import main
    from gpt2_core.train import loop

    class Recorded(Exception):
        pass

    def record(text, out, config, **kwargs):
        raise Recorded(config)

    monkeypatch.setattr(loop, "train", record)
    text = tmp_path / "t.txt"
    text.write_text(toy_play(300), encoding="utf-8")
    with pytest.raises(Recorded) as recorded:
        main(["train", "--text", str(text), "--out", str(tmp_path / "o"), *args])
    config = recorded.value.args[0]
    assert (config.eval_every, config.eval_points, config.bpc_tokens) == (eval_every, eval_points, bpc_tokens)


@pytest.mark.parametrize("out, message", [
    ("", "`out` has to name a folder to write the model to, but is empty"),
    ("a-file.txt", "`out` has to be a folder, but"),
    ("a-model", "`out` already holds a model ("),
    ("/proc/no-such-folder", "`out` has to be a folder that can be written, but '/proc/no-such-folder' cannot:"),
    ("/proc", "`out` has to be a folder that can be written, but '/proc' cannot:"),  # there, but takes no files
])
def test_cli_train_refuses_an_out_that_is_no_folder_or_holds_a_model(tmp_path, monkeypatch, capsys, out, message):
    """`--out ''` wrote a model into the current folder; a file or a folder that cannot be made ended in a traceback
    after the plan; an --out holding a model (the bundled one, trained 40 minutes) was replaced by a 1-step one."""
    from gpt2_core.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "a-file.txt").write_text("notes")
    (tmp_path / "a-model").mkdir()
    (tmp_path / "a-model" / "config.json").write_text("{}")
    text = tmp_path / "t.txt"
    text.write_text(toy_play(300), encoding="utf-8")
    code = main(["train", "--text", str(text), "--out", out, "--steps", "1"])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file.txt", "a-model", "t.txt"], "nothing written"
    assert (tmp_path / "a-model" / "config.json").read_text() == "{}"


def test_cli_train_writes_over_a_model_with_overwrite(tmp_path, monkeypatch):
    from gpt2_core.cli import main
    from gpt2_core.train import loop

    class Recorded(Exception):
        pass

    def record(text, out, config, **kwargs):
        raise Recorded(out)

    monkeypatch.setattr(loop, "train", record)
    (tmp_path / "a-model").mkdir()
    (tmp_path / "a-model" / "config.json").write_text("{}")
    text = tmp_path / "t.txt"
    text.write_text(toy_play(300), encoding="utf-8")
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with pytest.raises(Recorded) as recorded:
        main(["train", "--text", str(text), "--out", str(tmp_path / "a-model"), "--overwrite", "--steps", "1"])
    assert recorded.value.args[0] == tmp_path / "a-model"
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers, "the caller's, restored"


def test_cli_train_refused_leaves_none_of_the_folders_it_made(tmp_path, capsys):
    """`--out runs/a/b` refused (it would not fit) removed b and left runs/a; a folder that was there stays."""
    from gpt2_core.cli import main

    text = tmp_path / "t.txt"
    text.write_text(toy_play(300), encoding="utf-8")
    (tmp_path / "kept").mkdir()
    for out in (tmp_path / "runs" / "a" / "b", tmp_path / "kept" / "c" / "d"):
        assert main(["train", "--text", str(text), "--out", str(out), "--steps", "1", "--max-memory", "0.01"]) == 2
        assert "training would not fit in memory" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept", "t.txt"] and not any((tmp_path / "kept").iterdir())


def test_cli_train_resume_of_a_mistyped_folder_makes_no_folder(tmp_path, capsys):
    from gpt2_core.cli import main

    text = tmp_path / "t.txt"
    text.write_text(toy_play(300), encoding="utf-8")
    assert main(["train", "--text", str(text), "--resume", str(tmp_path / "runs" / "typo")]) == 2
    assert "`resume` has to be the folder of a stopped or finished run" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_cli_generate_interrupted_says_so_in_one_line(monkeypatch, capsys):
    """Ctrl-C while generating printed two chained tracebacks (the second from the engine's close)."""
    from gpt2_core import cli, lm

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(lm, "load_model", interrupted)
    try:
        code = cli.main(["generate", "--model", "mini-gpt2", "--prompt", "KING."])
    except KeyboardInterrupt:  # (left to go up, it would end the test session)
        pytest.fail("Ctrl-C went up as a traceback")
    assert code == 130
    assert capsys.readouterr().err == "python -m gpt2_core generate: interrupted\n"


def test_cli_train_stops_and_saves_at_ctrl_c(tmp_path):
    """Ctrl-C, what a terminal user presses, ended the run in a traceback with no model saved (SIGTERM saved)."""

    text = tmp_path / "t.txt"
    text.write_text(toy_play(600), encoding="utf-8")
    out = tmp_path / "stopped"
    run = subprocess.Popen([sys.executable, "-m", "gpt2_core", "train", "--text", str(text), "--out", str(out),
                            "--steps", "100000", "--eval-every", "5", "--context", "32"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = iter(run.stdout.readline, "")
    assert any(line.startswith("step 5 of") for line in lines), "training, past its first steps"
    run.send_signal(signal.SIGINT)
    stdout, stderr = run.communicate(timeout=120)
    assert run.returncode == 0 and "Traceback" not in stderr, stderr
    assert "stopping: measuring the loss once more and saving the model" in stderr
    assert f"saved to {out} (stopped at step " in stdout and f"--resume {out} goes on" in stdout
    assert (out / "model.safetensors").is_file() and (out / "resume" / "state.json").is_file()
    bits = json.loads((out / "training.json").read_text())["val_bits_per_character"]
    assert f"validation on the last tenth of the text: {bits:.2f} bits per character" in stdout, stdout


def test_a_resume_that_would_train_nothing_is_refused(tmp_path):
    """A finished run resumed without a larger --steps (or a smaller one) saved the model again and trained nothing."""
    train(toy_play(600), tmp_path / "run", TrainConfig(init="tiny", steps=2, **SHORT))
    with pytest.raises(ValueError, match=r"`resume`: the run in .* has made all its 2 steps \(it finished, or was "
                                         r"stopped before .*\): give --steps more than 2 to go on"):
        train(toy_play(600), tmp_path / "run", TrainConfig(), resume=tmp_path / "run")
    for steps in (2, 1):
        with pytest.raises(ValueError, match=rf"`steps` has to be more than the 2 steps the run in .* has made, to go "
                                             rf"on, but is {steps}$"):
            train(toy_play(600), tmp_path / "run", TrainConfig(steps=steps), resume=tmp_path / "run")


def test_cli_train_refuses_a_resume_of_nothing_in_one_line_of_a_real_process(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text(toy_play(300), encoding="utf-8")
    out = subprocess.run([sys.executable, "-m", "gpt2_core", "train", "--text", str(text), "--resume",
                          str(tmp_path / "nowhere")], capture_output=True, text=True, timeout=120)
    message = "`resume` has to be the folder of a stopped or finished run"
    assert out.returncode == 2 and message in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr


@pytest.mark.slow
def test_cli_train_on_a_short_text_says_how_long_it_must_be(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("Too short to learn from.", encoding="utf-8")
    out = subprocess.run([sys.executable, "-m", "gpt2_core", "train", "--text", str(text), "--out", str(tmp_path / "o"),
                          "--steps", "5"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "is too short to train on" in out.stderr and "characters" in out.stderr


# ---- fitting the machine: the memory plan ---------------------------------------------------------------------------
PEAK_RSS_BOUND = 1.5e9  # bytes. Before the plan: 10 GB for this model (16 x 1024 tokens of 50257 logits, 3.3 GB each)


def _peak_rss_of(command: list[str]) -> tuple[subprocess.CompletedProcess, int]:
    """Run `command` as the only child of a fresh Python, and return it with its peak RSS in bytes (ru_maxrss of
    RUSAGE_CHILDREN, measured by the kernel, in KiB on Linux)."""
    wrapper = ("import json, resource, subprocess, sys\n"
               "out = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
               "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024\n"
               "print(json.dumps([out.returncode, out.stdout, out.stderr, peak]))")
    done = subprocess.run([sys.executable, "-c", wrapper, *command], capture_output=True, text=True, timeout=600)
    code, stdout, stderr, peak = json.loads(done.stdout)
    return subprocess.CompletedProcess(command, code, stdout, stderr), peak


@pytest.mark.heavy  # a minute or more on 2 cores: CI runs it with -m heavy
def test_fine_tuning_with_the_real_vocabulary_plans_first_and_peaks_far_below_the_old_10_gb(tiny_checkpoint, tmp_path):
    text = tmp_path / "play.txt"
    text.write_text(toy_play(1500), encoding="utf-8")
    out, peak = _peak_rss_of([sys.executable, "-m", "gpt2_core", "train", "--text", str(text), "--out",
                              str(tmp_path / "ft"), "--init", str(tiny_checkpoint), "--steps", "1"])
    assert out.returncode == 0, out.stderr
    first = out.stdout.splitlines()[0]
    assert first.startswith("plan: ") and "256-token window" in first and "= batch 16" in first, first
    planned = json.loads((tmp_path / "ft" / "training.json").read_text())["plan"]
    assert planned["context"] == 256 and planned["micro_batch"] * planned["accumulation"] == 16
    assert peak < PEAK_RSS_BOUND, f"peak RSS {peak / 1e9:.2f} GB"
    assert peak < planned["planned_peak_gb"] * 1e9, "the plan is an upper bound on the measured peak"


@pytest.mark.slow
@pytest.mark.parametrize("args", [["--max-memory", "0.2"], ["--micro-batch", "16", "--context", "1024",
                                                            "--max-memory", "0.9"]])
def test_a_run_that_would_not_fit_is_refused_before_allocating_and_names_the_flags(tiny_checkpoint, tmp_path, args):
    text = tmp_path / "play.txt"
    text.write_text(toy_play(1500), encoding="utf-8")
    out, peak = _peak_rss_of([sys.executable, "-m", "gpt2_core", "train", "--text", str(text), "--out",
                              str(tmp_path / "ft"), "--init", str(tiny_checkpoint), "--steps", "2", *args])
    assert out.returncode == 2 and "training would not fit in memory" in out.stderr
    advice = out.stderr.split("available (--max-memory). ", 1)[1]  # after the plan
    assert "--max-memory GB" in advice, out.stderr
    budget = float(args[args.index("--max-memory") + 1]) * 1e9
    offered = re.findall(r"--(?:micro-batch|context) \((?:1|64 tokens at micro-batch 1) plans ([\d.]+) ([MG])B\)",
                         advice)  # a setting is offered only where it would fit (micro-batch 1 was, at 1, over it)
    assert all(float(n) * {"M": 1e6, "G": 1e9}[unit] <= budget for n, unit in offered), out.stderr
    assert offered or advice.startswith("Even micro-batch 1 with a 64-token context plans "), out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and not (tmp_path / "ft").exists()
    assert peak < 0.8e9, "refused before the model and its training state were allocated"


def test_the_plan_picks_a_micro_batch_that_fits_and_accumulates_to_the_batch():
    from gpt2_core.config import PRESETS
    from gpt2_core.train.plan import WontFitError, estimate_peak_bytes, plan_training

    roomy = plan_training(PRESETS["gpt2"], context=256, batch=16, bf16=True, max_memory_gb=64)
    tight = plan_training(PRESETS["gpt2"], context=256, batch=16, bf16=True,
                          max_memory_gb=estimate_peak_bytes(PRESETS["gpt2"], context=256, micro_batch=2,
                                                            bf16=True) / 1e9)
    assert roomy.micro_batch * roomy.accumulation == 16 and roomy.planned_peak_bytes < 4e9
    assert tight.micro_batch == 2 and tight.accumulation == 8 and tight.planned_peak_bytes <= tight.available_bytes
    with pytest.raises(ValueError, match=r"`micro_batch` has to be an integer in \[1, 16\] \(it splits a step's "
                                         r"batch of 16 windows\), but is 32"):
        plan_training(PRESETS["gpt2"], context=256, batch=16, bf16=True, micro_batch=32, max_memory_gb=64)
    with pytest.raises(WontFitError, match=r"Ask for a smaller --micro-batch \(1 plans 3.41 GB\), or allow more"):
        plan_training(PRESETS["gpt2"], context=256, batch=16, bf16=True, micro_batch=16, max_memory_gb=4)
    # where no setting fits, none is offered (micro-batch 1 was, over the memory there was)
    with pytest.raises(WontFitError, match=r"Even micro-batch 1 with a 64-token context plans 3.29 GB, mostly the "
                                           r"model and its optimizer: free memory, or allow more with --max-memory"):
        plan_training(PRESETS["gpt2"], context=256, batch=16, bf16=True, micro_batch=16, max_memory_gb=3)
    # a resumed run refuses --context: it is not offered
    with pytest.raises(WontFitError, match=r"Even micro-batch 1 plans 3.41 GB \(a resumed run keeps its 256-token "
                                           r"window\): free memory, or allow more with --max-memory"):
        plan_training(PRESETS["gpt2"], context=256, batch=16, bf16=True, micro_batch=1, max_memory_gb=3.35,
                      context_fixed=True)


def test_the_chunked_loss_equals_the_cross_entropy_of_the_full_logits():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=50257, block_size=64, n_layer=1, n_head=2, n_embd=32))
    model.init_weights()
    x, y = torch.randint(50257, (3, 64)), torch.randint(50257, (3, 64))  # 192 positions: 3 chunks of 83 and less
    chunked = model.loss(x, y)
    chunked.backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    full = torch.nn.functional.cross_entropy(model(x).view(-1, 50257), y.view(-1))
    full.backward()
    assert float(chunked.detach()) == pytest.approx(float(full.detach()), abs=1e-5)
    assert all(torch.allclose(a, p.grad, atol=1e-6) for a, p in zip(grads, model.parameters()))


# ---- reproducible: the schedule follows steps, and a stopped run resumes -------------------------------------------
SHORT = dict(vocab_size=300, context=32, batch_size=8, eval_every=4, eval_batches=2, sample_tokens=4, warmup_steps=3)


def _weights(directory) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(directory / "model.safetensors")


def _max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


def test_the_learning_rate_follows_steps_not_the_clock(tmp_path, monkeypatch):
    import time

    text = toy_play(600)
    normal = train(text, tmp_path / "normal", TrainConfig(init="tiny", steps=12, **SHORT))
    clock = iter(range(0, 10**9, 100))  # every reading of the clock is 100 s later: a very slow machine
    monkeypatch.setattr(time, "perf_counter", lambda: float(next(clock)))
    slow = train(text, tmp_path / "slow", TrainConfig(init="tiny", steps=12, **SHORT))
    assert [e.step for e in slow.evaluations] == [e.step for e in normal.evaluations] == [0, 4, 8, 12]
    assert [e.lr for e in slow.evaluations] == pytest.approx([e.lr for e in normal.evaluations], rel=1e-12)
    assert _max_difference(_weights(tmp_path / "slow"), _weights(tmp_path / "normal")) <= 1e-6


@pytest.mark.parametrize("points, steps_evaluated", [(3, [0, 4, 8, 12]), (5, [0, 3, 6, 9, 12]), (50, list(range(13)))])
def test_eval_points_spread_the_evaluations_over_a_run_of_steps(tmp_path, points, steps_evaluated):
    result = train(toy_play(600), tmp_path / "run", TrainConfig(init="tiny", steps=12, **{**SHORT, "eval_every": 100},
                                                                 eval_points=points))
    assert [e.step for e in result.evaluations] == steps_evaluated


def test_the_bits_per_character_at_the_end_read_the_held_out_texts_first_bpc_tokens():
    """A long held-out text (a tenth of 5 MB of plays is 150,000 tokens) took half a minute of a 1-minute run: Build
    your own reads its first 16,384 (bpc_tokens); the command line reads it all unless told."""
    from gpt2_core.train import loop

    windows = []

    class Model:  # a loss of 1 nat per token, and a note of each window
        def eval(self):
            return self

        def loss(self, x, y):
            windows.append(x.shape[1])
            return torch.tensor(1.0)

    class Tokenizer:  # a character per token
        def decode(self, ids):
            return "x" * len(ids)

    data = TokenData(train=torch.zeros(1000, dtype=torch.long), val=torch.zeros(1000, dtype=torch.long))
    bits = loop._bits_per_character(Model(), Tokenizer(), data, 32, False, loop._bpc_tokens(data, TrainConfig(
        bpc_tokens=100)))
    assert windows == [32, 32, 32, 4] and bits == pytest.approx(1 / math.log(2))
    assert loop._bpc_tokens(data, TrainConfig()) == 1000 and loop._bpc_tokens(data, TrainConfig(bpc_tokens=5000)) == 1000


@pytest.mark.parametrize("eval_s, end_s, total, interval", [
    (1.5, 0.0, 10 + int(38.5 / (1 + 1.5 / 6)), 6),  # evaluating costs 1.5 steps: every 6 steps, a quarter of the time
    (0.1, 0.0, 10 + int(39.9 / (1 + 0.1 / 5)), 5),  # a cheap one: every 5 steps, the run's 49 steps over 12 points
    (0.1, 4.0, 10 + int(35.9 / (1 + 0.1 / 4)), 4),  # 4 s kept for the last measurement: 45 steps over 12 points
    (30.0, 0.0, 10 + int(10 / (1 + 30 / 25)), 25),  # a dear one: eval_every stays the most steps between them
])
def test_a_time_budget_spreads_its_points_without_spending_more_than_a_quarter_on_them(eval_s, end_s, total, interval):
    """10 steps of 1 s done and 20 s gone of a 1-minute budget; what is left is 60 - 20 - eval_s - end_s (one more
    evaluation and the last measurement are kept for the end), shared between steps and evaluations."""
    from gpt2_core.train.loop import _steps_in_budget

    config = TrainConfig(init="tiny", minutes=1, eval_every=25, eval_points=12)
    assert _steps_in_budget(config, 10, 1.0, eval_s, 20.0, end_s=end_s) == (total, interval)
    steps_only = _steps_in_budget(replace(config, eval_points=None), 10, 1.0, eval_s, 20.0, end_s=end_s)
    assert steps_only == (10 + int((40 - eval_s - end_s) / (1 + eval_s / 25)), 25), "without eval_points, as before"


@pytest.mark.heavy  # a minute or more on 2 cores: CI runs it with -m heavy
def test_a_time_budget_becomes_a_step_count_that_steps_reproduce(tmp_path):
    text = toy_play(600)
    timed = train(text, tmp_path / "timed", TrainConfig(init="tiny", minutes=0.1, **SHORT))
    record = json.loads((tmp_path / "timed" / "training.json").read_text())
    total = record["total_steps"]
    assert record["steps"] == total > 10 and timed.evaluations[-1].total_steps == total
    again = train(text, tmp_path / "again", TrainConfig(init="tiny", steps=total, **SHORT))
    assert [e.lr for e in again.evaluations] == pytest.approx([e.lr for e in timed.evaluations], rel=1e-12)
    assert _max_difference(_weights(tmp_path / "again"), _weights(tmp_path / "timed")) <= 1e-6


@pytest.mark.slow
@pytest.mark.parametrize("save_dtype", ["fp32", "fp16"])
def test_a_stopped_run_resumed_ends_as_the_straight_run(tmp_path, save_dtype):
    import threading

    from safetensors.torch import load_file

    text, config = toy_play(600), TrainConfig(init="tiny", steps=16, save_dtype=save_dtype, **SHORT)
    straight = train(text, tmp_path / "straight", config)
    stop = threading.Event()
    stopped = train(text, tmp_path / "run", config, stop=stop, on_eval=lambda e: stop.set() if e.step >= 8 else None)
    assert stopped.stopped and stopped.evaluations[-1].step == 8
    assert sorted(p.name for p in (tmp_path / "run" / "resume").iterdir()) == ["state.json", "state.safetensors"]
    resumed = train(text, tmp_path / "run", TrainConfig(), resume=tmp_path / "run")
    assert [e.step for e in resumed.evaluations] == [e.step for e in straight.evaluations] == [0, 4, 8, 12, 16]
    assert [e.val_loss for e in resumed.evaluations] == pytest.approx([e.val_loss for e in straight.evaluations],
                                                                      abs=1e-5)
    masters = [load_file(tmp_path / d / "resume" / "state.safetensors") for d in ("straight", "run")]
    if save_dtype == "fp16":  # the fp32 master weights are kept beside the fp16 model
        masters = [{k: v for k, v in m.items() if k.startswith("model.")} for m in masters]
        assert masters[0] and all(v.dtype == torch.float32 for v in masters[0].values())
    else:
        masters = [_weights(tmp_path / d) for d in ("straight", "run")]
    assert _max_difference(*masters) <= 1e-6
    record = json.loads((tmp_path / "run" / "training.json").read_text())
    assert record["steps"] == 16 and [c["step"] for c in record["curve"]] == [0, 4, 8, 12, 16]


def test_resume_refuses_another_text(tmp_path):
    train(toy_play(600), tmp_path / "run", TrainConfig(init="tiny", steps=2, **SHORT))
    with pytest.raises(ValueError, match="`resume` continues a run on the same text"):
        train(toy_play(600, seed=5), tmp_path / "run", TrainConfig(steps=4), resume=tmp_path / "run")


# ---- the bundled mini model (assets/mini-gpt2) ----------------------------------------------------------------------
def test_the_bundled_model_is_small_trained_as_recorded_and_writes_words():
    from pathlib import Path

    from gpt2_core.checkpoint import BUNDLED

    folder = BUNDLED["mini-gpt2"]
    size = sum(f.stat().st_size for f in folder.iterdir())
    assert size < 15 * 2**20, f"the bundled model is {size / 2**20:.1f} MiB"
    record = json.loads((folder / "training.json").read_text())
    assert record["val_text_file"] == "assets/texts/macbeth.txt" and record["elapsed_s"] <= 3600
    assert record["command"].startswith("python -m gpt2_core train ")
    root = Path(__file__).resolve().parent.parent
    assert (root / record["val_text_file"]).is_file() and (root / record["text_file"]).is_file()
    lm = load_model("mini-gpt2", device="cpu", dtype="fp32")
    scores = lm.score_text((root / record["val_text_file"]).read_text(encoding="utf-8")[:4000])
    bits_per_char = -sum(math.log2(s.prob) for s in scores) / 4000
    assert bits_per_char < 2.6  # a model that learned Shakespeare (random weights: about 3.7 per character)
    (sample,) = lm.generate("KING.\n", max_new_tokens=40, seed=3, temperature=0.8)
    assert sum(w.isalpha() for w in sample.text.split()) >= 10
    lm.close()


def test_fine_tuning_refuses_a_context_past_the_models(tmp_path):
    """`--init mini-gpt2 --context 512` planned a 128-token window without a word about the 512 asked for."""
    with pytest.raises(ValueError, match=r"`context` has to be an integer in \[8, 128\] to fine-tune mini-gpt2 \(its "
                                         r"context is 128 tokens\), but is 512"):
        train(toy_play(300), tmp_path / "ft", TrainConfig(init="mini-gpt2", context=512, steps=1))
    assert not (tmp_path / "ft").exists()

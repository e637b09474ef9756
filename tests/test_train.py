"""Training (gpt2_core/train): the loss goes down, a model trained from scratch learns a text, the saved folder loads in
gpt2_core and in transformers alike, fine-tuning lowers the validation loss, and the CLI reports as it goes."""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys

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


def test_the_saved_model_loads_in_gpt2_core_and_transformers_with_equal_logits(trained):
    from transformers import AutoTokenizer, GPT2LMHeadModel

    out, _ = trained
    lm = load_model(out, device="cpu")
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


def test_fine_tuning_lowers_the_validation_loss(tiny_checkpoint, tmp_path):
    result = train(toy_play(800, seed=1), tmp_path / "tuned",
                   TrainConfig(init=str(tiny_checkpoint), steps=30, learning_rate=3e-3, **{**QUICK, "eval_every": 30}))
    assert result.evaluations[-1].val_loss < result.evaluations[0].val_loss - 1.0
    assert load_model(tmp_path / "tuned", device="cpu").config.vocab_size == 50257  # GPT-2's own vocabulary


def test_a_text_too_short_to_split_says_how_long_it_must_be():
    with pytest.raises(ValueError, match=r"`text` is too short to train on: it has 5 tokens, and needs at least"):
        TokenData.split(list(range(5)), context=64)


def test_the_stop_signal_ends_training_and_still_saves(tmp_path):
    import threading

    stop = threading.Event()
    result = train(toy_play(1500), tmp_path / "stopped", TrainConfig(init="tiny", steps=10_000, **QUICK),
                   on_eval=lambda e: stop.set() if e.step >= 20 else None, stop=stop)
    assert result.stopped and result.evaluations[-1].step == 20
    assert (tmp_path / "stopped" / "model.safetensors").is_file()


def test_cli_train_prints_one_json_object_per_evaluation(tmp_path):
    text = tmp_path / "play.txt"
    text.write_text(toy_play(1500), encoding="utf-8")
    out = subprocess.run([sys.executable, "-m", "gpt2_core", "train", "--text", str(text), "--out",
                          str(tmp_path / "cli-model"), "--steps", "50", "--eval-every", "50", "--json",
                          "--context", "64", "--dropout", "0.1"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    records = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["step"] for r in records] == [0, 50]
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
])
def test_cli_train_refuses_bad_arguments_with_one_line(tmp_path, args, message):
    text = tmp_path / "t.txt"
    text.write_text("hello", encoding="utf-8")
    out = subprocess.run([sys.executable, "-m", "gpt2_core", "train", "--text", str(text), "--out", str(tmp_path / "o"),
                          *args], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and message in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_cli_train_on_a_short_text_says_how_long_it_must_be(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("Too short to learn from.", encoding="utf-8")
    out = subprocess.run([sys.executable, "-m", "gpt2_core", "train", "--text", str(text), "--out", str(tmp_path / "o"),
                          "--steps", "5"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "is too short to train on" in out.stderr and "characters" in out.stderr


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
    lm = load_model("mini-gpt2", device="cpu")
    scores = lm.score_text((root / record["val_text_file"]).read_text(encoding="utf-8")[:4000])
    bits_per_char = -sum(math.log2(s.prob) for s in scores) / 4000
    assert bits_per_char < 2.6  # a model that learned Shakespeare (random weights: about 3.7 per character)
    (sample,) = lm.generate("KING.\n", max_new_tokens=40, seed=3, temperature=0.8)
    assert sum(w.isalpha() for w in sample.text.split()) >= 10
    lm.close()

"""The app keeps Inductor's compiled graphs between starts (compiled.keep_compiled_graphs): where, and that a start
which finds them reuses them and still serves its own model's weights."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gpt2_core.generate.compiled import keep_compiled_graphs

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def no_cache_chosen(monkeypatch, tmp_path):
    """A host that set no TORCHINDUCTOR_CACHE_DIR, with its user cache folder in tmp_path (restored afterwards)."""
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_compiled_graphs_go_to_the_users_cache_folder_one_per_kind_of_cpu(no_cache_chosen, monkeypatch):
    folder = keep_compiled_graphs()
    assert folder is not None and folder.is_dir()
    assert folder.parent == no_cache_chosen / "gpt2-playground" / "torchinductor"
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(folder)  # where Inductor reads it
    assert folder.stat().st_mode & 0o077 == 0, "others could write code the app runs"
    assert folder.name.startswith(torch.backends.cpu.get_cpu_capability().lower() + "-")
    # another instruction set (AVX-512 here, a CPU without AVX, or ATEN_CPU_CAPABILITY=default) gets a folder of its own
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR")
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "NO AVX")
    other = keep_compiled_graphs()
    assert other is not None and other.parent == folder.parent and other.name.startswith("no-avx-")


def test_a_folder_made_before_with_loose_permissions_is_made_the_users_alone(no_cache_chosen, monkeypatch):
    folder = keep_compiled_graphs()
    assert folder is not None
    folder.chmod(0o777)
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR")
    assert keep_compiled_graphs() == folder and folder.stat().st_mode & 0o077 == 0


def test_a_relative_xdg_cache_home_is_ignored_as_the_spec_says(no_cache_chosen, monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    folder = keep_compiled_graphs()
    assert folder is not None and folder.parent == tmp_path / "home" / ".cache" / "gpt2-playground" / "torchinductor"


def test_inductors_own_default_is_not_taken_for_a_hosts_choice(no_cache_chosen, monkeypatch):
    """Importing torch._dynamo (as gpt2_core does) sets TORCHINDUCTOR_CACHE_DIR to Inductor's default folder."""
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", default_cache_dir())
    folder = keep_compiled_graphs()
    assert folder is not None and folder.parent == no_cache_chosen / "gpt2-playground" / "torchinductor"


def test_a_folder_the_host_chose_is_kept(no_cache_chosen, monkeypatch, tmp_path):
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "chosen"))
    assert keep_compiled_graphs() == tmp_path / "chosen"
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "chosen")
    assert not no_cache_chosen.exists()


def test_a_folder_inductor_cannot_compile_in_leaves_its_default(no_cache_chosen, monkeypatch, caplog):
    """A home with a space in its path ("John Smith"): Inductor splits its g++ command at spaces, and every compile
    in such a folder fails ("input file '/home/John' is the same as output file")."""
    caplog.set_level("INFO")
    monkeypatch.setenv("XDG_CACHE_HOME", str(no_cache_chosen.parent / "John Smith" / ".cache"))
    assert keep_compiled_graphs() is None
    assert "TORCHINDUCTOR_CACHE_DIR" not in os.environ
    assert "its compiler cannot use" in caplog.text


def test_an_unwritable_cache_folder_leaves_inductors_default(no_cache_chosen, caplog):
    no_cache_chosen.write_text("a file where the folder would be")  # as a read-only home: mkdir fails
    assert keep_compiled_graphs() is None
    assert "TORCHINDUCTOR_CACHE_DIR" not in os.environ  # Inductor's default then
    assert "cannot keep compiled graphs" in caplog.text


# One start as the app makes it: the graphs' folder chosen (keep_compiled_graphs, after importing gpt2_core, as the app
# does), the tiny model's int8 decode step compiled (the CPU's default path), then the Inductor cache's hits and
# misses, and its logits for a token beside the eager step's
START = """
import json, sys, torch
from torch._dynamo.utils import counters
from gpt2_core import load_model
from gpt2_core.generate.compiled import CompiledDecode, keep_compiled_graphs

folder = keep_compiled_graphs()
lm = load_model(sys.argv[1], device="cpu", quantize="int8", compile=False)
decode = CompiledDecode(lm.model, lm.device)
decode.warm_up(dtype=lm.dtype)
logits = {}
with torch.inference_mode():
    for name, step in (("eager", lm.model.decode), ("compiled", decode)):
        cache = lm.model.new_cache(1, 64, device=lm.device, dtype=lm.dtype)
        logits[name] = step(torch.tensor([[464]]), cache, [0])[0].float().tolist()
print(json.dumps({"folder": str(folder), "hits": counters["inductor"]["fxgraph_cache_hit"],
                  "misses": counters["inductor"]["fxgraph_cache_miss"], **logits}))
"""


@pytest.mark.heavy
def test_a_start_that_finds_the_graphs_reuses_them_with_its_own_weights(tiny_checkpoint, tmp_path):
    """The second start's compile is a cache hit in the user's cache folder, and that graph multiplies the second
    model's weights, not the first one's: Inductor keys a graph's frozen weights by their shapes only (two models of
    one shape, as gpt2 and a fine-tuned gpt2, share it)."""
    from conftest import random_hf_model, save_layout

    other = save_layout(random_hf_model(seed=1), tmp_path / "other", "hub")
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "PYTHONPATH": str(ROOT)}
    env.pop("TORCHINDUCTOR_CACHE_DIR")  # as on a user's machine

    def start(checkpoint: Path) -> dict:
        done = subprocess.run([sys.executable, "-c", START, str(checkpoint)], env=env, capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(done.stdout.splitlines()[-1])

    first, second = start(tiny_checkpoint), start(other)
    assert Path(first["folder"]).parent == tmp_path / "cache" / "gpt2-playground" / "torchinductor"
    assert (Path(first["folder"]) / "fxgraph").is_dir(), "Inductor wrote its graphs elsewhere"
    assert first["misses"] >= 1 and first["hits"] == 0, first
    assert second["hits"] >= 1 and second["misses"] == 0, f"the second start compiled again: {second}"
    for run in (first, second):
        eager, compiled = torch.tensor(run["eager"]), torch.tensor(run["compiled"])
        # bf16 activations (8 significant bits) through 2 layers, summed in another order: a few parts in a hundred
        torch.testing.assert_close(compiled, eager, rtol=0.03, atol=0.03 * float(eager.abs().max()))
    # and the two models' logits differ by far more than that, so a graph with the first one's weights would fail
    assert (torch.tensor(first["eager"]) - torch.tensor(second["eager"])).abs().max() > 0.2 * torch.tensor(
        second["eager"]).abs().max()

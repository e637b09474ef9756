"""load_model: devices and precisions, safetensors only, and clear errors when a model cannot be had."""

import os
import shutil
import subprocess
import sys

import pytest
import torch
from conftest import add_tokenizer, save_layout

from gpt2_core import ModelUnavailableError, UnsafeCheckpointError, load_model
from gpt2_core.devices import resolve_device, resolve_dtype


def test_auto_picks_the_cpu_in_fp32_without_a_gpu():
    if torch.cuda.is_available() or torch.backends.mps.is_available():
        pytest.skip("this machine has a GPU: auto would rightly pick it")
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32
    assert resolve_dtype("auto", torch.device("cuda")) == torch.float16


@pytest.mark.parametrize("name,dtype", [("float32", torch.float32), ("fp32", torch.float32), ("fp16", torch.float16),
                                        ("float16", torch.float16), ("bf16", torch.bfloat16),
                                        ("bfloat16", torch.bfloat16), (torch.bfloat16, torch.bfloat16)])
def test_dtype_names(name, dtype):
    assert resolve_dtype(name, torch.device("cpu")) == dtype


def test_bfloat16_weights_load_and_stay_close_to_fp32(tiny_checkpoint, lm):
    bf16 = load_model(tiny_checkpoint, device="cpu", dtype="bf16")
    assert bf16.model.wte.weight.dtype == torch.bfloat16 and bf16.precision == "bfloat16"
    assert bf16.memory_bytes() == pytest.approx(lm.memory_bytes() / 2, rel=0.01)
    ids = torch.tensor([lm.tokenizer.encode("Hello there, general")])
    with torch.no_grad():
        agree = (bf16.model(ids).argmax(-1) == lm.model(ids).argmax(-1)).float().mean()
    assert agree >= 0.75
    assert len(bf16.generate("Hi", max_new_tokens=5, seed=0)[0].token_ids) == 5
    bf16.close()


def test_memory_bytes_counts_parameters_once(lm):
    expected = sum(p.numel() * 4 for p in lm.model.parameters())
    assert lm.memory_bytes() == expected
    assert lm.num_parameters() == sum(p.numel() for p in lm.model.parameters())


def test_pickle_only_checkpoint_is_refused_and_says_why(tmp_path, tiny_checkpoint):
    bad = tmp_path / "pickled"
    bad.mkdir()
    shutil.copy(tiny_checkpoint / "config.json", bad / "config.json")
    add_tokenizer(bad)
    (bad / "pytorch_model.bin").write_bytes(b"not loaded, never unpickled")
    with pytest.raises(UnsafeCheckpointError, match="safetensors") as err:
        load_model(bad, device="cpu", dtype="fp32")
    assert "pytorch_model.bin" in str(err.value) and "arbitrary code" in str(err.value)


@pytest.mark.parametrize("damage", ["weights cut short", "config not JSON"])
def test_a_damaged_checkpoint_is_named_with_its_file_and_the_fix(tmp_path, tiny_checkpoint, damage):
    """A cut-short model.safetensors ended in safetensors' traceback ("invalid header length"), and a broken
    config.json in a JSON error that named no file."""
    bad = tmp_path / "damaged"
    shutil.copytree(tiny_checkpoint, bad)
    if damage == "weights cut short":
        (bad / "model.safetensors").write_bytes((bad / "model.safetensors").read_bytes()[:5])
        broken = bad / "model.safetensors"
    else:
        (bad / "config.json").write_text("{n_layer: 2")
        broken = bad / "config.json"
    with pytest.raises(ModelUnavailableError) as err:
        load_model(bad, device="cpu", dtype="fp32")
    assert str(err.value).startswith(f"{broken} ") and "download or save the checkpoint again" in str(err.value)


def test_unreachable_uncached_model_names_the_model_and_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(ModelUnavailableError) as err:
        load_model("openai-community/gpt2-xl", device="cpu", dtype="fp32")
    message = str(err.value)
    assert "openai-community/gpt2-xl" in message
    assert "python -m gpt2_core download openai-community/gpt2-xl" in message and "local directory" in message


def test_missing_local_directory_is_a_clear_error(tmp_path):
    with pytest.raises(ModelUnavailableError, match="does not exist. Fix: pass a directory holding a GPT-2 checkpoint"):
        load_model(str(tmp_path / "nope"), device="cpu", dtype="fp32")


def test_non_gpt2_config_is_refused(tmp_path, hf_model):
    d = save_layout(hf_model, tmp_path / "llama", "save_pretrained")
    config = (d / "config.json").read_text().replace('"model_type": "gpt2"', '"model_type": "llama"')
    (d / "config.json").write_text(config)
    with pytest.raises(ValueError, match="model_type 'llama'"):
        load_model(d, device="cpu", dtype="fp32")


def test_cached_hub_snapshot_loads_offline(tmp_path, monkeypatch, hf_model):
    """A model already in the HF cache loads with HF_HUB_OFFLINE=1 (the offline-classroom path)."""
    import huggingface_hub.constants as constants

    cache = tmp_path / "hub"
    snapshot = cache / "models--someone--tiny-gpt2" / "snapshots" / ("0" * 40)
    save_layout(hf_model, snapshot, "hub")
    (cache / "models--someone--tiny-gpt2" / "refs").mkdir()
    (cache / "models--someone--tiny-gpt2" / "refs" / "main").write_text("0" * 40)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    from gpt2_core.checkpoint import download

    assert download("someone/tiny-gpt2") == snapshot


POOL_PROBE = """
import os, sys, time, torch
import gpt2_core.lm as lm_module
load = lm_module.load_model if sys.argv[2] == "load_model" else lm_module.load_model.__wrapped__  # (the body, on this thread)
threads = lambda: len(os.listdir("/proc/self/task"))
kwargs = dict(device="cpu", quantize="int8", compile=False)
lm = load(sys.argv[1], **kwargs)
counts = [threads()]
while len(counts) < 5 or len(set(counts[-5:])) > 1:  # exited threads (the loader's, its pool's) leave the list late
    time.sleep(0.05)
    counts.append(threads())
before = counts[-1]
torch.logsumexp(torch.randn(4, 1 << 18), -1)  # a kernel OpenMP splits: this thread's pool starts now if it has none
print(threads() - before, torch.get_num_threads())
lm.close()
"""


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir("/proc/self/task") or torch.get_num_threads() < 2
                    or "OpenMP" not in torch.__config__.parallel_info(),
                    reason="needs Linux's /proc, 2 or more PyTorch threads and its OpenMP build to count pool threads")
def test_loading_leaves_no_openmp_pool_on_the_callers_thread(tiny_checkpoint):
    """load_model runs its kernels on a thread that ends, so the caller's thread (the app's main one) has no OpenMP
    worker pool afterwards: a pool that outlives its use makes OpenMP put every pool's idle workers to sleep, and the
    engine's decode step then waits for its own to wake at every kernel (lm.py, _on_a_thread_that_ends). Probed in a
    fresh interpreter: the caller's first kernel after loading starts its pool (new threads); loading on the caller's
    own thread, as before, had started it already."""
    def new_threads(how: str) -> tuple[int, int]:
        out = subprocess.run([sys.executable, "-c", POOL_PROBE, str(tiny_checkpoint), how], capture_output=True,
                             text=True, timeout=300, check=True).stdout.split()
        return int(out[-2]), int(out[-1])

    started, n = new_threads("load_model")
    assert started == n - 1, "load_model left an OpenMP pool on the caller's thread"
    started, n = new_threads("on the caller's thread")
    assert started == 0, "the probe cannot tell: loading on the caller's thread should have left its pool"


@pytest.mark.slow
def test_the_package_built_from_pyproject_holds_every_module_and_file_it_reads(tmp_path):
    """pyproject.toml named two packages and no subpackages: `pip install .` gave a gpt2_core whose
    `import gpt2_core` failed (no gpt2_core.generate), the console script too."""
    import zipfile
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    source = tmp_path / "source"  # (a copy: building writes build/ and *.egg-info beside pyproject.toml)
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "gpt2_core"):
        copy = shutil.copytree if (root / name).is_dir() else shutil.copy
        copy(root / name, source / name)
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                            str(tmp_path / "dist"), str(source)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-2000:]
    wheel, = (tmp_path / "dist").glob("*.whl")
    held = set(zipfile.ZipFile(wheel).namelist())
    tracked = subprocess.run(["git", "ls-files", "gpt2_core"], cwd=root, capture_output=True, text=True)
    wanted = set(tracked.stdout.split()) if tracked.returncode == 0 else {  # (a copy without .git: what is there)
        str(p.relative_to(root)) for p in (root / "gpt2_core").rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    assert "gpt2_core/generate/engine.py" in wanted and "gpt2_core/int8_rows.cpp" in wanted
    assert wanted <= held, f"left out of the wheel: {sorted(wanted - held)[:10]}"
    target = tmp_path / "installed"
    zipfile.ZipFile(wheel).extractall(target)
    cli = subprocess.run([sys.executable, "-m", "gpt2_core", "info", "--model", "mini-gpt2"], cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": str(target)}, capture_output=True, text=True, timeout=120)
    assert cli.returncode == 1 and "mini-gpt2 is bundled with the project's repository" in cli.stderr, cli.stderr

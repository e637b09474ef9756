"""benchmarks/bench_load_memory.py: its worker reads a process's memory at each stage of a model's life, and another
commit's gpt2_core unpacks beside this one's. Nothing timed; the figures themselves are the benchmark's."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_load_memory as bench  # noqa: E402

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the worker reads /proc (Linux)")


@pytest.mark.slow
@pytest.mark.parametrize("contender", ["int8", "fp32", "transformers"])
def test_the_worker_reports_every_stage_in_order(tiny_checkpoint, contender):
    memory = bench.run_worker(bench.ROOT, contender, tiny_checkpoint, new_tokens=4)
    assert set(memory) == {key for key, _ in bench.COLUMNS}
    # MiB. The kernel updates a process's peak (VmHWM) lazily, so it can trail its RSS by a few pages: 1 MiB slack
    assert 50 < memory["before"] <= memory["load_peak"] + 1  # the interpreter and its libraries, then the load's peak
    assert memory["loaded"] <= memory["load_peak"] + 1
    assert memory["many_peak"] >= memory["one"] - 1  # the peak is reset just before the callers, never below then
    assert memory["idle"] <= memory["many_peak"] + 1


@pytest.mark.skipif(not (bench.ROOT / ".git").exists(), reason="--before reads commits: needs a git checkout")
def test_another_commits_code_unpacks_as_a_package(tmp_path):
    code = bench.code_at("HEAD", tmp_path / "old")
    assert (code / "gpt2_core" / "__init__.py").is_file() and (code / "assets").is_dir()

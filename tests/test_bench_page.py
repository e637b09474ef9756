"""benchmarks/bench_page.py reads what the page and the API show: their stats line, and the app's log."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_page  # noqa: E402

from demo.generate_tab import stats_markdown  # noqa: E402
from gpt2_core.lm import Sample  # noqa: E402


def sample(tokens: int, rate: float) -> Sample:
    return Sample(text="x" * tokens, token_ids=list(range(tokens)), token_probs=[0.5] * tokens, seed=2019,
                  finish_reason="length", prompt_tokens=5, prompt_truncated=False, time_to_first_token=0.1,
                  tokens_per_second=rate)


def test_the_speed_and_the_tokens_come_from_the_stats_line_the_page_shows():
    stats = stats_markdown([sample(150, 52.5)], "`gpt2` (int8)")
    assert bench_page.parse(stats) == (52.5, 150)
    assert bench_page.parse(stats.replace("**", "")) == (52.5, 150)  # as the page's text reads it
    with pytest.raises(SystemExit, match="no speed"):
        bench_page.parse("**Not written.**")


def test_a_run_waits_for_the_background_compiles_that_the_log_announces():
    loaded = "INFO gpt2_core.lm: loaded gpt2: 124M parameters, cpu, {p}, 127 MB (...; compiling in the background)\n"
    assert not bench_page.compiled(loaded.format(p="int8"))
    assert not bench_page.compiled(loaded.format(p="int8") + "compiled the decode step of gpt2\n")  # batches next
    assert bench_page.compiled(loaded.format(p="int8") + "compiled the decode step of gpt2\n"
                               "compiled the batch decode step of gpt2\n")
    assert bench_page.compiled(loaded.format(p="fp32") + "compiled the decode step of gpt2\n")  # no batch graph
    assert bench_page.compiled("loaded mini-gpt2: 4M parameters (...; not compiled: small enough)\n")
    assert bench_page.compiled(loaded.format(p="int8") + "WARNING torch.compile failed, decoding stays eager\n")

"""The suite's own rules (tests/conftest.py): which tests README's quick command skips, and that each runs somewhere."""

from __future__ import annotations

import pytest
from conftest import OPT_IN, why_opted_out


@pytest.mark.parametrize("carried, asked, runs", [
    ([], "", True),
    (["slow"], "", False),
    (["slow"], "slow", True),
    (["heavy"], "slow", False),
    (["heavy", "slow"], "heavy", True),  # marked twice, it runs with either (not with neither)
    (["heavy", "slow"], "slow", True),
    (["heavy", "slow"], "", False),
    (["vllm"], "heavy", False),
    (["other_browsers"], "other_browsers", True),
])
def test_an_opted_in_test_runs_when_one_of_its_markers_is_asked_for(carried, asked, runs):
    why = why_opted_out(carried, asked)
    assert (why is None) is runs
    if not runs:
        assert why == OPT_IN[carried[0]] and f"-m {carried[0]}" in why, "the reason names the command that runs it"


def test_retaking_the_screenshots_runs_the_slow_browser_tests_and_not_the_heavy_ones():
    assert why_opted_out(["slow"], "", retaking_screenshots=True) is None
    assert why_opted_out(["heavy"], "", retaking_screenshots=True) == OPT_IN["heavy"]

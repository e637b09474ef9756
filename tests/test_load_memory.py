"""Loading reads a checkpoint one transformer block at a time (checkpoint.load_weights), quantizing each block as soon
as it is read: a quantized model never holds all its full-precision weights at once, so a laptop that can hold gpt2-xl
in int8 (1.6 GB) can also load it, and an fp32 model does not hold its weights twice (a copy and the file's pages).

Each load runs in a process of its own, which reads its peak resident memory from /proc (Linux).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gpt2_core.config import GPTConfig
from gpt2_core.model import GPT
from gpt2_core.quantize import QUANTIZE_ROWS, Int8Linear
from gpt2_core.testing.checkpoints import random_checkpoint

ROOT = Path(__file__).resolve().parents[1]
# The transformer blocks dominate (as in gpt2-xl, whose LM head is 6% of it): 24 blocks of 3.1M parameters, 302 MB in
# fp32, and a small vocabulary
SHAPE = GPTConfig(vocab_size=1024, block_size=128, n_layer=24, n_head=8, n_embd=512)
# The transient part of a load's peak (the peak less what the loaded model keeps) may be at most this share of the
# model's fp32 bytes. Block by block it is about one block (1/24) and the C library's slack; reading the whole state
# first, it was about twice the fp32 bytes in int8 (the fp32 weights and the file's pages) and once in fp32.
MAX_TRANSIENT_SHARE = 0.25

LOAD = """
import json, sys
import gpt2_core

def mib(field):
    return int(next(line for line in open("/proc/self/status") if line.startswith(field)).split()[1]) / 1024

open("/proc/self/clear_refs", "w").write("5")  # the peak so far (the imports') forgotten: the load's own from here
before = mib("VmRSS:")
lm = gpt2_core.load_model(sys.argv[1], **json.loads(sys.argv[2]))
print(json.dumps({"before": before, "peak": mib("VmHWM:"), "after": mib("VmRSS:"), "precision": lm.precision}))
"""


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return random_checkpoint(tmp_path_factory.mktemp("blocks-dominate"), SHAPE)


def load_in_a_process(checkpoint, **kwargs) -> dict:
    done = subprocess.run([sys.executable, "-c", LOAD, str(checkpoint), json.dumps(kwargs)], capture_output=True,
                          text=True, timeout=300, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def fp32_mib() -> float:
    with torch.device("meta"):
        return sum(p.numel() for p in GPT(SHAPE).parameters()) * 4 / 2**20


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the process's peak memory from /proc (Linux)")
@pytest.mark.parametrize("precision", [{"quantize": "int8", "compile": False}, {"dtype": "fp32", "quantize": None}],
                         ids=["int8", "fp32"])
def test_a_load_holds_about_one_block_beyond_what_the_model_keeps(checkpoint, precision):
    memory = load_in_a_process(checkpoint, **precision)
    assert memory["precision"] == ("int8" if precision.get("quantize") else "float32")
    transient = memory["peak"] - memory["after"]
    assert transient < MAX_TRANSIENT_SHARE * fp32_mib(), (
        f"the load peaked {transient:.0f} MiB above what the model keeps, of {fp32_mib():.0f} MiB of fp32 weights")


def test_int8_rows_are_quantized_a_few_at_a_time_as_all_at_once():
    # More rows than QUANTIZE_ROWS, so the last chunk is partial; rounding and the row maximum are exact operations
    # on the same fp32 numbers however the rows are grouped, so the two agree exactly
    linear = torch.nn.Linear(64, 2 * QUANTIZE_ROWS + 37)
    with torch.no_grad():
        linear.weight[5] = 0.0  # a row of zeros keeps a tiny scale, never a division by zero
    q = Int8Linear(linear)
    w = linear.weight.detach()
    scales = w.abs().amax(dim=1).clamp(min=1e-12) / 127
    assert torch.equal(q.weight, torch.round(w / scales[:, None]).clamp(-127, 127).to(torch.int8))
    assert torch.equal(q.scales, scales.to(torch.bfloat16))
    assert q.weight.dtype == torch.int8 and not q.weight[5].any()

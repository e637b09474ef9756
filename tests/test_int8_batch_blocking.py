"""The batch graph multiplies int8 weights in 4-row blocks on AVX-512 (compiled.int8_batch_blocking): Inductor's own
8-row blocks took twice as long for 8 rows (README, Performance). The swap is made only while that graph compiles."""

import contextlib
import re

import pytest
import torch
import torch._inductor.compile_fx  # noqa: F401  (before the codegen modules, which import each other through it)
import torch._inductor.config as inductor_config
from torch._inductor.codegen import cpp_micro_gemm as micro
from torch._inductor.cpu_vec_isa import VecAMX, VecAVX512, pick_vec_isa
from torch._inductor.utils import run_and_get_code

from gpt2_core.generate.compiled import CPU_OPTIONS, INT8_BATCH_BLOCKING, _private_copy, int8_batch_blocking
from gpt2_core.quantize import Int8Linear

CONFIGS = micro.micro_gemm_configs[micro.CppMicroGemmFP32Vec]


def int8_configs(configs: list) -> list:
    """The configurations Inductor may pick for int8 weights by bf16 activations, rows symbolic, on AVX-512."""
    return [c for c in configs if c.vec_isa_cls is VecAVX512 and c.input_dtype == torch.bfloat16
            and c.input2_dtype == torch.int8 and c.extra_check is micro.do_not_use_with_small_m_for_int8_woq]


def int8_blockings() -> list[tuple[int, ...]]:
    return [tuple(c.register_blocking) for c in int8_configs(CONFIGS)]


def test_the_blocking_is_swapped_while_the_batch_graph_compiles_and_restored_after():
    before = list(CONFIGS)
    assert int8_blockings() and INT8_BATCH_BLOCKING not in int8_blockings(), "torch's own list changed: see the test"
    with int8_batch_blocking(torch.device("cpu")):
        assert int8_blockings() == [INT8_BATCH_BLOCKING]
        changed = [c for c in CONFIGS if c not in before]
        assert len(changed) == 1 and len(CONFIGS) == len(before) - len(int8_configs(before)) + 1
        keyed = inductor_config.post_grad_custom_post_pass
        assert keyed is not None and str(INT8_BATCH_BLOCKING) in keyed.uuid()  # a graph cache key of its own
    assert CONFIGS == before and all(a is b for a, b in zip(CONFIGS, before, strict=True))
    assert inductor_config.post_grad_custom_post_pass is None


def test_the_blocking_is_restored_when_the_compile_fails():
    before = list(CONFIGS)
    with pytest.raises(RuntimeError, match="compile failed"), int8_batch_blocking(torch.device("cpu")):
        raise RuntimeError("compile failed")
    assert CONFIGS == before and inductor_config.post_grad_custom_post_pass is None


def test_a_gpu_keeps_inductors_blocking():
    before = list(CONFIGS)
    with int8_batch_blocking(torch.device("cuda")):
        assert CONFIGS == before and inductor_config.post_grad_custom_post_pass is None


ISA = pick_vec_isa()


@pytest.mark.skipif(not isinstance(ISA, VecAVX512) or isinstance(ISA, VecAMX),
                    reason=f"Inductor's AVX-512 int8 blockings serve only a CPU with AVX-512 and no AMX (this: {ISA})")
def test_a_batch_graph_multiplies_int8_weights_in_4_row_blocks_with_the_same_numbers():
    """Compiled as the batch graph is (rows symbolic): Inductor's own code has 8-row kernels, ours at most 4-row ones,
    and both give the eager layer's outputs within a bf16 rounding (its kernel rounds the outputs to bf16)."""
    torch.manual_seed(0)
    layer = Int8Linear(torch.nn.Linear(64, 96))
    x = torch.randn(8, 64)
    rows, outputs = {}, {}
    for ours in (False, True):
        step = torch.compile(_private_copy(Int8Linear.forward).__get__(layer), fullgraph=True, dynamic=True)
        blocking = int8_batch_blocking(torch.device("cpu")) if ours else contextlib.nullcontext()
        with inductor_config.patch({**CPU_OPTIONS, "fx_graph_cache": False}), blocking, torch.inference_mode():
            outputs[ours], code = run_and_get_code(step, x)
        rows[ours] = {int(m) for m in re.findall(r"_kernel<(\d+), \d+,", "\n".join(code))}
    assert max(rows[False]) == 8, f"Inductor's own blocking: {rows[False]} (the test no longer tells them apart)"
    assert max(rows[True]) == INT8_BATCH_BLOCKING[0], rows[True]
    eager = layer(x)
    for out in outputs.values():
        torch.testing.assert_close(out, eager, rtol=0, atol=2.0**-8 * eager.abs().max().item())

"""The engine's register blocks for int8 weights (compiled.int8_blocking): on AVX2 the lone graph multiplies in 48
columns, on AVX-512 the batch graph in 4 rows, where Inductor's own blocks were slower (README, Performance). The swap
is made only while that graph compiles, and only on the CPU its configurations are for."""

import contextlib
import re

import pytest
import torch
import torch._inductor.compile_fx  # noqa: F401  (before the codegen modules, which import each other through it)
import torch._inductor.config as inductor_config
from torch._inductor.codegen import cpp_micro_gemm as micro
from torch._inductor.cpu_vec_isa import VecAMX, VecAVX2, VecAVX512, pick_vec_isa
from torch._inductor.utils import run_and_get_code

from gpt2_core.generate.compiled import CPU_OPTIONS, INT8_BLOCKINGS, _private_copy, int8_blocking
from gpt2_core.quantize import Int8Linear

CONFIGS = micro.micro_gemm_configs[micro.CppMicroGemmFP32Vec]
ISA = pick_vec_isa()
GRAPHS = list(INT8_BLOCKINGS)


def group(graph: str, configs: list) -> list:
    """Inductor's configurations that INT8_BLOCKINGS[graph] replaces: int8 weights by bf16 activations, for its
    instruction set and admitted by its extra check."""
    chosen = INT8_BLOCKINGS[graph]
    return [c for c in configs if c.vec_isa_cls.__name__ == chosen.isa and c.input_dtype == torch.bfloat16
            and c.input2_dtype == torch.int8 and c.extra_check is getattr(micro, chosen.replaces)]


def blockings(graph: str) -> list[tuple[int, ...]]:
    return [tuple(c.register_blocking) for c in group(graph, CONFIGS)]


def made_for_this_cpu(graph: str) -> bool:
    return isinstance(ISA, group(graph, CONFIGS)[0].vec_isa_cls)


def test_the_two_blockings_are_for_different_cpus_and_torchs_own_lists_are_as_expected():
    """Each replaces a group torch 2.13 has, with a blocking it has not; an AVX-512 CPU never uses AVX2's list."""
    for graph in GRAPHS:
        assert blockings(graph) and INT8_BLOCKINGS[graph].blocking not in blockings(graph), f"{graph}: see the test"
    assert {INT8_BLOCKINGS[g].isa for g in GRAPHS} == {"VecAVX2", "VecAVX512"}
    assert not issubclass(VecAVX512, VecAVX2) and not issubclass(VecAVX2, VecAVX512)


@pytest.mark.parametrize("graph", GRAPHS)
def test_the_blocking_is_swapped_while_a_graph_compiles_on_its_cpu_and_restored_after(graph):
    before = list(CONFIGS)
    with int8_blocking(torch.device("cpu"), graph):
        keyed = inductor_config.post_grad_custom_post_pass
        if made_for_this_cpu(graph):
            assert blockings(graph) == [INT8_BLOCKINGS[graph].blocking]
            changed = [c for c in CONFIGS if c not in before]
            assert len(changed) == 1 and len(CONFIGS) == len(before) - len(group(graph, before)) + 1
            # a graph cache key of its own
            assert keyed is not None and graph in keyed.uuid() and str(INT8_BLOCKINGS[graph].blocking) in keyed.uuid()
        else:  # another CPU's list: unchanged, and so is the cache key
            assert CONFIGS == before and keyed is None
    assert CONFIGS == before and all(a is b for a, b in zip(CONFIGS, before, strict=True))
    assert inductor_config.post_grad_custom_post_pass is None


def test_exactly_one_of_the_swaps_is_made_on_an_avx2_or_avx512_cpu():
    made = [g for g in GRAPHS if made_for_this_cpu(g)]
    if isinstance(ISA, (VecAVX2, VecAVX512)):
        assert len(made) == 1, made
        assert made == (["lone"] if isinstance(ISA, VecAVX2) else ["batch"])
    else:
        assert made == []


@pytest.mark.parametrize("graph", GRAPHS)
def test_the_blocking_is_restored_when_the_compile_fails(graph):
    before = list(CONFIGS)
    with pytest.raises(RuntimeError, match="compile failed"), int8_blocking(torch.device("cpu"), graph):
        raise RuntimeError("compile failed")
    assert CONFIGS == before and inductor_config.post_grad_custom_post_pass is None


@pytest.mark.parametrize("graph", GRAPHS)
def test_a_gpu_keeps_inductors_blocking(graph):
    before = list(CONFIGS)
    with int8_blocking(torch.device("cuda"), graph):
        assert CONFIGS == before and inductor_config.post_grad_custom_post_pass is None


def compiled_kernels(layer: Int8Linear, x: torch.Tensor, graph: str, ours: bool) -> tuple[torch.Tensor, set]:
    """The layer compiled as the engine compiles `graph` (lone: one row, fixed; batch: rows symbolic): its output and
    the (rows, columns) of the micro-kernels in its code."""
    step = torch.compile(_private_copy(Int8Linear.forward).__get__(layer), fullgraph=True, dynamic=graph == "batch")
    blocking = int8_blocking(torch.device("cpu"), graph) if ours else contextlib.nullcontext()
    with inductor_config.patch({**CPU_OPTIONS, "fx_graph_cache": False}), blocking, torch.inference_mode():
        out, code = run_and_get_code(step, x)
    return out, {(int(m), int(n)) for m, n in re.findall(r"_kernel<(\d+), (\d+),", "\n".join(code))}


@pytest.mark.skipif(not isinstance(ISA, VecAVX512) or isinstance(ISA, VecAMX),
                    reason=f"Inductor's AVX-512 int8 blockings serve only a CPU with AVX-512 and no AMX (this: {ISA})")
def test_a_batch_graph_multiplies_int8_weights_in_4_row_blocks_with_the_same_numbers():
    """Inductor's own code has 8-row kernels, ours at most 4-row ones, and both give the eager layer's outputs within
    a bf16 rounding (its kernel rounds the outputs to bf16)."""
    torch.manual_seed(0)
    layer = Int8Linear(torch.nn.Linear(64, 96))
    x = torch.randn(8, 64)
    (own, own_kernels), (out, kernels) = (compiled_kernels(layer, x, "batch", ours) for ours in (False, True))
    assert max(m for m, _ in own_kernels) == 8, f"Inductor's own: {own_kernels} (the test no longer tells them apart)"
    assert max(m for m, _ in kernels) == INT8_BLOCKINGS["batch"].blocking[0], kernels
    eager = layer(x)
    for result in (own, out):
        torch.testing.assert_close(result, eager, rtol=0, atol=2.0**-8 * eager.abs().max().item())


@pytest.mark.slow
@pytest.mark.skipif(not isinstance(ISA, VecAVX2),
                    reason=f"Inductor's AVX2 int8 blockings serve only a CPU with AVX2 and no AVX-512 (this: {ISA})")
def test_a_lone_graph_multiplies_int8_weights_in_48_column_blocks_on_avx2_with_the_same_numbers():
    """One row, as the lone graph's products: Inductor's own small-row code has 16-column kernels, ours 48-column
    ones, and both give the eager layer's outputs within a bf16 rounding."""
    torch.manual_seed(0)
    layer = Int8Linear(torch.nn.Linear(128, 192))  # columns a multiple of 48, depth of 64: the small-row template
    x = torch.randn(1, 128)
    (own, own_kernels), (out, kernels) = (compiled_kernels(layer, x, "lone", ours) for ours in (False, True))
    assert {n for _, n in own_kernels} == {16}, f"Inductor's own: {own_kernels} (the test no longer tells them apart)"
    assert {n for _, n in kernels} == {INT8_BLOCKINGS["lone"].blocking[1]}, kernels
    eager = layer(x)
    for result in (own, out):
        torch.testing.assert_close(result, eager, rtol=0, atol=2.0**-8 * eager.abs().max().item())

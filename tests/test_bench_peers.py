"""benchmarks/bench_peers.py and peer_engines.py: their pure parts (the numpy top-k sampler of the ONNX loop, the
contenders' parsing, the table), and, where the peer packages are installed (benchmarks/requirements-peers.txt), that
the ONNX export computes gpt2_core's logits and that each peer generates exactly the tokens asked for. Nothing timed.
"""

from __future__ import annotations

import json
import sys
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_peers  # noqa: E402
import peer_engines  # noqa: E402
from peer_engines import top_k_sample  # noqa: E402


def draws(logits: np.ndarray, n: int, **settings: float) -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.stack([top_k_sample(logits, rng=rng, **settings) for _ in range(n)])  # (n, B)


def test_top_k_sample_draws_only_the_k_likeliest_of_each_row():
    logits = np.array([[0.0, 5.0, 1.0, 4.0, -2.0, 3.0], [9.0, 0.0, 8.0, 0.0, 0.0, 7.5]], dtype=np.float32)
    drawn = draws(logits, 500, k=3, temperature=0.8)
    assert set(drawn[:, 0]) == {1, 3, 5}
    assert set(drawn[:, 1]) == {0, 2, 5}


def test_top_k_sample_does_not_change_its_input():
    logits = np.array([[0.0, 5.0, 1.0, 4.0]], dtype=np.float32)
    before = logits.copy()
    draws(logits, 5, k=2, temperature=0.5)
    np.testing.assert_array_equal(logits, before)


def test_top_k_one_is_greedy():
    logits = np.array([[0.0, 5.0, 1.0], [3.0, 2.0, 1.0]], dtype=np.float32)
    assert (draws(logits, 50, k=1, temperature=1.0) == [1, 0]).all()


def test_top_k_sample_follows_the_tempered_probabilities():
    # after temperature 0.5, logits log 3 and log 1 become log 9 and log 1: 0.9 and 0.1; the third is cut by k=2
    logits = np.log(np.array([[3.0, 1.0, 0.5]], dtype=np.float32))
    share = (draws(logits, 4000, k=2, temperature=0.5)[:, 0] == 0).mean()
    assert share == pytest.approx(0.9, abs=0.02)  # 4000 draws: the standard error is 0.005


def test_contenders_parse_from_words_or_commas_into_the_tables_order():
    assert bench_peers.parse_contenders(["onnxruntime,transformers", "gpt2_core-fastest"]) == [
        "transformers", "gpt2_core-fastest", "onnxruntime"]
    assert bench_peers.parse_contenders(None) == list(peer_engines.ENGINES)


def test_an_unknown_contender_is_named_in_the_error():
    with pytest.raises(ValueError, match="`--contenders` has to name some of .* but has vllm"):
        bench_peers.parse_contenders(["transformers", "vllm"])


def test_decode_rate_leaves_out_the_first_token():
    assert bench_peers.decode_rate({"tokens": 11, "ttft_s": 0.5, "seconds": 1.5}) == 10.0


def row(name: str, decode: float, aggregate: float | None, ready: float | None = None) -> dict:
    return {"contender": name, "label": bench_peers.LABELS[name], "kind": "k", "serves": f"how {name} serves",
            "decode_tok_s": decode, "ttft_ms": 50.0, "aggregate_tok_s": aggregate, "peak_mib": 900.4, "ready_s": ready}


def test_the_table_compares_each_contender_with_generate():
    results = {"settings": {"threads": 2, "prompt_tokens": 32, "new_tokens": 128, "top_k": 40, "temperature": 0.8,
                            "rounds": 3, "callers": 8},
               "rows": [row("transformers", 20.0, 60.0), row("gpt2_core-fastest", 100.0, 170.0, ready=14.6),
                        row("llama.cpp", 50.0, None)],
               "skipped": {"onnxruntime": "onnxruntime is not installed"},
               "machine": {"cpu": "AMD EPYC", "cores": 2, "load_average": "0.1 0.1 0.1", "platform": "Linux",
                           "python": "3.11", "versions": {"torch": "2.13.0"}},
               "command": "python benchmarks/bench_peers.py", "wall_s": 300.0}
    table = bench_peers.markdown(results)
    assert "| transformers generate() fp32 | k | 20.0 | 1.00x | 50 | 60.0 | 900 | - |" in table
    assert "| 100.0 | 5.00x | 50 | 170.0 | 900 | 15 |" in table
    assert "| llama.cpp Q8_0 (llama-cpp-python) | k | 50.0 | 2.50x | 50 | not measured |" in table
    assert "- ONNX Runtime int8: onnxruntime is not installed" in table
    assert "- gpt2_core fastest `quantize=\"int8\", compile=True`: how gpt2_core-fastest serves" in table


def test_a_rerun_keeps_the_notes_written_by_hand(tmp_path):
    md = tmp_path / "peers-cpu.md"
    assert bench_peers.keep_notes(md) == ""
    md.write_text("# title\n\n| table |\n\n## Notes\n\nwhy it is slower\n")
    assert bench_peers.keep_notes(md) == "\n## Notes\n\nwhy it is slower\n"


# ---- with the peers installed ---------------------------------------------------------------------------------------
def not_installed(package: str) -> str:
    return f"{package} is not installed (benchmarks/requirements-peers.txt)"


def needs(package: str):
    return pytest.mark.skipif(find_spec(package) is None, reason=not_installed(package))


@pytest.fixture(scope="module")
def spec(tiny_checkpoint, tmp_path_factory) -> dict:
    return {"checkpoint": str(tiny_checkpoint), "work": str(tmp_path_factory.mktemp("peers")),
            "prompt_ids": [464, 3290, 373, 257, 1332], "prompt_text": "", "threads": 1, "callers": 3,
            "sampling": {"temperature": 0.8, "top_k": 40}}


@needs("onnxruntime")
def test_the_onnx_export_computes_gpt2_cores_logits_through_its_kv_cache(tiny_checkpoint, tmp_path):
    import onnxruntime as ort
    import torch

    from gpt2_core import load_model

    peer_engines.export_onnx(tiny_checkpoint, tmp_path, keep_fp32=True)
    session = ort.InferenceSession(str(tmp_path / "model-fp32.onnx"), providers=["CPUExecutionProvider"])
    shape = json.loads((tmp_path / "shape.json").read_text())
    ids = [[464, 3290, 373, 257, 1332, 11, 290], [50256, 40, 716, 257, 3797, 13, 198]]  # (2, 7)
    lm = load_model(tiny_checkpoint, device="cpu", dtype="fp32", quantize=None)
    with torch.no_grad():
        expected = lm.model(torch.tensor(ids)).numpy()  # (2, 7, V) without a cache
    lm.close()
    empty = np.zeros((2, shape["n_head"], 0, shape["head_dim"]), dtype=np.float32)
    past = {f"past_{kv}_{i}": empty for i in range(shape["n_layer"]) for kv in ("key", "value")}
    # a 5-token prefill, then two steps of one token each through the cache
    for start, end in ((0, 5), (5, 6), (6, 7)):
        logits, *present = session.run(None, {"input_ids": np.array(ids, dtype=np.int64)[:, start:end], **past})
        np.testing.assert_allclose(logits, expected[:, end - 1], rtol=1e-4, atol=1e-4)
        past = dict(zip(past, present))


@pytest.mark.parametrize(("package", "engine_class"), [("onnxruntime", "OnnxRuntime"), ("ctranslate2", "CTranslate2")])
def test_a_peers_loop_generates_the_tokens_asked_for(spec, package, engine_class):
    if find_spec(package) is None:
        pytest.skip(not_installed(package))
    engine_type = getattr(peer_engines, engine_class)
    engine_type({**spec, "preparing": True}).prepare()
    engine = engine_type(spec)
    tokens, ttft, seconds = engine.one(6, seed=1)
    assert tokens == 6 and 0 < ttft <= seconds
    assert engine.many(3, 4, seed=1)[0] == 12

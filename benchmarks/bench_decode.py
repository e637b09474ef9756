"""Decode speed of gpt2_core against transformers' generate(), side by side in one process.

    python benchmarks/bench_decode.py                 # gpt2 (124M) shape, random weights, CPU
    python benchmarks/bench_decode.py --device cuda --shapes gpt2 gpt2-xl
    python benchmarks/bench_decode.py --dtypes fp32 int8 --no-compile --callers 1 8     # the fast CPU path

Measures, for the same checkpoint and settings (batch 1, top-k 40, temperature 0.8, 32-token prompt, 128 new tokens):
decode tokens/s of gpt2_core (eager and torch.compile'd) vs GPT2LMHeadModel.generate(), alternating the contenders
over several rounds and reporting the median; time to first token for a 1000-token prompt; aggregate tokens/s and
p95 latency of 64-token requests with 1, 4, 8 and 16 concurrent callers (the batching engine); peak memory.
"int8" rows are gpt2_core with --quantize int8 (on a CPU: int8 weights, gpt2_core/quantize.py) against transformers
in fp32. On a CPU it also prints the memory roofline: the bandwidth of a large fp32 matrix-vector product here, and the
tokens/s it allows a model that reads all its weights once per token.
Random weights in the real shape: speed does not depend on the values. Prints a table and writes JSON.

No OpenMP pool outlives a contender's turn (gpt2_core/threads.py): transformers' generate(), the roofline and the
loading run on threads that end, and gpt2_core's engines, open side by side, end their threads between their runs
(a short IDLE_S). A pool left on the main thread by generate() used to slow gpt2_core's engine in this process.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import gpt2_core.generate.engine as engine_module  # noqa: E402
from gpt2_core import load_model  # noqa: E402
from gpt2_core.config import PRESETS  # noqa: E402
from gpt2_core.testing import random_checkpoint  # noqa: E402
from gpt2_core.threads import ends_its_thread  # noqa: E402

PROMPT_IDS = list(range(1000, 1032))  # 32 tokens
NEW_TOKENS = 128
SAMPLING = dict(temperature=0.8, top_k=40)


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@ends_its_thread
def load_hf(checkpoint, dtype: torch.dtype, device: torch.device):
    from transformers import GPT2LMHeadModel

    return GPT2LMHeadModel.from_pretrained(checkpoint, dtype=dtype).to(device).eval()


@ends_its_thread
def time_hf(hf, ids: torch.Tensor, new_tokens: int) -> float:
    torch.manual_seed(0)
    start = time.perf_counter()
    with torch.inference_mode():
        hf.generate(ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=True, pad_token_id=50256,
                    **SAMPLING)
    if ids.is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start


def time_ours(lm, prompt: str, new_tokens: int) -> float:
    start = time.perf_counter()
    (sample,) = lm.generate(prompt, max_new_tokens=new_tokens, seed=0, stop=None, **SAMPLING)
    assert len(sample.token_ids) == new_tokens or sample.finish_reason == "eos"
    return time.perf_counter() - start


@ends_its_thread
def dynamic_int8(checkpoint):
    """gpt2_core with PyTorch's dynamic int8 layers (fbgemm; activations quantized per call, per tensor)."""
    import warnings

    from torch.ao.nn.quantized.dynamic import Linear as DynamicInt8Linear
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    lm = load_model(checkpoint, device="cpu", dtype="fp32")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for block in lm.model.h:
            quantize_dynamic(block, {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8, inplace=True)
        lm.model.lm_head.qconfig = per_channel_dynamic_qconfig
        lm.model.lm_head = DynamicInt8Linear.from_float(lm.model.lm_head)
    return lm


@ends_its_thread
def roofline_gb_s(rounds: int = 20) -> float:
    """Bytes per second a large fp32 matrix-vector product streams here (the bound of batch-1 decoding)."""
    w, x = torch.randn(8192, 8192), torch.randn(8192)
    for _ in range(3):
        w @ x
    start = time.perf_counter()
    for _ in range(rounds):
        w @ x
    return rounds * w.numel() * 4 / (time.perf_counter() - start) / 1e9


def concurrency(lm, prompt: str, callers: int, requests_each: int = 2, new_tokens: int = 64) -> dict:
    latencies: list[float] = []
    lock = threading.Lock()

    def caller(i: int) -> None:
        for r in range(requests_each):
            start = time.perf_counter()
            lm.generate(prompt, max_new_tokens=new_tokens, seed=i * 100 + r, **SAMPLING)
            with lock:
                latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    threads = [threading.Thread(target=caller, args=(i,)) for i in range(callers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    latencies.sort()
    return {"callers": callers, "tokens_per_s": callers * requests_each * new_tokens / wall,
            "p50_s": statistics.median(latencies), "p95_s": latencies[max(0, round(0.95 * len(latencies)) - 1)]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--shapes", nargs="+", default=["gpt2"], choices=list(PRESETS))
    parser.add_argument("--dtypes", nargs="+", default=None,
                        help="fp32, bf16, fp16, int8 (gpt2_core quantized; transformers fp32); "
                             "default: fp32 bf16 int8 on CPU, fp16 on CUDA")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--callers", type=int, nargs="+", default=[1, 4, 8, 16])
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--out", default=None, help="JSON path (default benchmarks/results/decode-<device>.json)")
    args = parser.parse_args()
    device = torch.device(args.device)
    engine_module.IDLE_S = 0.2  # each engine's thread, and its pool, ends between its runs (module docstring)
    dtypes = args.dtypes or (["fp32", "bf16", "int8"] if device.type == "cpu" else ["fp16"])
    torch_dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16, "int8": torch.float32}
    results: dict = {"machine": {"platform": platform.platform(), "processor": platform.processor(),
                                 "cpus": torch.get_num_threads(), "torch": torch.__version__,
                                 "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu"},
                     "settings": {"prompt_tokens": len(PROMPT_IDS), "new_tokens": NEW_TOKENS, **SAMPLING},
                     "rows": []}
    if device.type == "cpu":
        results["machine"]["roofline_gb_s"] = roofline_gb_s()
    rows = results["rows"]
    root = Path(tempfile.gettempdir()) / "gpt2-playground-bench"
    for shape in args.shapes:
        checkpoint = random_checkpoint(root / shape, PRESETS[shape])
        for dt in dtypes:
            hf = load_hf(checkpoint, torch_dtypes[dt], device)
            quantize = "int8" if dt == "int8" else None
            eager = load_model(checkpoint, device=args.device, dtype="fp32" if quantize else dt, quantize=quantize,
                               compile=False)  # (int8 compiles in the background by default)
            ids = torch.tensor([PROMPT_IDS], device=device)
            contenders = {"transformers generate()": lambda n, p, hf=hf, ids=ids: time_hf(hf, ids, n),
                          "gpt2_core eager": lambda n, p, lm=eager: time_ours(lm, p, n)}
            graphed = None
            if device.type == "cuda" and quantize is None:  # CUDA graphs of padded batch sizes (cuda_graphs.py)
                graphed = load_model(checkpoint, device=args.device, dtype=dt, cuda_graphs=True)
                contenders["gpt2_core CUDA graphs"] = lambda n, p, lm=graphed: time_ours(lm, p, n)
            dynamic = None
            if quantize:  # the alternative the CPU int8 path was chosen against (gpt2_core/quantize.py)
                dynamic = dynamic_int8(checkpoint)
                contenders["PyTorch dynamic int8 (not used)"] = lambda n, p, lm=dynamic: time_ours(lm, p, n)
            compiled = None
            if not args.no_compile and (quantize is None or device.type == "cpu"):
                start = time.perf_counter()
                compiled = load_model(checkpoint, device=args.device, dtype="fp32" if quantize else dt,
                                      quantize=quantize, compile=True)
                compile_s = time.perf_counter() - start
                if compiled.engine.decoding == "compiled":
                    contenders["gpt2_core compiled"] = lambda n, p, lm=compiled: time_ours(lm, p, n)
            prompt = eager.decode(PROMPT_IDS)
            times: dict[str, list[float]] = {name: [] for name in contenders}
            for fn in contenders.values():  # warm-up
                fn(8, prompt)
            for r in range(args.rounds):  # alternate, rotating the order each round
                names = list(contenders)
                for name in names[r % len(names):] + names[: r % len(names)]:
                    times[name].append(contenders[name](NEW_TOKENS, prompt))
            baseline = NEW_TOKENS / statistics.median(times["transformers generate()"])
            for name, ts in times.items():
                tps = NEW_TOKENS / statistics.median(ts)
                rows.append({"table": "decode", "shape": shape, "dtype": dt, "engine": name, "tokens_per_s": tps,
                             "vs_transformers": tps / baseline, "runs": len(ts)})
            # time to first token, 1000-token prompt
            long_prompt = eager.decode(list(range(2000, 3000)))
            long_ids = torch.tensor([eager.prepare_prompt(long_prompt, room=1).ids], device=device)
            hf_ttft = statistics.median(time_hf(hf, long_ids, 1) for _ in range(2))
            ours_ttft = statistics.median(eager.generate(long_prompt, max_new_tokens=1)[0].time_to_first_token
                                          for _ in range(2))
            rows.append({"table": "ttft", "shape": shape, "dtype": dt, "prompt_tokens": long_ids.size(1),
                         "transformers_s": hf_ttft, "gpt2_core_s": ours_ttft})
            # concurrent callers through the batching engine (compiled steps when available)
            server = compiled if compiled is not None and compiled.engine.decoding == "compiled" else eager
            server = graphed or server
            for n in args.callers:
                rows.append({"table": "concurrency", "shape": shape, "dtype": dt, **concurrency(server, prompt, n)})
            rows.append({"table": "memory", "shape": shape, "dtype": dt, "weights_mib": eager.memory_bytes() / 2**20,
                         "kv_cache_mib_per_sequence": 2 * eager.config.n_layer * eager.config.block_size
                         * eager.config.n_embd * torch.tensor([], dtype=eager.dtype).element_size() / 2**20,
                         "peak_rss_mib": rss_mib(), "compile_s": compile_s if compiled is not None else None})
            for lm in (eager, compiled, dynamic, graphed):
                if lm is not None:
                    lm.close()
            del hf
    print_tables(results)
    out = Path(args.out) if args.out else Path(__file__).parent / "results" / f"decode-{device.type}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"\nwrote {out}")


def print_tables(results: dict) -> None:
    m = results["machine"]
    print(f"machine: {m['processor'] or m['platform']}, {m['cpus']} threads, torch {m['torch']}, device {m['device']}")
    rows = results["rows"]
    if "roofline_gb_s" in m:
        bandwidth = m["roofline_gb_s"]
        bounds = ", ".join(f"{r['shape']} {r['dtype']} ({r['weights_mib'] * 2**20 / 1e9:.2f} GB) "
                           f"<= {bandwidth * 1e9 / (r['weights_mib'] * 2**20):.0f} tok/s"
                           for r in rows if r["table"] == "memory")
        print(f"memory roofline: a large fp32 matrix-vector product streams {bandwidth:.1f} GB/s here; reading every "
              f"weight once per token bounds batch-1 decoding: {bounds}")
    print("\n| shape | dtype | engine | decode tok/s | vs transformers |\n|---|---|---|---:|---:|")
    for r in (r for r in rows if r["table"] == "decode"):
        print(f"| {r['shape']} | {r['dtype']} | {r['engine']} | {r['tokens_per_s']:.1f} | {r['vs_transformers']:.2f}x |")
    print("\n| shape | dtype | prompt tokens | TTFT transformers | TTFT gpt2_core |\n|---|---|---:|---:|---:|")
    for r in (r for r in rows if r["table"] == "ttft"):
        print(f"| {r['shape']} | {r['dtype']} | {r['prompt_tokens']} | {r['transformers_s'] * 1000:.0f} ms "
              f"| {r['gpt2_core_s'] * 1000:.0f} ms |")
    print("\n| shape | dtype | callers | aggregate tok/s | vs 1 caller | p50 latency | p95 latency | p95 vs alone |"
          "\n|---|---|---:|---:|---:|---:|---:|---:|")
    solo: dict = {}
    for r in (r for r in rows if r["table"] == "concurrency"):
        key = (r["shape"], r["dtype"])
        solo.setdefault(key, r)
        s = solo[key]
        print(f"| {r['shape']} | {r['dtype']} | {r['callers']} | {r['tokens_per_s']:.0f} | "
              f"{r['tokens_per_s'] / s['tokens_per_s']:.1f}x | {r['p50_s']:.2f} s | {r['p95_s']:.2f} s | "
              f"{r['p95_s'] / s['p95_s']:.2f}x |")
    print("\n| shape | dtype | weights | KV cache / sequence | peak RSS | compile |\n|---|---|---:|---:|---:|---:|")
    for r in (r for r in rows if r["table"] == "memory"):
        compile_s = f"{r['compile_s']:.0f} s" if r["compile_s"] is not None else "-"
        print(f"| {r['shape']} | {r['dtype']} | {r['weights_mib']:.0f} MiB | {r['kv_cache_mib_per_sequence']:.0f} MiB "
              f"| {r['peak_rss_mib']:.0f} MiB | {compile_s} |")


if __name__ == "__main__":
    main()

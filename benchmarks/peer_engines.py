"""The engines bench_peers.py compares, each behind the same three calls, run one per process; and their conversions.

    python benchmarks/peer_engines.py prepare NAME SPEC_JSON    # convert the checkpoint for NAME (its own process)
    python benchmarks/peer_engines.py serve NAME SPEC_JSON      # load NAME, then answer requests on stdin/stdout

An engine loads from the spec (the checkpoint, the prompt as ids and text, the sampling settings, the threads) and
answers `one(new_tokens, seed)` -> (tokens, time to first token, total seconds) for one caller, and
`many(callers, new_tokens, seed)` -> (tokens, seconds) for that many callers at once, the way a server would run it
with that engine (each engine's `serves` says how). Every engine samples top-k then temperature and generates exactly
`new_tokens` tokens (the end-of-text token does not stop it, except gpt2_core, which has no such switch: its count is
taken from what it returned).

The peers (all optional; bench_peers.py skips a missing one and says why):
- CTranslate2: its own converter from the transformers-format directory, weights int8 (`quantization="int8"`).
- ONNX Runtime: gpt2_core's model exported by torch.onnx with the KV cache as inputs and outputs (one per layer,
  concatenated each step, as optimum exports GPT-2), its MatMuls quantized by `onnxruntime.quantization.
  quantize_dynamic` (int8 weights, activations quantized per call), decoded by the loop below with numpy top-k.
- llama.cpp (llama-cpp-python): llama.cpp's own convert_hf_to_gguf.py with its own gguf-py (both in
  llama-cpp-python's source release, under vendor/llama.cpp: `PEERS_LLAMA_CPP_SOURCE`) writes Q8_0 directly.

The serve protocol is one JSON object per line: the worker first prints {"ready": ...} with what it loaded; each
request line {"op": "one"|"many", ...} gets one answer line; {"op": "quit"} answers with the process's peak RSS.
Library output is sent to stderr, so stdout carries only the protocol.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


# ---- sampling for the hand-written loop -----------------------------------------------------------------------------
def top_k_sample(logits: Any, *, k: int, temperature: float, rng: Any) -> Any:
    """Draw one id per row of `logits` (B, V) from the k likeliest after temperature; `logits` is not changed."""
    import numpy as np

    scaled = logits.astype(np.float32) / temperature  # a new array: the input stays as it was
    top = np.argpartition(scaled, -k, axis=-1)[:, -k:]  # (B, k) ids of the k largest, unordered
    kept = np.take_along_axis(scaled, top, axis=-1)  # (B, k)
    probs = np.exp(kept - kept.max(axis=-1, keepdims=True))
    probs /= probs.sum(axis=-1, keepdims=True)
    u = rng.random((logits.shape[0], 1))  # (B, 1) inverse-CDF draw
    choice = np.minimum((u >= probs.cumsum(axis=-1)).sum(axis=-1), k - 1)  # (B,)
    return top[np.arange(logits.shape[0]), choice]


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_threads(callers: int, work: Any) -> tuple[int, float]:
    """`callers` threads each calling work(i) -> tokens, all at once: (tokens in all, wall seconds)."""
    counts = [0] * callers

    def caller(i: int) -> None:
        counts[i] = work(i)

    start = time.perf_counter()
    threads = [threading.Thread(target=caller, args=(i,)) for i in range(callers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts), time.perf_counter() - start


# ---- the engines ----------------------------------------------------------------------------------------------------
class Engine:
    needs: tuple[str, ...] = ()  # packages that have to be installed
    install = "pip install -r benchmarks/requirements-peers.txt"  # how to get them
    serves = ""  # how `many` serves concurrent callers
    concurrent = True  # False: `many` is not measured (the engine has no way to serve callers at once)
    artifact: str | None = None  # the converted model's folder name, if it needs a conversion

    def __init__(self, spec: dict[str, Any]):
        self.spec = spec
        self.sampling = spec["sampling"]  # {"temperature": ..., "top_k": ...}
        self.ids: list[int] = spec["prompt_ids"]
        self.kind = ""
        self.ready_s: float | None = None  # seconds from load to the fastest decoding (gpt2_core's compile)
        self.batches_ready_s: float | None = None  # and to its compiled batches (gpt2_core's CPU int8 default)

    def path(self) -> Path:
        assert self.artifact is not None
        return Path(self.spec["work"]) / self.artifact

    def prepare(self) -> None:
        """Convert the checkpoint into self.path() (called in its own process, before any serve)."""

    def one(self, new_tokens: int, seed: int) -> tuple[int, float, float]:
        raise NotImplementedError

    def many(self, callers: int, new_tokens: int, seed: int) -> tuple[int, float]:
        raise NotImplementedError

    def versions(self) -> dict[str, str]:
        from importlib.metadata import version

        return {name: version(name) for name in self.needs}


class Transformers(Engine):
    needs = ("torch", "transformers")
    serves = "one generate() call on a batch of the callers' prompts"

    def __init__(self, spec: dict[str, Any]):
        super().__init__(spec)
        import torch
        from transformers import GPT2LMHeadModel

        torch.set_num_threads(spec["threads"])
        self.torch = torch
        self.model = GPT2LMHeadModel.from_pretrained(spec["checkpoint"], dtype=torch.float32).eval()
        self.kind = "fp32, eager"

    def _generate(self, batch: int, new_tokens: int, seed: int, streamer: Any = None) -> None:
        self.torch.manual_seed(seed)
        ids = self.torch.tensor([self.ids] * batch)
        with self.torch.inference_mode():
            self.model.generate(ids, attention_mask=self.torch.ones_like(ids), max_new_tokens=new_tokens,
                                min_new_tokens=new_tokens, do_sample=True, pad_token_id=50256, streamer=streamer,
                                **self.sampling)

    def one(self, new_tokens: int, seed: int) -> tuple[int, float, float]:
        puts: list[float] = []  # generate() puts the prompt first, then each new token

        class Clock:
            def put(self, value: Any) -> None:
                puts.append(time.perf_counter())

            def end(self) -> None:
                pass

        start = time.perf_counter()
        self._generate(1, new_tokens, seed, Clock())
        return len(puts) - 1, puts[1] - start, time.perf_counter() - start

    def many(self, callers: int, new_tokens: int, seed: int) -> tuple[int, float]:
        start = time.perf_counter()
        self._generate(callers, new_tokens, seed)
        return callers * new_tokens, time.perf_counter() - start


class Gpt2Core(Engine):
    """load_model(checkpoint, **options); mode "default" waits for a background compile (if one is started)."""

    needs = ("torch",)
    serves = "a thread per caller calling lm.generate (the engine batches them)"
    options: dict[str, Any] = {}
    wait_for_compile = False
    pytorch_kernel = False  # int8 on PyTorch's kernel even where the project's int8-by-int8 kernel serves

    def __init__(self, spec: dict[str, Any]):
        super().__init__(spec)
        import torch

        from gpt2_core import int8_kernel, load_model

        if self.pytorch_kernel:  # (a worker is a process of its own: the setting is this contender's alone)
            os.environ[int8_kernel.OFF] = "off"

        torch.set_num_threads(spec["threads"])
        start = time.perf_counter()
        self.lm = load_model(spec["checkpoint"], **self.options)
        if self.wait_for_compile:
            timeout = spec["compile_timeout_s"]
            self.ready_s = self._wait_compiled(start, timeout)
            # then the graph for batches (CPU int8), still compiling in the background: the rounds measure it, and
            # its compile must not overlap the next contender's load
            decode = self.lm.engine.decode  # the compiled step, once ready_s is set
            batches = self.ready_s is not None and hasattr(decode, "batches_ready") and decode.batch is not None
            while batches and not decode.batches_ready and time.perf_counter() - start < 2 * timeout:
                time.sleep(0.2)
            if batches and decode.batches_ready:
                self.batches_ready_s = time.perf_counter() - start
        elif self.lm.engine.decoding == "compiled":
            self.ready_s = time.perf_counter() - start
        self.kind = f"{self.lm.precision}, {self.lm.engine.decoding}"
        self.text = spec["prompt_text"]
        (probe,) = self.lm.generate(self.text, max_new_tokens=1, seed=0, stop=None, **self.sampling)
        assert probe.prompt_tokens == len(self.ids), (probe.prompt_tokens, len(self.ids))

    def _wait_compiled(self, start: float, timeout: float) -> float | None:
        """Seconds from the load to the compiled decode step, or None: not compiled within `timeout`, or no compile
        running (the model's description says "compiling" while its background compile runs)."""
        while time.perf_counter() - start < timeout:
            decoding = self.lm.describe().decoding
            if decoding == "compiled":
                return time.perf_counter() - start
            if decoding != "compiling":
                return None
            time.sleep(0.2)
        return None

    def one(self, new_tokens: int, seed: int) -> tuple[int, float, float]:
        start = time.perf_counter()
        (s,) = self.lm.generate(self.text, max_new_tokens=new_tokens, seed=seed, stop=None, **self.sampling)
        total = time.perf_counter() - start
        assert s.time_to_first_token is not None
        return len(s.token_ids), s.time_to_first_token, total

    def many(self, callers: int, new_tokens: int, seed: int) -> tuple[int, float]:
        def work(i: int) -> int:
            (s,) = self.lm.generate(self.text, max_new_tokens=new_tokens, seed=seed + i, stop=None, **self.sampling)
            return len(s.token_ids)

        return run_threads(callers, work)


class Gpt2CoreDefault(Gpt2Core):
    options: dict[str, Any] = {}
    wait_for_compile = True


class Gpt2CoreFastest(Gpt2Core):
    options = {"quantize": "int8", "compile": True}


class Gpt2CoreEager(Gpt2Core):
    """What the default serves from its load until its background compile is ready (a cold compile takes minutes)."""

    options = {"quantize": "int8", "compile": False}


class Gpt2CoreExact(Gpt2Core):
    options = {"dtype": "fp32", "quantize": None}


class Gpt2CoreDefaultPytorchKernel(Gpt2CoreDefault):
    """The default as it was before the project's int8-by-int8 kernel (and as it is where that does not serve)."""

    pytorch_kernel = True


class Gpt2CoreEagerPytorchKernel(Gpt2CoreEager):
    pytorch_kernel = True


class CTranslate2(Engine):
    needs = ("ctranslate2",)
    serves = "one generate_batch() call on the callers' prompts"
    artifact = "ct2-int8"

    def prepare(self) -> None:
        from ctranslate2.converters import TransformersConverter

        TransformersConverter(self.spec["checkpoint"]).convert(str(self.path()), quantization="int8", force=True)

    def __init__(self, spec: dict[str, Any]):
        super().__init__(spec)
        if spec.get("preparing"):
            return
        import ctranslate2

        self.ct2 = ctranslate2
        self.generator = ctranslate2.Generator(str(self.path()), device="cpu", compute_type="int8",
                                               intra_threads=spec["threads"])
        vocab = json.loads((self.path() / "vocabulary.json").read_text())
        self.tokens = [vocab[i] for i in self.ids]  # CTranslate2 takes the prompt as token strings
        self.kind = f"int8 ({self.generator.compute_type})"

    def _options(self, new_tokens: int) -> dict[str, Any]:
        return {"max_length": new_tokens, "min_length": new_tokens, "sampling_topk": self.sampling["top_k"],
                "sampling_temperature": self.sampling["temperature"]}

    def one(self, new_tokens: int, seed: int) -> tuple[int, float, float]:
        self.ct2.set_random_seed(seed)
        start = time.perf_counter()
        first, n = 0.0, 0
        for _ in self.generator.generate_tokens(self.tokens, **self._options(new_tokens)):
            n += 1
            if n == 1:
                first = time.perf_counter() - start
        return n, first, time.perf_counter() - start

    def many(self, callers: int, new_tokens: int, seed: int) -> tuple[int, float]:
        self.ct2.set_random_seed(seed)
        start = time.perf_counter()
        results = self.generator.generate_batch([self.tokens] * callers, include_prompt_in_result=False,
                                                **self._options(new_tokens))
        return sum(len(r.sequences_ids[0]) for r in results), time.perf_counter() - start


class OnnxRuntime(Engine):
    needs = ("onnxruntime", "onnx")
    serves = "one batch of the callers' prompts in the decode loop"
    artifact = "onnx-int8"

    def prepare(self) -> None:
        export_onnx(Path(self.spec["checkpoint"]), self.path())

    def __init__(self, spec: dict[str, Any]):
        super().__init__(spec)
        if spec.get("preparing"):
            return
        import numpy as np
        import onnxruntime as ort

        self.np = np
        options = ort.SessionOptions()
        options.intra_op_num_threads = spec["threads"]
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(self.path() / "model-int8.onnx"), options,
                                            providers=["CPUExecutionProvider"])
        shape = json.loads((self.path() / "shape.json").read_text())
        self.n_layer, self.n_head, self.head_dim = shape["n_layer"], shape["n_head"], shape["head_dim"]
        self.kind = "int8 (quantize_dynamic)"

    def _decode(self, batch: int, new_tokens: int, seed: int) -> tuple[int, float, float]:
        np = self.np
        rng = np.random.default_rng(seed)
        start = time.perf_counter()
        empty = np.zeros((batch, self.n_head, 0, self.head_dim), dtype=np.float32)  # (B, nh, 0, hs)
        past = {f"past_{kv}_{i}": empty for i in range(self.n_layer) for kv in ("key", "value")}
        ids = np.array([self.ids] * batch, dtype=np.int64)  # (B, T)
        first = 0.0
        for n in range(new_tokens):
            logits, *present = self.session.run(None, {"input_ids": ids, **past})  # (B, V), per layer (B, nh, S, hs)
            ids = top_k_sample(logits, k=self.sampling["top_k"], temperature=self.sampling["temperature"],
                               rng=rng)[:, None]  # (B, 1)
            past = dict(zip(past, present))
            if n == 0:
                first = time.perf_counter() - start
        return batch * new_tokens, first, time.perf_counter() - start

    def one(self, new_tokens: int, seed: int) -> tuple[int, float, float]:
        return self._decode(1, new_tokens, seed)

    def many(self, callers: int, new_tokens: int, seed: int) -> tuple[int, float]:
        tokens, _, seconds = self._decode(callers, new_tokens, seed)
        return tokens, seconds


class LlamaCpp(Engine):
    needs = ("llama_cpp_python",)
    install = ("pip install llama-cpp-python==0.3.36 (it compiles llama.cpp: more than 15 min on 2 busy cores), and "
               "set PEERS_LLAMA_CPP_SOURCE to vendor/llama.cpp of its unpacked source release (the GGUF converter)")
    serves = "not measured: llama-cpp-python's Llama decodes one sequence at a time (its server queues requests)"
    concurrent = False
    artifact = "gguf-q8_0"

    def prepare(self) -> None:
        import subprocess

        source = os.environ.get("PEERS_LLAMA_CPP_SOURCE")
        if not source or not (Path(source) / "convert_hf_to_gguf.py").is_file():
            raise RuntimeError("set PEERS_LLAMA_CPP_SOURCE to llama.cpp's source folder (vendor/llama.cpp of "
                               "llama-cpp-python's source release), which has convert_hf_to_gguf.py")
        # the converter reads n_ctx, which the Hub's config.json has and transformers 5's save_pretrained drops
        checkpoint = Path(self.spec["checkpoint"])
        staged = self.path() / "hf"
        staged.mkdir(parents=True, exist_ok=True)
        for f in checkpoint.iterdir():
            if f.name != "config.json" and not (staged / f.name).exists():
                (staged / f.name).symlink_to(f.resolve())
        config = json.loads((checkpoint / "config.json").read_text())
        (staged / "config.json").write_text(json.dumps({"n_ctx": config["n_positions"], **config}))
        env = {**os.environ, "PYTHONPATH": str(Path(source) / "gguf-py")}  # the converter's own gguf version
        subprocess.run([sys.executable, str(Path(source) / "convert_hf_to_gguf.py"), str(staged),
                        "--outtype", "q8_0", "--outfile", str(self.path() / "model-q8_0.gguf")], env=env, check=True,
                       stdout=sys.stderr)

    def __init__(self, spec: dict[str, Any]):
        super().__init__(spec)
        if spec.get("preparing"):
            return
        from llama_cpp import Llama

        self.llm = Llama(str(self.path() / "model-q8_0.gguf"), n_ctx=512, n_batch=512, n_threads=spec["threads"],
                         n_threads_batch=spec["threads"], verbose=False)
        self.kind = "Q8_0"

    def one(self, new_tokens: int, seed: int) -> tuple[int, float, float]:
        self.llm.set_seed(seed)
        self.llm.reset()  # forget the last prompt: otherwise its cached prefix skips the prefill
        start = time.perf_counter()
        first, n = 0.0, 0
        for _ in self.llm.generate(self.ids, top_k=self.sampling["top_k"], top_p=1.0, min_p=0.0,
                                   temp=self.sampling["temperature"], repeat_penalty=1.0):
            n += 1
            if n == 1:
                first = time.perf_counter() - start
            if n == new_tokens:  # generate() goes on past the end-of-text token until the caller stops
                break
        return n, first, time.perf_counter() - start


ENGINES: dict[str, type[Engine]] = {
    "transformers": Transformers,
    "gpt2_core-default": Gpt2CoreDefault,
    "gpt2_core-fastest": Gpt2CoreFastest,
    "gpt2_core-eager": Gpt2CoreEager,
    "gpt2_core-exact": Gpt2CoreExact,
    "gpt2_core-default-pytorch-kernel": Gpt2CoreDefaultPytorchKernel,
    "gpt2_core-eager-pytorch-kernel": Gpt2CoreEagerPytorchKernel,
    "ctranslate2": CTranslate2,
    "onnxruntime": OnnxRuntime,
    "llama.cpp": LlamaCpp,
}


def missing(name: str) -> str | None:
    """Why engine `name` cannot run here (a module does not import), or None."""
    from importlib.util import find_spec

    modules = {"llama_cpp_python": "llama_cpp"}
    for package in ENGINES[name].needs:
        if find_spec(modules.get(package, package)) is None:
            return f"{package} is not installed ({ENGINES[name].install})"
    return None


# ---- ONNX export ----------------------------------------------------------------------------------------------------
def export_onnx(checkpoint: Path, out: Path, *, keep_fp32: bool = False) -> None:
    """gpt2_core's model with per-layer past keys/values as inputs and presents as outputs, exported by torch.onnx
    to out/model-fp32.onnx, then its MatMuls quantized by quantize_dynamic (int8 weights) to out/model-int8.onnx."""
    import torch
    import torch.nn.functional as F
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from gpt2_core import load_model

    lm = load_model(checkpoint, device="cpu", dtype="fp32", quantize=None)
    gpt, config = lm.model, lm.config
    lm.close()

    class PastKV(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.gpt = gpt
            self.head = torch.nn.Parameter(gpt.wte.weight.detach().t().contiguous())  # (C, V) an initializer to quantize

        def forward(self, ids: torch.Tensor, *past: torch.Tensor) -> tuple[torch.Tensor, ...]:
            B, T = ids.shape
            P = past[0].shape[2]
            C, nh = config.n_embd, config.n_head
            pos = torch.arange(P, P + T)  # (T,)
            allowed = torch.arange(P + T)[None, :] <= pos[:, None]  # (T, P+T) causal over past and new
            x = gpt.wte(ids) + gpt.wpe(pos)  # (B, T, C)
            presents = []
            for i, block in enumerate(gpt.h):
                attn = block.attn
                q, k, v = attn.c_attn(block.ln_1(x)).split(C, dim=2)
                q, k, v = (t.view(B, T, nh, C // nh).transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hs)
                k = torch.cat([past[2 * i], k], dim=2)  # (B, nh, P+T, hs)
                v = torch.cat([past[2 * i + 1], v], dim=2)
                y = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, scale=attn.scale)  # (B, nh, T, hs)
                x = x + attn.c_proj(y.transpose(1, 2).reshape(B, T, C))
                x = x + block.mlp(block.ln_2(x))
                presents += [k, v]
            logits = torch.matmul(gpt.ln_f(x[:, -1]), self.head)  # (B, V): the last position only
            return (logits, *presents)

    names = [f"past_{kv}_{i}" for i in range(config.n_layer) for kv in ("key", "value")]
    past = [torch.zeros(2, config.n_head, 3, config.head_dim) for _ in names]
    batch, seq, past_len = torch.export.Dim("batch", max=64), torch.export.Dim("seq", max=1024), \
        torch.export.Dim("past", max=1024)
    shapes = {"ids": {0: batch, 1: seq}, "past": tuple({0: batch, 2: past_len} for _ in names)}
    out.mkdir(parents=True, exist_ok=True)
    fp32 = out / "model-fp32.onnx"
    with torch.no_grad():
        torch.onnx.export(PastKV().eval(), (torch.zeros(2, 4, dtype=torch.long), *past), str(fp32), dynamo=True,
                          input_names=["input_ids", *names], output_names=["logits", *(n.replace("past", "present")
                                                                                      for n in names)],
                          dynamic_shapes=shapes, external_data=False)
    quantize_dynamic(str(fp32), str(out / "model-int8.onnx"), weight_type=QuantType.QInt8)
    if not keep_fp32:
        fp32.unlink()
    (out / "shape.json").write_text(json.dumps({"n_layer": config.n_layer, "n_head": config.n_head,
                                                "head_dim": config.head_dim}))


# ---- the worker -----------------------------------------------------------------------------------------------------
def serve(name: str, spec: dict[str, Any]) -> None:
    """Answer the protocol (module docstring) on the real stdout; everything else printed goes to stderr."""
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    def say(message: dict[str, Any]) -> None:
        protocol.write(json.dumps(message) + "\n")

    start = time.perf_counter()
    engine = ENGINES[name](spec)
    load_s = time.perf_counter() - start
    engine.one(8, seed=0)  # warm up both paths
    if spec["callers"] > 1 and engine.concurrent:
        engine.many(spec["callers"], 8, seed=0)
    say({"ready": True, "kind": engine.kind, "load_s": load_s, "ready_s": engine.ready_s,
         "batches_ready_s": engine.batches_ready_s,
         "concurrent": engine.concurrent, "serves": engine.serves, "versions": engine.versions()})
    for line in sys.stdin:
        request = json.loads(line)
        if request["op"] == "quit":
            break
        if request["op"] == "one":
            tokens, ttft, seconds = engine.one(request["new_tokens"], request["seed"])
            say({"tokens": tokens, "ttft_s": ttft, "seconds": seconds})
        else:
            tokens, seconds = engine.many(request["callers"], request["new_tokens"], request["seed"])
            say({"tokens": tokens, "seconds": seconds})
    say({"peak_rss_mib": peak_rss_mib()})


def main() -> None:
    command, name, spec = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    sys.path.insert(0, str(ROOT))
    if command == "prepare":
        ENGINES[name]({**spec, "preparing": True}).prepare()
    elif command == "serve":
        serve(name, spec)
    else:
        raise SystemExit(f"unknown command {command!r}: prepare or serve")


if __name__ == "__main__":
    main()

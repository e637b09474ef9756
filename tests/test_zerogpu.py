"""ZeroGPU hosting (gpt2_core/zerogpu.py, demo/zerogpu.py), on this CPU.

Two stand-ins for a ZeroGPU Space, since none is here. The real `spaces` package, installed but not on ZeroGPU, where
its decorator is a no-op: the ZeroGPU path through it generates, scores, lists the next word, draws attention maps and
reads the layers as the local backend does. And a recording decorator in its place, as if on ZeroGPU: every use of
the model (each module's forward, its prefill and decode steps, the allocation of its KV cache) must happen inside a
lent call, in that call's own thread, while the real app streams, scores, lists the next word, draws attention maps
and reads the layers; each call asks for a duration worked out from its request, longer the more tokens it reads;
GPT-2 is loaded at start-up, on cuda; training and the Scale tab say why they are off. What needs a real ZeroGPU Space
(the forked worker, pickling, the scheduler, the quota) is not tested here.
"""

from __future__ import annotations

import functools
import inspect
import math
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
from gradio_client import Client
from ui_helpers import launched_app

from demo import AppConfig, start_models
from demo.zerogpu import reported, spaces_lend
from gpt2_core import SamplingParams, TextModel, load_model
from gpt2_core.backend import SCALE, TRAINING, TokenEvent, TokenRequest
from gpt2_core.model import GPT, KVCache
from gpt2_core.zerogpu import (
    DEFAULT_FORWARD_RATE,
    DEFAULT_RATE,
    MAX_S,
    MIN_MEASURED_PASSES,
    START_S,
    GpuTime,
    LentStream,
    TokenPasses,
    ZeroGpuBackend,
)

pytest_plugins = ["fixtures_ui"]


FORWARD_CALLS = ["next_tokens", "prompt_logprobs", "attention", "logit_lens"]  # the lent calls but a generation


@dataclass
class LentCall:
    name: str  # the decorated function's name
    duration: int  # what it asked for
    args: tuple
    kwargs: dict


class RecordingGpu:
    """Stands in for `spaces.GPU` on ZeroGPU: records every lent call with the duration it asks for, and marks its
    thread as lent while the call's own code runs (for a generator: while it runs on to its next item)."""

    def __init__(self):
        self.calls: list[LentCall] = []
        self.decorated: list[str] = []
        self.durations: dict[str, Callable[..., int]] = {}  # what each decorated function was given as its duration
        self._thread = threading.local()

    def lent(self) -> bool:
        """Whether the current thread is running a lent call's code now."""
        return getattr(self._thread, "lent", False)

    @contextmanager
    def _lending(self):
        assert not self.lent(), "lent calls do not nest"
        self._thread.lent = True
        try:
            yield
        finally:
            self._thread.lent = False

    def __call__(self, fn, duration):
        self.decorated.append(fn.__name__)
        self.durations[fn.__name__] = duration
        if inspect.isgeneratorfunction(fn):
            def lent_generator(*args, **kwargs):
                self.calls.append(LentCall(fn.__name__, duration(*args, **kwargs), args, kwargs))
                steps = fn(*args, **kwargs)
                try:
                    while True:
                        with self._lending():
                            try:
                                item = next(steps)
                            except StopIteration:
                                return
                        yield item
                finally:
                    with self._lending():
                        steps.close()
            return lent_generator

        def lent_call(*args, **kwargs):
            self.calls.append(LentCall(fn.__name__, duration(*args, **kwargs), args, kwargs))
            with self._lending():
                return fn(*args, **kwargs)
        return lent_call


class ModelUses:
    """Every use of a loaded model, with its thread and whether that thread was running a lent call: each of its
    modules' forward (the lens and the attention maps call the blocks' parts and the head themselves), its passes
    (prefill, decode and the decode's tensor step, watched on the class, so that an engine built at load sees them
    too) and the allocation of its KV cache, which no module sees."""

    def __init__(self, gpu: RecordingGpu, patch: pytest.MonkeyPatch):
        self.gpu = gpu
        self.uses: list[tuple[str, str, bool]] = []  # (what, thread, lent)
        self.loads: list[dict] = []
        self._models: list[GPT] = []  # the ones loaded here: other tests' models run on while this one watches
        for name in ("prefill", "decode", "decode_step"):
            patch.setattr(GPT, name, self._watching(name, getattr(GPT, name),
                                                    lambda model, *_, **__: any(model is m for m in self._models)))
        patch.setattr(KVCache, "__init__", self._watching(
            "KVCache", KVCache.__init__, lambda cache, config, *_, **__: any(config is m.config for m in self._models)))

    def _use(self, what: str) -> None:
        self.uses.append((what, threading.current_thread().name, self.gpu.lent()))

    def _watching(self, what: str, method: Callable, ours: Callable[..., bool]) -> Callable:
        @functools.wraps(method)
        def watched(*args, **kwargs):
            if ours(*args, **kwargs):
                self._use(what)
            return method(*args, **kwargs)
        return watched

    def load(self, source, **kwargs):
        """The app's GPT-2 loader: records what it was asked for, loads on this CPU, and watches the model."""
        self.loads.append(dict(kwargs, thread=threading.current_thread().name, lent=self.gpu.lent(),
                               calls_before=len(self.gpu.calls)))
        lm = load_model(source, **{**kwargs, "device": "cpu"})  # the app asks for cuda; this machine has none
        self._models.append(lm.model)
        for name, module in lm.model.named_modules():
            module.register_forward_pre_hook(lambda *_, what=name or "GPT": self._use(what))
        return lm

    def count(self, what: str) -> int:
        return sum(1 for use, _, _ in self.uses if use == what)

    def outside(self) -> list[str]:
        """What was used outside a lent call, and in which thread: "decode in gpt2-engine"."""
        return [f"{what} in {thread}" for what, thread, lent in self.uses if not lent]


# ---- the real `spaces` package, where it is a no-op -----------------------------------------------------------------
def test_spaces_says_this_is_not_zerogpu_and_its_decorator_gives_the_function_back(lm):
    pytest.importorskip("spaces", reason="the `spaces` package is in requirements-dev.txt")
    assert reported() is False
    backend = ZeroGpuBackend(lm.backend, spaces_lend)
    assert backend._run == lm.backend.run
    for name in FORWARD_CALLS:  # given back as they were handed in: timed (they give back their time too)
        assert getattr(backend, f"_{name}").__wrapped__ == getattr(lm.backend, name), name


@pytest.fixture
def own_lm(tiny_checkpoint):
    """A model of this test's own: the session's `lm` may have been closed by a test that served it in an app."""
    lm = load_model(tiny_checkpoint, device="cpu", dtype="fp32")
    yield lm
    lm.close()


def test_with_the_real_spaces_package_the_zerogpu_path_writes_what_the_engine_writes(own_lm):
    pytest.importorskip("spaces", reason="the `spaces` package is in requirements-dev.txt")
    lm = own_lm
    lent = TextModel(ZeroGpuBackend(lm.backend, spaces_lend))
    for params in (SamplingParams(max_new_tokens=12, temperature=0, num_samples=2),
                   SamplingParams(max_new_tokens=12, temperature=0.9, top_k=40, seed=7, num_samples=3)):
        ours, engines = lent.generate("Hello there", params), lm.generate("Hello there", params)
        assert [s.token_ids for s in ours] == [s.token_ids for s in engines]
        for sample, engines_sample in zip(ours, engines, strict=True):
            assert sample.token_probs == pytest.approx(engines_sample.token_probs, abs=1e-6)
    assert lent.score_text("It was a bright cold day.") == lm.score_text("It was a bright cold day.")
    assert lent.next_token_distribution("The capital of France is") == lm.next_token_distribution(
        "The capital of France is")
    assert lent.attention("The dog barked.").weights.equal(lm.attention("The dog barked.").weights)
    assert lent.logit_lens("The Eiffel Tower is in", target=" Paris") == lm.logit_lens("The Eiffel Tower is in",
                                                                                       target=" Paris")


# ---- the ZeroGPU path, a recording decorator in place of spaces.GPU -------------------------------------------------
@pytest.fixture(scope="module")
def zero_gpu_app(tiny_checkpoint, tiny_bert):
    gpu = RecordingGpu()
    with pytest.MonkeyPatch.context() as patch:
        uses = ModelUses(gpu, patch)
        with launched_app(tiny_checkpoint, tiny_bert, load_gpt2=uses.load, lend=gpu, zero_gpu=True, device="auto",
                          host="127.0.0.1", allow_training=True, allow_model_switch=True) as running:
            yield running, gpu, uses


@pytest.fixture(scope="module")
def client(zero_gpu_app) -> Client:
    return Client(zero_gpu_app[0].url, verbose=False, analytics_enabled=False, download_files=False)


def test_gpt2_is_loaded_on_cuda_at_start_up_before_any_call(zero_gpu_app):
    app, gpu, uses = zero_gpu_app
    assert len(uses.loads) == 1, "one model, loaded once"
    (load,) = uses.loads
    assert load["device"] == "cuda" and load["compile"] is False  # ZeroGPU: cuda at import, never torch.compile
    assert load["calls_before"] == 0 and not load["lent"] and load["thread"] == "MainThread"
    assert sorted(gpu.decorated) == ["attention", "logit_lens", "next_tokens", "prompt_logprobs", "run"]  # before serving
    assert app.models.gpt2.current.describe().where == "cpu (ZeroGPU)"  # (loaded on this CPU instead)


def test_every_model_call_runs_inside_a_lent_call_on_its_thread(zero_gpu_app, client):
    app, gpu, uses = zero_gpu_app
    job = client.submit("Once upon a time", 40, 0.8, 40, 1.0, 1.0, 5, 3, api_name="/generate")
    final = job.result(timeout=120)
    updates = [output[0] for output in job.outputs()]
    assert len(set(updates)) >= 3, "the text streams in several updates"
    assert all(final[:3]) and final[3] == "" and "`5, 6, 7`" in final[4]
    client.predict("It was a bright cold day in April.", api_name="/score")
    client.predict("The capital of France is", 0.7, 5, 1.0, api_name="/explore")
    client.predict("The dog barked at the mailman.", 1, 1, api_name="/attention")
    heads_before = uses.count("lm_head")
    client.predict("The Eiffel Tower is in the city of", " Paris", api_name="/layers")

    # the model ran: a cache and a prefill for the generation, then every step; the other calls' passes; the lens
    # read every layer through the head (the embeddings' row and each block's)
    assert uses.count("KVCache") >= 1 and uses.count("prefill") >= 1 and uses.count("decode_step") >= 39
    assert uses.count("GPT") >= 2 and uses.count("h.0.attn.c_attn") >= 4
    n_layer = app.models.gpt2.current.backend.local.config.n_layer
    assert uses.count("lm_head") - heads_before == n_layer + 1
    assert uses.outside() == [], f"model work outside a lent call: {sorted(set(uses.outside()))}"
    assert {call.name for call in gpu.calls} == {"run", "prompt_logprobs", "next_tokens", "attention", "logit_lens"}
    assert app.models.gpt2.current.backend.local.engine._thread is None, "no engine thread was started"


def test_a_generation_asks_for_its_tokens_times_samples_over_the_rate_plus_the_start_up(zero_gpu_app, client):
    app, gpu, _ = zero_gpu_app
    gpu_time = app.models.gpt2.current.backend.time
    before = len(gpu.calls)
    rate = gpu_time.rate
    client.predict("Hello", 24, 0.8, 40, 1.0, 1.0, 1, 2, api_name="/generate")
    (call,) = [c for c in gpu.calls[before:] if c.name == "run"]
    (request,) = call.args
    assert isinstance(request, TokenRequest) and request.max_new_tokens == 24 and len(request.seeds) == 2
    assert call.duration == math.ceil(START_S + len(request.prompt_ids) / gpu_time.forward_rate + 24 * 2 / rate)


def test_every_other_call_asks_for_its_token_passes_over_the_forward_rate(zero_gpu_app, client):
    app, gpu, _ = zero_gpu_app
    backend = app.models.gpt2.current.backend
    before = len(gpu.calls)
    client.predict("It was a bright cold day in April.", api_name="/score")
    client.predict("The Eiffel Tower is in the city of", " Paris", api_name="/layers")
    calls = [c for c in gpu.calls[before:] if c.name != "run"]
    assert {c.name for c in calls} >= {"prompt_logprobs", "logit_lens"}
    for c in calls:  # (calls this short leave the forward rate where it was: MIN_MEASURED_PASSES)
        passes = getattr(backend.passes, c.name)(*c.args, **c.kwargs)
        assert 0 < passes < MIN_MEASURED_PASSES
        assert c.duration == math.ceil(START_S + passes / backend.time.forward_rate) > START_S, c.name


def test_training_scale_and_switching_are_off_and_say_why(zero_gpu_app, client):
    app, _, _ = zero_gpu_app
    config = AppConfig(zero_gpu=True, host="127.0.0.1", allow_training=True, allow_model_switch=True)
    assert not config.training_allowed and not config.model_switch_allowed  # whatever the flags say
    assert "daily quota" in app.models.unavailable(TRAINING) and app.models.unavailable(SCALE)
    page = str({k: v for k, v in client.config.items() if k != "i18n_translations"})  # the tables hold every text
    assert "Not available on ZeroGPU:" in page and "training keeps a GPU busy for minutes" in page
    assert "Start training" not in page and "Load model" not in page
    with pytest.raises(Exception, match="scale is not available on ZeroGPU"):
        client.predict("Hello", 1, api_name="/scale")


# ---- the pieces ---------------------------------------------------------------------------------------------------
def test_the_watcher_sees_model_work_outside_a_lent_call(tiny_checkpoint, monkeypatch):
    """The check above can fail: a model used as outside ZeroGPU, on the engine's own thread and on the thread an
    explanation runs on (its own, gpt2_core/threads.py), is seen outside a lent call, down to its KV cache and its
    decode step."""
    gpu = RecordingGpu()
    uses = ModelUses(gpu, monkeypatch)
    lm = uses.load(tiny_checkpoint, device="cpu")
    try:
        lm.generate("Hello", SamplingParams(max_new_tokens=3, temperature=0))
        lm.logit_lens("Hello there")
    finally:
        lm.close()
    outside = set(uses.outside())
    engine = {f"{what} in gpt2-engine" for what in ("KVCache", "prefill", "decode", "decode_step", "wte")}
    assert engine <= outside, engine - outside
    assert {f"{what} in gpt2-logit_lens" for what in ("h.1.mlp.c_fc", "ln_f", "lm_head")} <= outside
    assert all(not lent for _, _, lent in uses.uses)


def test_stop_closes_the_lent_call_and_the_model_stops(tiny_checkpoint, monkeypatch):
    gpu = RecordingGpu()
    uses = ModelUses(gpu, monkeypatch)
    lent = TextModel(ZeroGpuBackend(uses.load(tiny_checkpoint, device="cpu").backend, gpu))
    stream = lent.stream("Hello", max_new_tokens=200, temperature=0.8, seed=1)
    for _ in range(3):
        next(stream)
    stream.close()  # what Stop does; no thread is left that could go on (the engine runs in the lent call only)
    assert (uses.count("prefill"), uses.count("decode")) == (1, 2) and uses.outside() == []  # the prompt, two steps
    assert lent.backend.local.engine._thread is None


def test_a_call_whose_samples_all_stopped_is_closed():
    closed = []

    def steps():
        try:
            while True:
                yield [TokenEvent(0, 1, 0.5, None), TokenEvent(1, 1, 0.5, None)]
        finally:
            closed.append(True)

    stream = LentStream(steps(), samples=2, gpu_time=GpuTime())
    stream.events.get()
    stream.stop_sample(0)
    assert not closed
    stream.stop_sample(1)
    assert closed


def _request(max_new_tokens: int, samples: int, deadline_in: float = 300.0) -> TokenRequest:
    return TokenRequest([1], SamplingParams(), list(range(samples)), max_new_tokens, time.monotonic() + deadline_in)


def test_the_duration_is_bounded_by_the_deadline_and_the_most_asked():
    gpu_time = GpuTime()
    assert gpu_time.rate == DEFAULT_RATE
    assert gpu_time.generation(_request(100, 2)) == math.ceil(START_S + 1 / DEFAULT_FORWARD_RATE + 200 / DEFAULT_RATE)
    assert gpu_time.generation(_request(1000, 8)) == MAX_S
    assert gpu_time.generation(_request(1000, 8, deadline_in=5)) <= START_S + 5


def test_the_rate_is_the_slowest_of_the_generations_measured():
    gpu_time = GpuTime()
    gpu_time.record(8, 0.1)  # too short to say
    assert gpu_time.rate == DEFAULT_RATE
    gpu_time.record(101, 1.0)
    gpu_time.record(51, 1.0)
    gpu_time.record(201, 1.0)
    assert gpu_time.rate == 50.0
    assert gpu_time.generation(_request(100, 1)) == math.ceil(START_S + 1 / DEFAULT_FORWARD_RATE + 100 / 50)


SLOW = 2.0  # token passes/s: slow enough that every few tokens add a whole second to what a call asks for


def _call_args(name: str, ids: list[int]) -> tuple[tuple, dict]:
    """The arguments each lent call gets from the text layer (lm.py): the token ids, and its keywords."""
    return (ids,), {"prompt_logprobs": {"top": 5}, "logit_lens": {"top": 5, "target": 7}}.get(name, {})


@pytest.mark.parametrize("name", FORWARD_CALLS)
def test_each_call_asks_for_longer_the_more_tokens_its_ids_hold(own_lm, name):
    gpu = RecordingGpu()
    backend = ZeroGpuBackend(own_lm.backend, gpu, gpu_time=GpuTime(forward_rate=SLOW))
    for size in (4, 16, 64):  # through the lent call, as the page calls it (64: the lens' and attention's most)
        args, kwargs = _call_args(name, list(range(100, 100 + size)))
        getattr(backend, name)(*args, **kwargs)
    asked = [c.duration for c in gpu.calls]
    assert [c.name for c in gpu.calls] == [name] * 3
    assert START_S < asked[0] < asked[1] < asked[2] <= MAX_S, f"{name}: `ids` of 4, 16, 64 tokens asked for {asked}"
    # The duration as the host gets it, beyond the page's sizes: it grows with `ids` until it reaches MAX_S
    duration = gpu.durations[name]
    asked = [duration(*args, **kwargs) for args, kwargs in (_call_args(name, [1] * size) for size in (2, 20, 10_000))]
    assert START_S < asked[0] < asked[1] < asked[2] == MAX_S, f"{name}: `ids` of 2, 20, 10000 tokens asked for {asked}"


def test_the_logit_lens_asks_for_a_pass_and_a_head_per_layer_more_than_attention(own_lm):
    passes = TokenPasses(own_lm.config)
    ids = list(range(100, 164))
    config = own_lm.config
    head = config.vocab_size * config.n_embd / (12 * config.n_layer * config.n_embd**2 + config.vocab_size * config.n_embd)
    assert passes.attention(ids) == passes.next_tokens(ids) == 64
    assert passes.logit_lens(ids, top=5, target=None) == pytest.approx(64 * (1 + config.n_layer * head))
    assert passes.prompt_logprobs([0, *ids], top=5) == 64  # within the context: one window, every token once
    assert passes.prompt_logprobs([0] * 2049, top=5) > 2 * 2048 - 1024  # past it: windows overlapping by half


@pytest.mark.parametrize("grows", ["prompt_ids", "max_new_tokens", "seeds"])
def test_a_generation_asks_for_longer_the_longer_its_prompt_its_tokens_or_its_samples(grows):
    gpu_time = GpuTime(rate=SLOW, forward_rate=SLOW)
    asked = []
    for size in (1, 4, 16, 10_000):
        sizes = {"prompt_ids": 1, "max_new_tokens": 1, "seeds": 1, grows: size}
        request = TokenRequest([1] * sizes["prompt_ids"], SamplingParams(), list(range(sizes["seeds"])),
                               sizes["max_new_tokens"], time.monotonic() + 300)
        asked.append(gpu_time.generation(request))
    assert START_S < asked[0] < asked[1] < asked[2] < asked[3] == MAX_S, f"`{grows}` of 1, 4, 16, 10000: {asked}"


def test_the_forward_rate_is_the_slowest_of_the_calls_measured():
    gpu_time = GpuTime()
    gpu_time.record_forward(MIN_MEASURED_PASSES - 1, 0.001)  # too short to say: its launches, not its tokens
    assert gpu_time.forward_rate == DEFAULT_FORWARD_RATE
    gpu_time.record_forward(1000, 0.1)
    gpu_time.record_forward(600, 0.2)
    gpu_time.record_forward(2000, 0.1)
    assert gpu_time.forward_rate == pytest.approx(3000.0)
    assert gpu_time.forward(30_000) == math.ceil(START_S + 10)


def test_a_call_long_enough_measures_the_forward_rate_by_the_time_it_ran_in_its_lent_call(own_lm):
    backend = ZeroGpuBackend(own_lm.backend, RecordingGpu())
    backend.prompt_logprobs([0] * 10, top=5)  # 9 passes: too short to say
    assert backend.time.forward_rate == DEFAULT_FORWARD_RATE
    ids = [0] * 600
    started = time.perf_counter()
    backend.prompt_logprobs(ids, top=5)
    outside = time.perf_counter() - started
    # timed inside the call, so no longer than it took as seen from here
    assert backend.time.forward_rate >= backend.passes.prompt_logprobs(ids, top=5) / outside


def test_start_up_loads_on_cuda_and_bert_on_the_cpu(tiny_checkpoint, tiny_bert, monkeypatch):
    gpu = RecordingGpu()
    uses = ModelUses(gpu, monkeypatch)
    bert_devices = []
    config = AppConfig(model=str(tiny_checkpoint), bert_model=str(tiny_bert), zero_gpu=True, compile=True)
    models = start_models(config, load_gpt2=uses.load, lend=gpu,
                          load_bert=lambda source, device: bert_devices.append(device))
    try:
        assert [(load["device"], load["compile"]) for load in uses.loads] == [("cuda", False)]
        assert gpu.calls == [] and models.choices == [str(tiny_checkpoint)]
        models.bert.get()
        assert bert_devices == ["cpu"]
    finally:
        models.close()

"""`load_model` and `LanguageModel`: a loaded GPT-2 with its tokenizer, and the calls a user makes of it.

    lm = load_model("gpt2")                      # Hub id or local directory; device/dtype "auto"
    for update in lm.stream("Hello", max_new_tokens=20, seed=1):
        print(update[0].text)
    lm.next_token_probs("The capital of France is", k=5)

Text goes in and out here: prompts are capped, tokenized and trimmed to the context; generated ids become text
(never split inside a character, cut at stop strings). The token-level work is the engine's (generate/engine.py).
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from gpt2_core.checkpoint import first_line, load_state_dict, load_tokenizer, read_config, resolve_checkpoint_dir
from gpt2_core.config import GPTConfig
from gpt2_core.devices import resolve_device, resolve_dtype
from gpt2_core.generate.compiled import compile_decode, warm_up
from gpt2_core.generate.detokenize import IncrementalDecoder, visible_text
from gpt2_core.generate.engine import Engine, Request
from gpt2_core.generate.sampling import SamplingParams
from gpt2_core.generate.settings import MAX_PROMPT_CHARS, RANDOM_SEEDS, GenerationSettings, check_int, check_prompt
from gpt2_core.model import GPT
from gpt2_core.quantize import quantize_blocks, validate_quantize

log = logging.getLogger(__name__)

DEFAULT_DEADLINE_S = 300.0  # every request ends by then, whatever it asked for


class DeviceOutOfMemoryError(RuntimeError):
    """The device had no memory left for a request: that request ended (its rows freed), the model serves on."""


@dataclass(frozen=True)
class Sample:
    """One generated continuation (a snapshot while streaming; finish_reason is None until it ends)."""

    text: str  # the continuation only, without the prompt
    token_ids: list[int]  # generated ids (without a final <|endoftext|>)
    token_probs: list[float]  # the model's probability of each generated id
    seed: int  # reproduces this sample with the same prompt, settings and model
    finish_reason: str | None  # "length", "eos", "stop", "cancelled", "timeout"; None while running
    prompt_tokens: int  # prompt length in tokens, after trimming to the context
    prompt_truncated: bool  # the prompt was longer than the context allows and lost its beginning
    time_to_first_token: float | None  # seconds from the call to the first token
    tokens_per_second: float | None  # decode speed of this sample


@dataclass(frozen=True)
class PreparedPrompt:
    ids: list[int]
    truncated: bool


class LanguageModel:
    def __init__(self, model: GPT, tokenizer, *, name: str, device: torch.device, dtype: torch.dtype,
                 quantize: str | None = None, max_batch: int = 16):
        self.model = model
        self.tokenizer = tokenizer
        self.config: GPTConfig = model.config
        self.name = name
        self.device = device
        self.dtype = dtype
        self.quantize = quantize
        self.engine = Engine(model, device=device, dtype=dtype, max_batch=max_batch,
                             eos_token_id=self.config.eos_token_id)

    # ---- information -------------------------------------------------------------------------------------------
    def num_parameters(self) -> int:
        return self.config.num_parameters()

    def memory_bytes(self) -> int:
        """Bytes of parameters and buffers as stored (quantized layers count their packed bytes)."""
        tensors = list(self.model.parameters()) + list(self.model.buffers())
        total = sum(t.numel() * t.element_size() for t in tensors)
        for module in self.model.modules():  # 4-bit layers keep their scales beside the weight
            state = getattr(getattr(module, "weight", None), "quant_state", None)
            if state is not None and getattr(state, "absmax", None) is not None:
                total += state.absmax.numel() * state.absmax.element_size()
        return total

    @property
    def precision(self) -> str:
        return self.quantize or str(self.dtype).removeprefix("torch.")

    # ---- prompts -----------------------------------------------------------------------------------------------
    def prepare_prompt(self, prompt: str, *, room: int) -> PreparedPrompt:
        """Token ids of `prompt`, keeping its last tokens so that `room` new tokens still fit the context.

        An empty prompt becomes <|endoftext|>, the start of an unconditional sample (as in OpenAI's samples).
        Very long text is cut to its last MAX_PROMPT_CHARS characters before tokenizing, so a huge paste stays cheap.
        """
        prompt = check_prompt(prompt)
        # room is the caller's max_new_tokens (0 to score the prompt alone); callers such as the page's context
        # meter pass the slider as it is, and a local checkpoint's context may be short
        room = check_int("max_new_tokens", room, 0, self.config.block_size - 1)
        truncated = len(prompt) > MAX_PROMPT_CHARS
        if truncated:
            prompt = prompt[-MAX_PROMPT_CHARS:]
        ids = self.tokenizer.encode(prompt) if prompt else []
        if not ids:
            ids = [self.config.eos_token_id]
        keep = self.config.block_size - room
        if len(ids) > keep:
            ids, truncated = ids[-keep:], True
        return PreparedPrompt(ids, truncated)

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, clean_up_tokenization_spaces=False)

    # ---- generation --------------------------------------------------------------------------------------------
    def stream(self, prompt: str = "", *, deadline_s: float = DEFAULT_DEADLINE_S, **settings) -> Iterator[list[Sample]]:
        """Yield the samples (one Sample each) after every generated token; the last update has every finish_reason.

        Keyword settings are GenerationSettings' fields (max_new_tokens, temperature, top_k, top_p,
        repetition_penalty, seed, num_samples, stop). Closing the iterator early cancels the generation.
        """
        s = GenerationSettings(**settings)
        check_int("max_new_tokens", s.max_new_tokens, 1, self.config.block_size - 1)  # a checkpoint's own context
        prepared = self.prepare_prompt(prompt, room=s.max_new_tokens)
        base_seed = s.seed if s.seed is not None else secrets.randbelow(RANDOM_SEEDS)
        seeds = [(base_seed + i) % (2**63) for i in range(s.num_samples)]
        params = SamplingParams(s.temperature, s.top_k, s.top_p, s.repetition_penalty)
        start = time.perf_counter()
        request = self.engine.submit(Request(prepared.ids, params, seeds, s.max_new_tokens,
                                             deadline=time.monotonic() + deadline_s))
        decoders = [IncrementalDecoder(self.decode) for _ in seeds]
        probs: list[list[float]] = [[] for _ in seeds]
        samples = [Sample("", [], [], seed, None, len(prepared.ids), prepared.truncated, None, None) for seed in seeds]
        first_at: list[float | None] = [None] * len(seeds)
        try:
            while any(x.finish_reason is None for x in samples):
                events = request.events.get()
                if isinstance(events, torch.OutOfMemoryError):
                    raise DeviceOutOfMemoryError(
                        f"the {self.device.type} ran out of memory for this request ({s.num_samples} sample(s), "
                        f"{len(prepared.ids)} prompt tokens + {s.max_new_tokens} new); try fewer samples or tokens, "
                        "or try again in a moment") from events
                if isinstance(events, Exception):  # one object for every request it ended: a fresh one per caller
                    raise RuntimeError(str(events)) from events
                now = time.perf_counter()
                for ev in events:
                    sample = samples[ev.sample]
                    if sample.finish_reason is not None:
                        continue  # already ended here (a stop string); the engine's late word is moot
                    decoder = decoders[ev.sample]
                    if ev.token is not None and ev.token != self.config.eos_token_id:
                        decoder.add(ev.token)
                        probs[ev.sample].append(ev.prob)
                    if ev.token is not None and first_at[ev.sample] is None:
                        first_at[ev.sample] = now
                    samples[ev.sample] = self._snapshot(sample, decoder, probs[ev.sample], ev.finish_reason,
                                                       s.stop, start, first_at[ev.sample], now)
                    if samples[ev.sample].finish_reason == "stop":
                        request.stop_sample(ev.sample)
                yield list(samples)
        finally:
            if any(x.finish_reason is None for x in samples):
                request.cancel()  # the caller went away (Stop, closed tab) or an error: free the rows

    def _snapshot(self, sample: Sample, decoder: IncrementalDecoder, probs: list[float], finish_reason: str | None,
                  stop: tuple[str, ...], start: float, first_at: float | None, now: float) -> Sample:
        ids = decoder.ids
        visible = visible_text(decoder.text, stop, final=finish_reason is not None)
        n = len(ids)
        if visible.stopped:
            finish_reason = "stop"  # keep the ids up to the one that completed the stop string
            n = next(k for k in range(1, n + 1) if any(s in self.decode(ids[:k]) for s in stop))
        rate = None
        if first_at is not None and n > 1 and now > first_at:
            rate = (n - 1) / (now - first_at)
        return replace(sample, text=visible.text, token_ids=ids[:n], token_probs=probs[:n], finish_reason=finish_reason,
                       time_to_first_token=None if first_at is None else first_at - start, tokens_per_second=rate)

    def generate(self, prompt: str = "", **settings) -> list[Sample]:
        """Generate to the end and return one Sample per requested sample (same settings as `stream`)."""
        last: list[Sample] = []
        for update in self.stream(prompt, **settings):
            last = update
        return last

    # ---- probabilities -----------------------------------------------------------------------------------------
    @torch.inference_mode()
    def next_token_probs(self, prompt: str, k: int = 10) -> list[tuple[str, int, float]]:
        """The k most likely next tokens after `prompt`: (token text, token id, probability), most likely first."""
        k = check_int("k", k, 1, self.config.vocab_size)
        ids = self.prepare_prompt(prompt, room=0).ids
        logits = self.model(torch.tensor([ids], device=self.device))[0, -1]  # (vocab,)
        top = torch.topk(logits.softmax(-1), k)
        return [(self.decode([int(i)]), int(i), float(p)) for p, i in zip(top.values, top.indices)]

    @torch.inference_mode()
    def sequence_logprob(self, text: str) -> float:
        """log P(text) under the model, every token conditioned on those before it (the first on <|endoftext|>)."""
        if not text:
            return 0.0
        ids = [self.config.eos_token_id] + self.prepare_prompt(text, room=1).ids
        ids = ids[-self.config.block_size :]
        logits = self.model(torch.tensor([ids], device=self.device))[0, :-1]  # (T-1, vocab)
        logprobs = logits.log_softmax(-1).gather(-1, torch.tensor(ids[1:], device=self.device)[:, None])
        return float(logprobs.sum())

    def compile(self, *, background: bool = False) -> threading.Thread | None:
        """Compile the decode step (see compiled.py). In the background, generation runs eagerly meanwhile.

        A failure (no C++ compiler, no Triton) is logged and decoding stays eager.
        """
        def work() -> None:
            try:
                decode = compile_decode(self.model, self.device)
                warm_up(self.model, decode, device=self.device, dtype=self.dtype)
            except Exception as e:  # torch.compile fails in many platform-specific ways; eager always works
                log.warning("torch.compile failed, decoding stays eager: %s", first_line(e))
                return
            if not self.engine.closed:  # a model closed meanwhile (a switch) must not keep the graphs alive
                self.engine.compiled_decode = decode
            log.info("compiled the decode step of %s", self.name)

        if not background:
            work()
            return None
        thread = threading.Thread(target=work, name="gpt2-compile", daemon=True)
        thread.start()
        return thread

    def close(self) -> None:
        self.engine.close()
        self.engine.compiled_decode = None  # its frozen graphs hold the weights


def load_model(source: str | Path = "gpt2", *, device: str | torch.device = "auto", dtype: str | torch.dtype = "auto",
               quantize: str | None = None, max_batch: int = 16, compile: bool = False) -> LanguageModel:
    """Load a GPT-2 checkpoint (Hub id or local Hugging Face directory; safetensors only) with its tokenizer.

    compile=True compiles the decode step before returning (LanguageModel.compile; quantized models stay eager).
    """
    validate_quantize(quantize)
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    checkpoint_dir = resolve_checkpoint_dir(source)
    config = read_config(checkpoint_dir)
    state = load_state_dict(checkpoint_dir, config, dtype=dt)
    with torch.device("meta"):
        model = GPT(config)
    model.load_state_dict(state, assign=True)
    model.lm_head.weight = model.wte.weight  # assign=True replaced the tied parameter; tie it again
    model.eval().requires_grad_(False)
    if quantize:
        quantize_blocks(model, quantize, device=dev, dtype=dt)
    model.to(dev)
    tokenizer = load_tokenizer(checkpoint_dir)
    lm = LanguageModel(model, tokenizer, name=str(source), device=dev, dtype=dt, quantize=quantize, max_batch=max_batch)
    log.info("loaded %s: %.0fM parameters, %s, %s, %.0f MB", source, lm.num_parameters() / 1e6, dev, lm.precision,
             lm.memory_bytes() / 1e6)
    if compile and not quantize:
        lm.compile()
    return lm


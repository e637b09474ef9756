"""`load_model` and `LanguageModel`: a loaded GPT-2 with its tokenizer, and the calls a user makes of it.

    lm = load_model("gpt2")                      # Hub id or local directory; device/dtype "auto"
    for update in lm.stream("Hello", max_new_tokens=20, seed=1):
        print(update[0].text)
    lm.next_token_probs("The capital of France is", k=5)

Text goes in and out here: prompts are capped, tokenized and trimmed to the context; generated ids become text
(never split inside a character, cut at stop strings). The token-level work is the engine's (generate/engine.py).
"""

from __future__ import annotations

import itertools
import logging
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from functools import cached_property
from itertools import accumulate
from pathlib import Path

import torch

from gpt2_core.backend import ModelDescription
from gpt2_core.checkpoint import first_line, load_state_dict, load_tokenizer, read_config, resolve_checkpoint_dir
from gpt2_core.config import GPTConfig
from gpt2_core.devices import resolve_device, resolve_dtype
from gpt2_core.explain.attention import MAX_ATTENTION_TOKENS, Attention, attention_weights
from gpt2_core.explain.distribution import Candidate, LogitsCache, candidates
from gpt2_core.explain.scoring import TokenScore, score_ids, token_scores
from gpt2_core.generate.compiled import compile_decode, warm_up
from gpt2_core.generate.detokenize import (
    REPLACEMENT_CHAR,
    PieceDecoder,
    fit_pieces,
    split_pieces,
    token_byte_table,
    visible_text,
)
from gpt2_core.generate.engine import Engine, Request
from gpt2_core.generate.settings import (
    CONTEXT_LENGTH,
    DEFAULTS,
    MAX_PROMPT_CHARS,
    RANDOM_SEEDS,
    SamplingParams,
    check_int,
    check_prompt,
    check_text,
)
from gpt2_core.model import GPT
from gpt2_core.quantize import quantize_blocks, validate_quantize

log = logging.getLogger(__name__)

DEFAULT_DEADLINE_S = 300.0  # every request ends by then, whatever it asked for
MAX_ALTERNATIVES = 20  # likeliest tokens reported beside each generated or scored token
MAX_CANDIDATES = 100  # next tokens listed by next_token_distribution
MAX_SCORED_TOKENS = 8192  # score_text's limit: 16 windows of GPT-2's context, seconds on a CPU


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
    token_texts: list[str] = field(default_factory=list)  # each generated token's piece of `text` (they join to it)
    token_ranks: list[int] = field(default_factory=list)  # each generated token's rank (1 = the model's likeliest)
    alternatives: list[list[Candidate]] | None = None  # with alternatives=N: the N likeliest tokens at each step


@dataclass(frozen=True)
class PreparedPrompt:
    ids: list[int]
    truncated: bool


_SERIALS = itertools.count()


class TextModel:
    """What every GPT-2 backend shares: text in and out (prompts, tokens, streamed samples with their probabilities).

    A subclass runs the model: `_submit` starts a generation whose `events` queue yields lists of TokenEvent, as the
    engine's Request does, so both backends stream, stop and report probabilities through the same code. The local
    one is LanguageModel below; the remote one (an OpenAI-compatible server such as vLLM) is gpt2_core/remote.
    """

    tokenizer: object
    name: str
    context_length: int  # tokens the model sees at once, prompt and new tokens together
    eos_token_id: int  # <|endoftext|>: ends a text, and starts one (an empty prompt)
    slides_window: bool = False  # writes past its context, the oldest tokens leaving its view (the local engine)

    def describe(self) -> ModelDescription:
        raise NotImplementedError

    def _submit(self, request: Request, stop: tuple[str, ...]):
        """Start `request`; return an object with `events` (a queue), `cancel()` and `stop_sample(i)`."""
        raise NotImplementedError

    def _failure(self, error: Exception, request) -> Exception:
        """The exception a caller of `stream` gets for an error the backend reported for `request`."""
        return RuntimeError(str(error))  # one object for every request it ended: a fresh one per caller

    def close(self) -> None:
        pass

    # ---- prompts -----------------------------------------------------------------------------------------------
    def prepare_prompt(self, prompt: str, *, room: int) -> PreparedPrompt:
        """Token ids of `prompt`, keeping its last tokens so that `room` new tokens still fit the context.

        An empty prompt becomes <|endoftext|>, the start of an unconditional sample (as in OpenAI's samples).
        Very long text is cut to its last MAX_PROMPT_CHARS characters before tokenizing, so a huge paste stays cheap.
        """
        prompt = check_prompt(prompt)
        # room is the caller's max_new_tokens (0 to score the prompt alone); callers such as the page's context
        # meter pass the slider as it is, and a local checkpoint's context may be short
        if self.slides_window:  # new tokens push the oldest out of view as they come: the prompt needs no room
            room = min(check_int("max_new_tokens", room, 0, CONTEXT_LENGTH - 1), 1)
        else:
            room = check_int("max_new_tokens", room, 0, self.context_length - 1)
        truncated = len(prompt) > MAX_PROMPT_CHARS
        if truncated:
            prompt = prompt[-MAX_PROMPT_CHARS:]
        ids = self.tokenizer.encode(prompt) if prompt else []
        if not ids:
            ids = [self.eos_token_id]
        keep = self.context_length - room
        if len(ids) > keep:
            ids, truncated = ids[-keep:], True
        return PreparedPrompt(ids, truncated)

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, clean_up_tokenization_spaces=False)

    def token_pieces(self, ids: list[int]) -> list[str]:
        """Each token's piece of the decoded text (they join to it; a split character goes to its last token)."""
        return split_pieces(self._token_bytes, ids)

    # ---- generation --------------------------------------------------------------------------------------------
    def stream(self, prompt: str = "", *, deadline_s: float = DEFAULT_DEADLINE_S, alternatives: int = 0,
               **settings) -> Iterator[list[Sample]]:
        """Yield the samples (one Sample each) after every generated token; the last update has every finish_reason.

        Keyword settings are SamplingParams' fields (max_new_tokens, temperature, top_k, top_p,
        repetition_penalty, seed, num_samples, stop). Every token's rank is reported (Sample.token_ranks); with
        alternatives=N (at most 20) so are the N likeliest tokens at each step, with the probability that these
        settings draw each (Sample.alternatives). Closing the iterator early cancels the generation.
        """
        alternatives = check_int("alternatives", alternatives, 0, MAX_ALTERNATIVES)
        s = SamplingParams(**settings)
        if not self.slides_window:  # a server's prompt and new tokens must fit its context together
            check_int("max_new_tokens", s.max_new_tokens, 1, self.context_length - 1)
        prepared = self.prepare_prompt(prompt, room=s.max_new_tokens)
        base_seed = s.seed if s.seed is not None else secrets.randbelow(RANDOM_SEEDS)
        seeds = [(base_seed + i) % (2**63) for i in range(s.num_samples)]
        params = s
        start = time.perf_counter()
        request = self._submit(Request(prepared.ids, params, seeds, s.max_new_tokens,
                                       deadline=time.monotonic() + deadline_s, alternatives=alternatives), s.stop)
        steps = [_Steps(PieceDecoder(self._token_bytes)) for _ in seeds]
        samples = [Sample("", [], [], seed, None, len(prepared.ids), prepared.truncated, None, None,
                          alternatives=[] if alternatives else None) for seed in seeds]
        first_at: list[float | None] = [None] * len(seeds)
        try:
            while any(x.finish_reason is None for x in samples):
                events = request.events.get()
                if isinstance(events, Exception):
                    raise self._failure(events, request) from events
                now = time.perf_counter()
                for ev in events:
                    sample = samples[ev.sample]
                    if sample.finish_reason is not None:
                        continue  # already ended here (a stop string); the engine's late word is moot
                    if ev.token is not None and ev.token != self.eos_token_id:
                        steps[ev.sample].add(ev, self.token_text if alternatives else None)
                    if ev.token is not None and first_at[ev.sample] is None:
                        first_at[ev.sample] = now
                    samples[ev.sample] = self._snapshot(sample, steps[ev.sample], ev.finish_reason, s.stop, start,
                                                       first_at[ev.sample], now)
                    if samples[ev.sample].finish_reason == "stop":
                        request.stop_sample(ev.sample)
                yield list(samples)
        finally:
            if any(x.finish_reason is None for x in samples):
                request.cancel()  # the caller went away (Stop, closed tab) or an error: free the rows

    @staticmethod
    def _snapshot(sample: Sample, steps: _Steps, finish_reason: str | None, stop: tuple[str, ...], start: float,
                  first_at: float | None, now: float) -> Sample:
        ids = steps.ids
        visible = visible_text(steps.text(final=finish_reason is not None), stop, final=finish_reason is not None)
        n = len(ids)
        if visible.stopped:
            finish_reason = "stop"  # keep the ids up to the one that completed the stop string
            n = next(k for k, text in enumerate(accumulate(steps.pieces), 1) if any(s in text for s in stop))
        rate = None
        if first_at is not None and n > 1 and now > first_at:
            rate = (n - 1) / (now - first_at)
        return replace(sample, text=visible.text, token_ids=ids[:n], token_probs=steps.probs[:n],
                       token_texts=fit_pieces(steps.pieces[:n], visible.text), token_ranks=steps.ranks[:n],
                       alternatives=None if sample.alternatives is None else steps.alternatives[:n],
                       finish_reason=finish_reason, time_to_first_token=None if first_at is None else first_at - start,
                       tokens_per_second=rate)

    def generate(self, prompt: str = "", **settings) -> list[Sample]:
        """Generate to the end and return one Sample per requested sample (same settings as `stream`)."""
        last: list[Sample] = []
        for update in self.stream(prompt, **settings):
            last = update
        return last

    # ---- tokens ----------------------------------------------------------------------------------------------
    @cached_property
    def _token_bytes(self) -> list[bytes]:
        return token_byte_table(self.tokenizer)

    def token_text(self, token_id: int) -> str:
        """A token's text; a token that is only part of a character (no text of its own) is shown as its bytes."""
        text = self.decode([token_id])
        if REPLACEMENT_CHAR in text and REPLACEMENT_CHAR not in self._token_bytes[token_id].decode("utf-8", "ignore"):
            return "[bytes " + self._token_bytes[token_id].hex(" ") + "]"
        return text


class LanguageModel(TextModel):
    """A GPT-2 running here, in this process: gpt2_core's own model and decoding engine (its window slides past the
    context: generate/engine.py)."""

    slides_window = True

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
        self._next_logits = LogitsCache(self._compute_next_logits)  # sliders redraw without running the model
        self.serial = next(_SERIALS)  # tells loaded models apart for caches (an id() can be reused after a close)
        self.context_length = self.config.block_size
        self.eos_token_id = self.config.eos_token_id

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

    def describe(self) -> ModelDescription:
        return ModelDescription(self.name, where=str(self.device), precision=self.precision,
                                parameters=self.num_parameters(), memory_bytes=self.memory_bytes(),
                                context=self.config.block_size, max_alternatives=MAX_ALTERNATIVES)

    def _submit(self, request: Request, stop: tuple[str, ...]) -> Request:
        return self.engine.submit(request)

    def _failure(self, error: Exception, request: Request) -> Exception:
        if isinstance(error, torch.OutOfMemoryError):
            return DeviceOutOfMemoryError(
                f"the {self.device.type} ran out of memory for this request ({len(request.seeds)} sample(s), "
                f"{len(request.prompt_ids)} prompt tokens + {request.max_new_tokens} new); try fewer samples or "
                "tokens, or try again in a moment")
        return super()._failure(error, request)

    # ---- probabilities (explain/) -------------------------------------------------------------------------------
    @torch.inference_mode()
    def _compute_next_logits(self, ids: list[int]) -> torch.Tensor:
        return self.model(torch.tensor([ids], device=self.device))[0, -1].float().cpu()  # (vocab,)

    def next_token_distribution(self, prompt: str, *, temperature: float = DEFAULTS.temperature,
                                top_k: int = DEFAULTS.top_k, top_p: float = DEFAULTS.top_p,
                                repetition_penalty: float = DEFAULTS.repetition_penalty,
                                k: int = 20) -> list[Candidate]:
        """The k likeliest next tokens after `prompt`, likeliest first, each with the model's probability (`prob`) and
        the probability that sampling with these settings draws it (`sampling_prob`, 0 where the settings cut it).

        The settings work as in `generate` (the same function shapes the distribution). The prompt's logits are cached:
        asking again with other settings does not run the model.
        """
        s = SamplingParams(temperature=temperature, top_k=top_k, top_p=top_p, repetition_penalty=repetition_penalty)
        k = check_int("k", k, 1, min(MAX_CANDIDATES, self.config.vocab_size))
        ids = self.prepare_prompt(prompt, room=1).ids
        logits = self._next_logits.get(ids)
        history = torch.tensor(ids) if s.repetition_penalty != 1.0 else None  # as the engine's first draw
        params = s
        return candidates(logits, params, k=k, token_text=self.token_text, previous_ids=history)

    def next_token_probs(self, prompt: str, k: int = 10) -> list[tuple[str, int, float]]:
        """The k most likely next tokens after `prompt`: (token text, token id, probability), most likely first."""
        k = check_int("k", k, 1, self.config.vocab_size)
        logits = self._next_logits.get(self.prepare_prompt(prompt, room=0).ids)
        top = torch.topk(logits.softmax(-1), k)
        return [(self.decode([int(i)]), int(i), float(p)) for p, i in zip(top.values, top.indices)]

    def score_text(self, text: str, *, top: int = 5) -> list[TokenScore]:
        """Every token of `text` with its probability given the tokens before it, its rank and the `top` likeliest
        tokens at its place (explain/scoring.py; a text longer than the context is scored in windows).

        The tokens' texts join to `text`; the first token is conditioned on <|endoftext|>.
        """
        text = check_text("text", text)
        top = check_int("top", top, 0, MAX_ALTERNATIVES)
        ids = self.tokenizer.encode(text) if text else []
        if len(ids) > MAX_SCORED_TOKENS:
            raise ValueError(f"`text` has to be at most {MAX_SCORED_TOKENS} tokens long, but has {len(ids)}")
        scored = score_ids(self.model, ids, bos=self.config.eos_token_id, top=top)
        return token_scores(text, ids, scored, table=self._token_bytes, token_text=self.token_text)

    def attention(self, text: str) -> Attention:
        """`(tokens, weights)`: the text's tokens and the softmax attention of every layer and head, weights of shape
        (n_layer, n_head, T, T) where weights[l, h, i, j] is how much token i looks at token j (0 for j > i: GPT-2
        reads only to the left). At most MAX_ATTENTION_TOKENS tokens (explain/attention.py)."""
        text = check_text("text", text)
        ids = self.tokenizer.encode(text) if text else []
        limit = min(MAX_ATTENTION_TOKENS, self.config.block_size)
        if not 1 <= len(ids) <= limit:
            raise ValueError(f"`text` has to be 1 to {limit} tokens long to show its attention, but has {len(ids)}")
        return Attention(self.token_pieces(ids), attention_weights(self.model, ids))

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

    def use_cuda_graphs(self, *, capture: bool | None = None) -> None:
        """Decode through CUDA graphs of padded batch sizes (generate/cuda_graphs.py), captured in the engine's thread
        on first use; capture=False runs the same padded steps without graphs (a CPU, tests)."""
        from gpt2_core.generate.cuda_graphs import GraphedDecode

        self.engine.graphed_decode = GraphedDecode(self.model, self.device, capture=capture)

    def close(self) -> None:
        self.engine.close()
        self.engine.compiled_decode = None  # its frozen graphs hold the weights
        self.engine.graphed_decode = None  # and CUDA graphs their cache
        self._next_logits = None  # it refers back to this model: without the cycle, the weights go when unused


@dataclass
class _Steps:
    """What one sample collected so far, token by token (lm.stream)."""

    pieces_decoder: PieceDecoder
    ids: list[int] = field(default_factory=list)
    pieces: list[str] = field(default_factory=list)  # each token's text: they join to the sample's text
    joined: str = ""  # "".join(pieces)
    tail: str | None = None  # at the end: what an unfinished last character decodes to
    probs: list[float] = field(default_factory=list)
    ranks: list[int] = field(default_factory=list)
    alternatives: list[list[Candidate]] = field(default_factory=list)

    def add(self, event, token_text) -> None:
        self.ids.append(event.token)
        self.pieces.append(self.pieces_decoder.add(event.token))
        self.joined += self.pieces[-1]
        self.probs.append(event.prob)
        self.ranks.append(event.rank)
        if token_text is not None:
            self.alternatives.append([Candidate(token_text(i), i, p, q) for i, p, q in event.alternatives])

    def text(self, *, final: bool) -> str:
        """The text so far; at the end, an unfinished character shows as U+FFFD (as the tokenizer decodes it)."""
        if final and self.tail is None:
            self.tail = self.pieces_decoder.flush()
        return self.joined + (self.tail or "" if final else "")


def compilable(quantize: str | None, device: torch.device) -> bool:
    """Whether the decode step compiles: plain models, and CPU int8 (bitsandbytes' layers do not trace)."""
    return quantize is None or (quantize == "int8" and device.type == "cpu")


def load_model(source: str | Path = "gpt2", *, device: str | torch.device = "auto", dtype: str | torch.dtype = "auto",
               quantize: str | None = None, max_batch: int = 16, compile: bool = False,
               cuda_graphs: bool = False) -> LanguageModel:
    """Load a GPT-2 checkpoint (Hub id or local Hugging Face directory; safetensors only) with its tokenizer.

    compile=True compiles the decode step before returning (LanguageModel.compile; bitsandbytes models stay eager, CPU
    int8 compiles too). cuda_graphs=True replays the decode step from CUDA graphs on a GPU (not yet measured on one:
    off by default).
    """
    validate_quantize(quantize)
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    if quantize == "int8" and dev.type == "cpu":
        dt = torch.float32  # CPU int8 keeps the rest in fp32 (bf16 activations measured no faster: overhead dominates)
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
    if compile and compilable(quantize, dev):
        lm.compile()
    if cuda_graphs and dev.type == "cuda" and not quantize:
        lm.use_cuda_graphs()
    return lm


"""The text layer: `TextModel`, a GPT-2 with its tokenizer, and the calls a user makes of it, over any TokenBackend.

    lm = load_model("gpt2")                      # Hub id or local directory; device/dtype "auto"
    for update in lm.stream("Hello", max_new_tokens=20, seed=1):
        print(update[0].text)
    lm.next_token_probs("The capital of France is", k=5)

Text goes in and out here, for every backend alike (gpt2_core/backend.py): prompts are capped, tokenized and trimmed to
the context; generated ids become text (never split inside a character, cut at stop strings); texts are scored and
the next token's candidates listed from the backend's token-level answers. `LanguageModel` is a TextModel over the
model in this process (gpt2_core/local.py); `RemoteModel` (gpt2_core/remote) one over a vLLM server.
"""

from __future__ import annotations

import itertools
import logging
import math
import operator
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from itertools import accumulate
from pathlib import Path
from typing import Any

import torch

from gpt2_core.backend import (
    ATTENTION,
    LENS,
    FeatureUnavailableError,
    ModelDescription,
    NextTokens,
    TokenBackend,
    TokenEvent,
    Tokenizer,
    TokenRequest,
)
from gpt2_core.checkpoint import load_tokenizer, load_weights, read_config, resolve_checkpoint_dir
from gpt2_core.config import GPTConfig
from gpt2_core.devices import resolve_device, resolve_dtype
from gpt2_core.explain.attention import MAX_ATTENTION_TOKENS, Attention
from gpt2_core.explain.distribution import Candidate, NextTokensCache, reported_sampling_probs
from gpt2_core.explain.lens import MAX_LENS_TOKENS, LogitLens, logit_lens_view
from gpt2_core.explain.scoring import TokenScore, token_scores
from gpt2_core.generate.detokenize import (
    REPLACEMENT_CHAR,
    PieceDecoder,
    fit_pieces,
    split_pieces,
    token_byte_table,
    visible_text,
)
from gpt2_core.generate.engine import Engine
from gpt2_core.generate.sampling import logits_to_probs
from gpt2_core.generate.settings import (
    CONTEXT_LENGTH,
    MAX_PROMPT_CHARS,
    RANDOM_SEEDS,
    SamplingParams,
    check_float,
    check_int,
    check_prompt,
    check_text,
    shown,
)
from gpt2_core.local import MAX_ALTERNATIVES, DeviceOutOfMemoryError, LocalBackend  # noqa: F401 (re-exported)
from gpt2_core.memory import kv_cache_row_bytes, readable_bytes, return_freed_memory
from gpt2_core.model import GPT
from gpt2_core.precision import cache_rows, choose_precision, compile_growth_bytes
from gpt2_core.quantize import quantize_block, quantize_head, validate_quantize
from gpt2_core.threads import ends_its_thread

log = logging.getLogger(__name__)

DEFAULT_DEADLINE_S = 300.0  # every request ends by then, whatever it asked for
MAX_DEADLINE_S = 24 * 3600.0  # the most a caller may give
MAX_BATCH = 1024  # the most samples an engine may be asked to decode at once (load_model's max_batch)


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
    # each generated token's rank (1 = the model's likeliest; None: beyond a server's reported tokens, until the
    # last update asks for it, and after that only if the scoring request failed)
    token_ranks: list[int | None] = field(default_factory=list)
    alternatives: list[list[Candidate]] | None = None  # with alternatives=N: the N likeliest tokens at each step


@dataclass(frozen=True)
class PreparedPrompt:
    ids: list[int]
    truncated: bool


_SERIALS = itertools.count()


def sampling_params(params: SamplingParams | None, settings: dict[str, Any]) -> SamplingParams:
    """The settings of a call: `params` whole, or keywords (SamplingParams' fields), checked once here."""
    if params is None:
        return SamplingParams(**settings)
    if not isinstance(params, SamplingParams):
        raise ValueError(f"`params` has to be a SamplingParams, but is {type(params).__name__}")
    return params.replace(**settings) if settings else params


class TextModel:
    """A GPT-2 with its tokenizer: text in and out, over a TokenBackend (module docstring)."""

    def __init__(self, backend: TokenBackend):
        self.backend = backend
        self.serial = next(_SERIALS)  # tells loaded models apart for caches (an id() can be reused after a close)
        # sliders redraw without asking the model again (None once closed)
        self._next: NextTokensCache | None = NextTokensCache(backend.next_tokens)

    # ---- what the backend says ---------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.backend.name

    @name.setter
    def name(self, value: str) -> None:  # what the page calls it (a Hub id for a local folder of one)
        self.backend.name = value

    @property
    def tokenizer(self) -> Tokenizer:
        return self.backend.tokenizer

    @property
    def context_length(self) -> int:
        """Tokens the model sees at once, prompt and new tokens together."""
        return self.backend.context_length

    @property
    def eos_token_id(self) -> int:
        """<|endoftext|>: ends a text, and starts one (an empty prompt)."""
        return self.backend.eos_token_id

    def describe(self) -> ModelDescription:
        return self.backend.describe()

    def close(self) -> None:
        self.backend.close()
        self._next = None  # it refers back to the backend: without the cycle, the weights go when unused

    @property
    def closed(self) -> bool:
        return self._next is None

    def _check_open(self) -> None:
        """One error for every use after close() (an explanation asserted, scoring went on with the freed model, and
        generate spoke of an engine)."""
        if self._next is None:
            raise RuntimeError(f"the model {self.name} is closed: load it again (load_model) to use it")

    # ---- prompts -----------------------------------------------------------------------------------------------
    def prepare_prompt(self, prompt: str, *, room: int) -> PreparedPrompt:
        """Token ids of `prompt`, keeping its last tokens so that `room` new tokens still fit the context (one, where
        the window slides on as the tokens come: a local model).

        An empty prompt becomes <|endoftext|>, the start of an unconditional sample (as in OpenAI's samples).
        Very long text is cut to its last MAX_PROMPT_CHARS characters before tokenizing, so a huge paste stays cheap.
        """
        prompt = check_prompt(prompt)
        # room is the caller's max_new_tokens (0 to score the prompt alone); callers such as the page's context
        # meter pass the slider as it is, and a local checkpoint's context may be short
        if self.backend.slides_window:  # new tokens push the oldest out of view as they come: the prompt needs no room
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
        text = self.tokenizer.decode(ids, clean_up_tokenization_spaces=False)
        assert isinstance(text, str)  # one sequence gives one text (a list comes from a batch)
        return text

    def token_pieces(self, ids: list[int]) -> list[str]:
        """Each token's piece of the decoded text (they join to it; a split character goes to its last token)."""
        return split_pieces(self._token_bytes, ids)

    # ---- generation --------------------------------------------------------------------------------------------
    def stream(self, prompt: str = "", params: SamplingParams | None = None, *,
               deadline_s: float = DEFAULT_DEADLINE_S, alternatives: int = 0, **settings: Any) -> Iterator[list[Sample]]:
        """Yield the samples (one Sample each) after every generated token; the last update has every finish_reason.

        The settings are `params` (a SamplingParams) or keywords, its fields (max_new_tokens, temperature, top_k,
        top_p, repetition_penalty, seed, num_samples, stop). Every token's rank is reported (Sample.token_ranks; a
        server's beyond its top N are filled in once the samples end); with alternatives=N (at most 20) so are the N
        likeliest tokens at each step, with the probability that these settings draw each (Sample.alternatives).
        Closing the iterator early cancels the generation.
        """
        self._check_open()
        alternatives = check_int("alternatives", alternatives, 0, MAX_ALTERNATIVES)
        deadline_s = check_float("deadline_s", deadline_s, 0, MAX_DEADLINE_S, low_open=True)  # (NaN ran forever)
        s = sampling_params(params, settings)
        if not self.backend.slides_window:  # a server's prompt and new tokens must fit its context together
            check_int("max_new_tokens", s.max_new_tokens, 1, self.context_length - 1)
        prepared = self.prepare_prompt(prompt, room=s.max_new_tokens)
        base_seed = s.seed if s.seed is not None else secrets.randbelow(RANDOM_SEEDS)
        seeds = [(base_seed + i) % (2**63) for i in range(s.num_samples)]
        start = time.perf_counter()
        request = TokenRequest(prepared.ids, s, seeds, s.max_new_tokens, deadline=time.monotonic() + deadline_s,
                               alternatives=alternatives)
        running = self.backend.submit(request)
        steps = [_Steps(PieceDecoder(self._token_bytes)) for _ in seeds]
        samples = [Sample("", [], [], seed, None, len(prepared.ids), prepared.truncated, None, None,
                          alternatives=[] if alternatives else None) for seed in seeds]
        first_at: list[float | None] = [None] * len(seeds)
        try:
            while any(x.finish_reason is None for x in samples):
                events = running.events.get()
                if isinstance(events, Exception):
                    raise self.backend.failure(events, request) from events
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
                        running.stop_sample(ev.sample)
                if all(x.finish_reason is not None for x in samples) and any(None in x.token_ranks for x in samples):
                    break  # the last update comes with the ranks filled in
                yield list(samples)
            else:
                return
        finally:
            if any(x.finish_reason is None for x in samples):
                running.cancel()  # the caller went away (Stop, closed tab) or an error: free the rows
        yield [self._with_ranks(prepared.ids, x) for x in samples]

    def _with_ranks(self, prompt_ids: list[int], sample: Sample) -> Sample:
        """`sample` with the ranks its backend did not report (beyond a server's top N) from one scoring request."""
        ids = prompt_ids + sample.token_ids
        if None not in sample.token_ranks or len(ids) > self.backend.max_scored_tokens:
            return sample
        try:
            ranks = self.backend.prompt_logprobs(ids, top=0).ranks[len(prompt_ids) - 1:].tolist()
        except (ValueError, RuntimeError) as e:  # the text stays; the ranks stay unknown
            log.info("ranks beyond the reported top tokens stay unknown: %s", e)
            return sample
        return replace(sample, token_ranks=[r if r is not None else int(known)
                                            for r, known in zip(sample.token_ranks, ranks, strict=True)])

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

    def generate(self, prompt: str = "", params: SamplingParams | None = None, **settings: Any) -> list[Sample]:
        """Generate to the end and return one Sample per requested sample (same settings as `stream`)."""
        last: list[Sample] = []
        for update in self.stream(prompt, params, **settings):
            last = update
        return last

    # ---- tokens ----------------------------------------------------------------------------------------------
    @cached_property
    def _token_bytes(self) -> list[bytes]:
        return token_byte_table(self.tokenizer)

    def token_text(self, token_id: int) -> str:
        """A token's text; a token that is only part of a character (no text of its own) is shown as its bytes."""
        try:  # (a model's padded vocabulary may give ids past the tokenizer's: they have no text)
            index = operator.index(token_id)
        except TypeError:
            index = -1
        if index < 0:  # (-1 overflowed)
            raise ValueError(f"`token_id` has to be a token id, an integer from 0, but is {shown(token_id)}")
        token_id = index
        text = self.decode([token_id])
        if REPLACEMENT_CHAR in text and REPLACEMENT_CHAR not in self._token_bytes[token_id].decode("utf-8", "ignore"):
            return "[bytes " + self._token_bytes[token_id].hex(" ") + "]"
        return text

    # ---- probabilities (explain/) -------------------------------------------------------------------------------
    def _next_tokens(self, prompt: str) -> tuple[list[int], NextTokens]:
        self._check_open()
        ids = self.prepare_prompt(prompt, room=1).ids
        assert self._next is not None  # (open, just checked)
        return ids, self._next.get(ids)

    # The explanations run on a thread that ends with them, not on the caller's (a web server's long-lived worker):
    # an OpenMP pool left on that thread slowed every later token of the engine's (gpt2_core/threads.py).
    @ends_its_thread
    def next_token_distribution(self, prompt: str, params: SamplingParams | None = None, *, k: int = 20,
                                **settings: Any) -> list[Candidate]:
        """The k likeliest next tokens after `prompt`, likeliest first, each with the model's probability (`prob`) and
        the probability that sampling with these settings draws it (`sampling_prob`: 0 where the settings cut it,
        None where a server's reported tokens do not decide it).

        The settings work as in `generate` (the same function shapes the distribution). The prompt's candidates are
        cached: asking again with other settings does not run the model.
        """
        s = sampling_params(params, settings)
        k = check_int("k", k, 1, self.backend.max_candidates)
        ids, next_tokens = self._next_tokens(prompt)
        top = next_tokens.top[:k]
        after: Sequence[float | None]
        if next_tokens.logits is not None:  # the whole vocabulary: exact whatever the settings
            history = torch.tensor(ids) if s.repetition_penalty != 1.0 else None  # as the engine's first draw
            after = logits_to_probs(next_tokens.logits[None], [s], [history])[0].probs_of(torch.tensor([i for i, _ in top]))
        else:
            after = reported_sampling_probs(next_tokens.top, s)[:k]
        return [Candidate(self.token_text(i), i, math.exp(lp), q) for (i, lp), q in zip(top, after, strict=True)]

    @ends_its_thread
    def next_token_probs(self, prompt: str, k: int = 10) -> list[tuple[str, int, float]]:
        """The k most likely next tokens after `prompt`: (token text, token id, probability), most likely first."""
        k = check_int("k", k, 1, self.backend.max_candidates)
        _, next_tokens = self._next_tokens(prompt)
        return [(self.decode([i]), i, math.exp(lp)) for i, lp in next_tokens.top[:k]]

    def _scored_ids(self, text: str) -> list[int]:
        ids = self.tokenizer.encode(text) if text else []
        limit = self.backend.max_scored_tokens - 1  # <|endoftext|> comes first
        if len(ids) > limit:
            raise ValueError(f"`text` has to be at most {limit} tokens long, but has {len(ids)}")
        return ids

    @ends_its_thread
    def score_text(self, text: str, *, top: int = 5) -> list[TokenScore]:
        """Every token of `text` with its probability given the tokens before it, its rank and the `top` likeliest
        tokens at its place (explain/scoring.py; locally, a text longer than the context is scored in windows).

        The tokens' texts join to `text`; the first token is conditioned on <|endoftext|>.
        """
        self._check_open()
        text = check_text("text", text)
        top = check_int("top", top, 0, self.backend.max_alternatives)
        ids = self._scored_ids(text)
        if not ids:
            return []
        scored = self.backend.prompt_logprobs([self.eos_token_id, *ids], top=top)
        return token_scores(text, ids, scored, table=self._token_bytes, token_text=self.token_text)

    @ends_its_thread
    def sequence_logprob(self, text: str) -> float:
        """log P(text) under the model, every token conditioned on those before it (the first on <|endoftext|>)."""
        self._check_open()
        ids = self._scored_ids(check_text("text", text))
        if not ids:
            return 0.0
        return float(self.backend.prompt_logprobs([self.eos_token_id, *ids], top=0).logprobs.double().sum())

    @ends_its_thread
    def attention(self, text: str) -> Attention:
        """`(tokens, weights)`: the text's tokens and the softmax attention of every layer and head, weights of shape
        (n_layer, n_head, T, T) where weights[l, h, i, j] is how much token i looks at token j (0 for j > i: GPT-2
        reads only to the left). At most MAX_ATTENTION_TOKENS tokens (explain/attention.py)."""
        self._check_open()
        why = self.describe().unavailable.get(ATTENTION)
        if why:
            raise FeatureUnavailableError(f"Attention maps are not available here: {why}")
        text = check_text("text", text)
        ids = self.tokenizer.encode(text) if text else []
        limit = min(MAX_ATTENTION_TOKENS, self.context_length)
        if not 1 <= len(ids) <= limit:
            raise ValueError(f"`text` has to be 1 to {limit} tokens long to show its attention, but has {len(ids)}")
        return Attention(self.token_pieces(ids), self.backend.attention(ids))

    @ends_its_thread
    def logit_lens(self, text: str, *, top: int = 5, target: str | None = None) -> LogitLens:
        """The logit lens (explain/lens.py): for the embeddings and each layer (`layers`, the rows) and every token of
        `text` (the columns), the `top` likeliest next tokens with their probabilities when that layer's residual
        stream is read through the final LayerNorm and the LM head. The last row is the model's own next-token
        distribution; `committed` gives, per position, the first row from which its final top guess stayed on top.
        With `target` (one token of the vocabulary, e.g. " Paris"), every cell also has that token's rank and
        probability. At most MAX_LENS_TOKENS tokens."""
        self._check_open()
        why = self.describe().unavailable.get(LENS)
        if why:
            raise FeatureUnavailableError(f"The logit lens is not available here: {why}")
        text = check_text("text", text)
        top = check_int("top", top, 1, MAX_ALTERNATIVES)
        target_id = self.one_token("target", target)
        ids = self.tokenizer.encode(text) if text else []
        limit = min(MAX_LENS_TOKENS, self.context_length)
        if not 1 <= len(ids) <= limit:
            raise ValueError(f"`text` has to be 1 to {limit} tokens long to read it through the layers, but has "
                             f"{len(ids)}")
        found = self.backend.logit_lens(ids, top=top, target=target_id)
        return logit_lens_view(self.token_pieces(ids), ids, found, token_text=self.token_text,
                               target=target, target_id=target_id, vocab_size=len(self.tokenizer))

    def one_token(self, name: str, value: str | None) -> int | None:
        """The id of `value`, a text that is exactly one token of the vocabulary (None stays None); a text of several
        tokens is refused with its pieces and the first one suggested."""
        if value is None:
            return None
        if not isinstance(value, str):
            raise ValueError(f"`{name}` has to be a string of one token, or None, but is {type(value).__name__}")
        ids = self.tokenizer.encode(check_text(name, value, 200))
        if len(ids) == 1:
            return ids[0]
        if not ids:
            raise ValueError(f"`{name}` has to be exactly one token of the vocabulary, but is empty")
        # each token's own text: a character split over several tokens shows as their bytes, not as '' + '' + '🦄'
        pieces = " + ".join(repr(self.token_text(i)) for i in ids[:8]) + (" + ..." if len(ids) > 8 else "")
        first = self.token_text(ids[0])
        # no hint where the first token is part of a character, or spaces only (' ' was offered for ' xyzzy')
        hint = "" if first.startswith("[bytes ") or not first.strip() else f": try its first token, {first!r}"
        raise ValueError(f"`{name}` has to be exactly one token of the vocabulary, but {shown(value)} is {len(ids)} "
                         f"tokens ({pieces}){hint}")


class LanguageModel(TextModel):
    """A GPT-2 running here, in this process (gpt2_core/local.py): its window slides past the context."""

    backend: LocalBackend

    def __init__(self, model: GPT, tokenizer: Tokenizer, *, name: str, device: torch.device, dtype: torch.dtype,
                 quantize: str | None = None, max_batch: int = 16):
        super().__init__(LocalBackend(model, tokenizer, name=name, device=device, dtype=dtype, quantize=quantize,
                                      max_batch=max_batch))

    # What runs here, as the backend holds it
    @property
    def model(self) -> GPT:
        return self.backend.model

    @property
    def config(self) -> GPTConfig:
        return self.backend.config

    @property
    def engine(self) -> Engine:
        return self.backend.engine

    @property
    def device(self) -> torch.device:
        return self.backend.device

    @property
    def dtype(self) -> torch.dtype:
        return self.backend.dtype

    @property
    def quantize(self) -> str | None:
        return self.backend.quantize

    def num_parameters(self) -> int:
        return self.config.num_parameters()

    def memory_bytes(self) -> int:
        return self.backend.memory_bytes()

    @property
    def precision(self) -> str:
        return self.backend.precision

    def compile(self, *, background: bool = False) -> threading.Thread | None:
        self._check_open()
        return self.backend.compile(background=background)

    def use_cuda_graphs(self, *, capture: bool | None = None) -> None:
        self._check_open()
        self.backend.use_cuda_graphs(capture=capture)


@dataclass
class _Steps:
    """What one sample collected so far, token by token (lm.stream)."""

    pieces_decoder: PieceDecoder
    ids: list[int] = field(default_factory=list)
    pieces: list[str] = field(default_factory=list)  # each token's text: they join to the sample's text
    joined: str = ""  # "".join(pieces)
    tail: str | None = None  # at the end: what an unfinished last character decodes to
    probs: list[float] = field(default_factory=list)
    ranks: list[int | None] = field(default_factory=list)
    alternatives: list[list[Candidate]] = field(default_factory=list)

    def add(self, event: TokenEvent, token_text: Callable[[int], str] | None) -> None:
        assert event.token is not None  # an event without a token only ends its sample
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


@ends_its_thread  # (the loading on a thread of its own: gpt2_core/threads.py, no OpenMP pool left on the caller's)
def load_model(source: str | Path = "gpt2", *, device: str | torch.device = "auto", dtype: str | torch.dtype = "auto",
               quantize: str | None = "auto", max_batch: int = 16, compile: bool | str = "auto",
               cuda_graphs: bool = False) -> LanguageModel:
    """Load a GPT-2 checkpoint (Hub id or local Hugging Face directory; safetensors only) with its tokenizer.

    With no precision asked for, a CPU gets the fast path: int8 weights, and the decode step compiled in the background
    where it pays and the memory allows (precision.py). dtype="fp32" (or quantize=None) gives the exact fp32 engine,
    proven equal to transformers; quantize "int8" / "nf4" asks for those. compile=True compiles the decode step before
    returning (bitsandbytes models stay eager), "background" while decoding eagerly, False never. cuda_graphs=True
    replays the decode step from CUDA graphs on a GPU (not yet measured on one: off by default). max_batch is the most
    samples decoded at once (fewer where the memory free holds fewer KV cache rows: precision.cache_rows); more
    wait their turn. The weights are read one block at a time, each quantized as soon as it is read.
    """
    max_batch = check_int("max_batch", max_batch, 1, MAX_BATCH)  # (0 became 1, 1.5 a limit of 1.5 samples)
    if not isinstance(source, (str, os.PathLike)) or not str(source).strip():  # (5: a bare TypeError from os.fspath)
        raise ValueError(f"`source` has to be a Hub id (gpt2, distilgpt2, ...), mini-gpt2 or a folder, but is "
                         f"{shown(source)}")
    dev = resolve_device(device)
    if dtype != "auto":
        resolve_dtype(dtype, dev)  # the caller's mistakes before a download
    if quantize != "auto":
        validate_quantize(quantize)
    checkpoint_dir = resolve_checkpoint_dir(source)
    config = read_config(checkpoint_dir)
    plan = choose_precision(config, dev, dtype=dtype, quantize=quantize, compile=compile)
    with torch.device("meta"):
        model = GPT(config)
    model.eval().requires_grad_(False)

    def prepare_block(block: torch.nn.Module) -> None:  # as soon as its weights are read: quantized, on the device
        if plan.quantize:
            quantize_block(block, plan.quantize, device=dev, dtype=plan.dtype)
        block.to(dev)
        return_freed_memory()  # its full-precision weights: else the C library keeps them, and the process grows

    load_weights(model, checkpoint_dir, dtype=plan.dtype, prepare_block=prepare_block)
    if plan.quantize:
        quantize_head(model, plan.quantize, device=dev)
    model.to(dev).requires_grad_(False)
    return_freed_memory()  # the full-precision LM head read for quantizing
    tokenizer = load_tokenizer(checkpoint_dir)
    compiling_cpu = plan.compile != "no" and dev.type == "cpu"
    cache_dtype = model.cache_dtype or plan.dtype
    rows = cache_rows(config, dev, cache_dtype, wanted=max_batch,
                      reserved=compile_growth_bytes(config) if compiling_cpu else 0)
    if rows < max_batch:
        row = kv_cache_row_bytes(config, cache_dtype.itemsize)
        log.warning("%s decodes at most %d sample(s) at once (of %d): each takes %s of KV cache, and that is what the "
                    "memory free holds; more wait their turn", source, rows, max_batch, readable_bytes(row))
    lm = LanguageModel(model, tokenizer, name=str(source), device=dev, dtype=plan.dtype, quantize=plan.quantize,
                       max_batch=rows)
    log.info("loaded %s: %.0fM parameters, %s, %s, %.0f MB (%s)", source, lm.num_parameters() / 1e6, dev,
             lm.precision, lm.memory_bytes() / 1e6, plan.why)
    if plan.compile != "no":
        lm.compile(background=plan.compile == "background")
    if cuda_graphs and dev.type == "cuda" and not plan.quantize:
        lm.use_cuda_graphs()
    return lm

"""`LocalBackend`: a GPT-2 running in this process, as a TokenBackend (gpt2_core/backend.py).

gpt2_core's own model (model.py) and decoding engine (generate/engine.py), whose window slides past the context, with
the whole vocabulary's logits at hand: every figure the page shows is exact here, and the model's insides (attention,
every layer's guesses) can be read. How each decode step runs is chosen once, at setup: eagerly, compiled (`compile`)
or from CUDA graphs (`use_cuda_graphs`); a compile in the background swaps its step in with one call when it is ready.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import torch

from gpt2_core.backend import ModelDescription, NextTokens, StreamItem, Tokenizer, TokenRequest
from gpt2_core.checkpoint import first_line
from gpt2_core.config import GPTConfig
from gpt2_core.explain.attention import attention_weights
from gpt2_core.explain.lens import LensIds, lens_ids
from gpt2_core.explain.scoring import ScoredIds, score_ids
from gpt2_core.generate.compiled import CompiledDecode
from gpt2_core.generate.engine import Engine, Request
from gpt2_core.model import GPT

log = logging.getLogger(__name__)

MAX_ALTERNATIVES = 20  # likeliest tokens reported beside each generated or scored token
MAX_CANDIDATES = 100  # next tokens listed by next_token_distribution
MAX_SCORED_TOKENS = 8192  # score_text's limit: 16 windows of GPT-2's context, seconds on a CPU


class DeviceOutOfMemoryError(RuntimeError):
    """The device had no memory left for a request: that request ended (its rows freed), the model serves on."""


class LocalBackend:
    slides_window = True
    max_alternatives = MAX_ALTERNATIVES
    max_scored_tokens = MAX_SCORED_TOKENS

    def __init__(self, model: GPT, tokenizer: Tokenizer, *, name: str, device: torch.device, dtype: torch.dtype,
                 quantize: str | None = None, max_batch: int = 16):
        self.model = model
        self.tokenizer = tokenizer
        self.config: GPTConfig = model.config
        self.name = name
        self.device = device
        self.dtype = dtype
        self.quantize = quantize
        self.context_length = self.config.block_size
        self.eos_token_id = self.config.eos_token_id
        self.max_candidates = min(MAX_CANDIDATES, self.config.vocab_size)
        self.engine = Engine(model, device=device, dtype=dtype, max_batch=max_batch, eos_token_id=self.eos_token_id)
        self.compiling = False  # a compile is running in the background (decoding is eager meanwhile)

    # ---- information -------------------------------------------------------------------------------------------
    def memory_bytes(self) -> int:
        """Bytes of parameters and buffers as stored (quantized layers count their packed bytes)."""
        tensors = list(self.model.parameters()) + list(self.model.buffers())
        total = sum(t.numel() * t.element_size() for t in tensors)
        for module in self.model.modules():  # 4-bit layers keep their scales beside the weight
            state = getattr(module._parameters.get("weight"), "quant_state", None)  # (not a property: int8's unpacks)
            if state is not None and getattr(state, "absmax", None) is not None:
                total += state.absmax.numel() * state.absmax.element_size()
        return total

    @property
    def precision(self) -> str:
        return self.quantize or str(self.dtype).removeprefix("torch.")

    def describe(self) -> ModelDescription:
        return ModelDescription(self.name, where=str(self.device), precision=self.precision,
                                parameters=self.config.num_parameters(), memory_bytes=self.memory_bytes(),
                                context=self.context_length, max_alternatives=MAX_ALTERNATIVES,
                                decoding="compiling" if self.compiling else self.engine.decoding)

    # ---- tokens ------------------------------------------------------------------------------------------------
    def submit(self, request: TokenRequest) -> Request:
        return self.engine.submit(_engine_request(request))

    def run(self, request: TokenRequest) -> Iterator[StreamItem]:
        """`request` decoded in the caller's thread, one step's events (or the error that ended it) per item, on an
        engine of its own (Engine.run): its samples are the whole batch and no engine thread touches the device. For
        a host that lends a GPU to one call at a time (gpt2_core/zerogpu.py). Decoding is eager here."""
        engine = Engine(self.model, device=self.device, dtype=self.dtype, max_batch=self.engine.max_batch,
                        eos_token_id=self.eos_token_id)
        yield from engine.run(_engine_request(request))

    def failure(self, error: Exception, request: TokenRequest) -> Exception:
        if isinstance(error, torch.OutOfMemoryError):
            return DeviceOutOfMemoryError(
                f"the {self.device.type} ran out of memory for this request ({len(request.seeds)} sample(s), "
                f"{len(request.prompt_ids)} prompt tokens + {request.max_new_tokens} new); try fewer samples or "
                "tokens, or try again in a moment")
        return RuntimeError(str(error))  # one object for every request it ended: a fresh one per caller

    @torch.inference_mode()
    def next_tokens(self, ids: list[int]) -> NextTokens:
        logits = self.model(torch.tensor([ids], device=self.device))[0, -1].float().cpu()  # (vocab,)
        best = torch.topk(logits.log_softmax(-1), self.max_candidates)
        return NextTokens(list(zip(best.indices.tolist(), best.values.tolist())), logits)

    def prompt_logprobs(self, ids: list[int], *, top: int) -> ScoredIds:
        return score_ids(self.model, ids[1:], bos=ids[0], top=top)

    def attention(self, ids: list[int]) -> torch.Tensor:
        return attention_weights(self.model, ids)

    def logit_lens(self, ids: list[int], *, top: int, target: int | None) -> LensIds:
        return lens_ids(self.model, ids, top=top, target=target)

    # ---- how decode steps run ------------------------------------------------------------------------------------
    def compile(self, *, background: bool = False) -> threading.Thread | None:
        """Compile the decode step (see compiled.py). In the background, generation runs eagerly meanwhile.

        The lone step compiles first and serves as soon as it is ready (`compiling` is True until then); CPU int8 then
        compiles a graph for batches too (its eager batches are slow without native bf16), which batches use once it
        is ready (`engine.decode.batches_ready`). A failure (no C++ compiler, no Triton) is logged, and what it
        failed to compile stays eager.
        """
        def work() -> None:
            try:
                decode = CompiledDecode(self.model, self.device, batches=self.quantize == "int8"
                                        and self.device.type == "cpu")
                decode.warm_up(dtype=self.dtype)
                if self.engine.closed:  # a model closed meanwhile (a switch) must not keep the graphs alive
                    return
                self.engine.use(decode, "compiled")
                self.compiling = False  # a lone request runs compiled now; batches join when their graph is ready
                log.info("compiled the decode step of %s", self.name)
                decode.warm_up_batches(dtype=self.dtype)
                if decode.batches_ready:
                    log.info("compiled the batch decode step of %s", self.name)
            except Exception as e:  # torch.compile fails in many platform-specific ways; eager always works
                log.warning("torch.compile failed, decoding stays eager where it failed: %s", first_line(e))
            finally:
                self.compiling = False

        self.compiling = True
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

        self.engine.use(GraphedDecode(self.model, self.device, capture=capture), "cuda-graphs")

    def close(self) -> None:
        self.engine.close()
        self.engine.use(self.model.decode, "eager")  # a compiled step's frozen graphs hold the weights, CUDA graphs
        # their cache


def _engine_request(request: TokenRequest) -> Request:
    return Request(request.prompt_ids, request.params, request.seeds, request.max_new_tokens, request.deadline,
                   request.alternatives)

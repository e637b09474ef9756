"""The training loop (after nanoGPT's train.py): a config at the top, one loop, an evaluation every few steps, and a
checkpoint in the layout `load_model` reads.

    result = train(text, Path("out/my-gpt2"), TrainConfig(init="tiny", minutes=5))
    lm = load_model("out/my-gpt2")

Two starts. "tiny" and "small" build a small GPT-2 from nothing, with GPT-2's initialisation and a byte-level BPE
vocabulary trained on the text (a few thousand tokens, so a few million parameters learn on a CPU). Any other `init`
is a GPT-2 checkpoint (Hub id or directory) to fine-tune with its own vocabulary. AdamW with weight decay on the
matrices only, a linear warm-up then a cosine decay (over steps or over the time budget, whichever ends first),
gradient clipping, bf16 autocast where the processor has it. The last tenth of the text is held out for validation.
"""

from __future__ import annotations

import json
import math
import platform
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from gpt2_core.checkpoint import load_tokenizer, resolve_checkpoint_dir, save_checkpoint
from gpt2_core.config import GPTConfig
from gpt2_core.generate.sampling import SamplingParams, sample_token
from gpt2_core.model import GPT
from gpt2_core.train.bpe import train_bpe
from gpt2_core.train.data import TokenData

# From-scratch sizes: (layers, heads, width, context). "tiny" is ~4M parameters with a 4096-token vocabulary.
SIZES = {"tiny": (4, 4, 256, 128), "small": (6, 6, 384, 256)}
SAVE_DTYPES = {"fp32": torch.float32, "fp16": torch.float16}


@dataclass(frozen=True)
class TrainConfig:
    init: str = "tiny"  # "tiny" or "small" (from scratch), or a GPT-2 checkpoint to fine-tune
    minutes: float | None = 5.0  # time budget (None: steps only)
    steps: int | None = None  # step budget (None: time only)
    batch_size: int = 16
    context: int | None = None  # from scratch: the model's context (None: the size's); to fine-tune: the window (<= 256)
    vocab_size: int = 4096  # of the BPE vocabulary trained from scratch
    learning_rate: float | None = None  # peak (None: 1e-3 from scratch, 1e-4 to fine-tune)
    min_lr_fraction: float = 0.1  # the cosine ends at this fraction of the peak
    warmup_steps: int = 50
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    dropout: float = 0.0  # from scratch only
    eval_every: int = 50  # steps between evaluations (and samples)
    eval_batches: int = 8
    sample_prompt: str = "\n"
    sample_tokens: int = 48
    seed: int = 0
    threads: int | None = None  # torch threads while training (None: as they are)
    bf16: bool | None = None  # autocast to bf16 (None: where the processor computes bf16 natively)
    save_dtype: str = "fp32"  # "fp16" halves the saved weights (the bundled model is saved so)

    @property
    def from_scratch(self) -> bool:
        return self.init in SIZES


@dataclass
class Evaluation:
    step: int
    train_loss: float
    val_loss: float
    elapsed_s: float
    tokens_per_s: float
    lr: float
    sample: str


@dataclass
class TrainResult:
    directory: Path
    evaluations: list[Evaluation] = field(default_factory=list)
    stopped: bool = False  # ended by the stop signal


def train(text: str, out_dir: Path, config: TrainConfig = TrainConfig(), *,  # noqa: B008
          val_text: str | None = None, on_eval: Callable[[Evaluation], None] | None = None,
          stop: threading.Event | None = None) -> TrainResult:
    """Train on `text` and save the result in `out_dir` (with training.json: recipe, loss curve, time, machine).

    Validation uses `val_text` when given (a held-out work), else the last tenth of `text`.
    """
    if config.minutes is None and config.steps is None:
        raise ValueError("`minutes` and `steps` cannot both be None: the run needs a budget")
    out_dir = Path(out_dir)
    threads_before = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(config.threads)
    try:
        return _train(text, val_text, out_dir, config, on_eval, stop or threading.Event())
    finally:
        torch.set_num_threads(threads_before)


def _train(text: str, val_text: str | None, out_dir: Path, config: TrainConfig, on_eval,
           stop: threading.Event) -> TrainResult:
    start = time.perf_counter()
    torch.manual_seed(config.seed)
    model, tokenizer, tokenizer_dir = _start(text, out_dir, config)
    context = min(config.context or model.config.block_size, model.config.block_size)
    if val_text is None:
        data = TokenData.split(tokenizer.encode(text), context=context)
    else:
        data = TokenData.held_out(tokenizer.encode(text), tokenizer.encode(val_text), context=context)
    decay = [p for p in model.parameters() if p.dim() >= 2]  # matrices and embeddings; not biases or LayerNorms
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    peak = config.learning_rate or (1e-3 if config.from_scratch else 1e-4)
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=peak, betas=(0.9, 0.95))
    autocast = _use_bf16(config)
    generator = torch.Generator().manual_seed(config.seed)
    result = TrainResult(out_dir)
    step, tokens_seen, last_eval_at, last_eval_tokens = 0, 0, start, 0

    def progress() -> float:
        done = [step / config.steps] if config.steps else []
        if config.minutes:
            done.append((time.perf_counter() - start) / (60 * config.minutes))
        return max(done)

    def evaluate() -> None:
        nonlocal last_eval_at, last_eval_tokens
        now = time.perf_counter()
        rate = (tokens_seen - last_eval_tokens) / max(now - last_eval_at, 1e-9)
        last_eval_at, last_eval_tokens = now, tokens_seen
        record = Evaluation(step, _mean_loss(model, data, "train", config, context, autocast),
                            _mean_loss(model, data, "val", config, context, autocast), now - start, rate,
                            optimizer.param_groups[0]["lr"], _sample(model, tokenizer, config))
        result.evaluations.append(record)
        if on_eval:
            on_eval(record)

    evaluate()  # where it starts: about ln(vocabulary) from scratch
    model.train()
    while progress() < 1.0 and not stop.is_set():
        lr = _learning_rate(step, progress(), peak, config)
        for group in optimizer.param_groups:
            group["lr"] = lr
        x, y = data.batch("train", config.batch_size, context, generator)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss = model.loss(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        tokens_seen += x.numel()
        if step % config.eval_every == 0:
            evaluate()
            model.train()
    result.stopped = stop.is_set()
    if not result.evaluations or result.evaluations[-1].step != step:
        evaluate()
    model.eval()
    save_checkpoint(model, out_dir, tokenizer_dir=tokenizer_dir, dtype=SAVE_DTYPES[config.save_dtype])
    bits_per_char = _bits_per_character(model, tokenizer, data, context, autocast)
    record = dict(recipe=asdict(config), model=asdict(model.config), parameters=model.num_parameters(),
                  context=context, steps=step, tokens_seen=tokens_seen, elapsed_s=time.perf_counter() - start,
                  stopped=result.stopped, bf16_autocast=autocast,
                  machine=f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
                  validation="held-out text" if val_text is not None else "the last tenth of the text",
                  val_bits_per_character=bits_per_char, curve=[asdict(e) for e in result.evaluations])
    (out_dir / "training.json").write_text(json.dumps(record, indent=1))
    return result


def _start(text: str, out_dir: Path, config: TrainConfig):
    """(model in training mode, tokenizer, the folder of its vocab.json and merges.txt)."""
    if config.from_scratch:
        layers, heads, width, block = SIZES[config.init]
        block = config.context or block
        eos = train_bpe(text, out_dir, vocab_size=config.vocab_size)
        tokenizer = load_tokenizer(out_dir)
        model = GPT(GPTConfig(vocab_size=len(tokenizer), block_size=block, n_layer=layers, n_head=heads,
                              n_embd=width, eos_token_id=eos, dropout=config.dropout))
        model.init_weights()
        return model.train(), tokenizer, out_dir
    from gpt2_core.lm import load_model

    checkpoint_dir = resolve_checkpoint_dir(config.init)
    lm = load_model(checkpoint_dir, device="cpu", dtype="fp32")
    lm.close()  # only its weights are needed: the engine never started
    return lm.model.train().requires_grad_(True), load_tokenizer(checkpoint_dir), checkpoint_dir


def _use_bf16(config: TrainConfig) -> bool:
    if config.bf16 is not None:
        return config.bf16
    return torch.backends.cpu.get_cpu_capability() in ("AVX512", "AMX")  # bf16 arithmetic in hardware


def _learning_rate(step: int, progress: float, peak: float, config: TrainConfig) -> float:
    if step < config.warmup_steps:
        return peak * (step + 1) / config.warmup_steps
    floor = peak * config.min_lr_fraction
    return floor + 0.5 * (peak - floor) * (1 + math.cos(math.pi * min(progress, 1.0)))


@torch.no_grad()
def _mean_loss(model: GPT, data: TokenData, split: str, config: TrainConfig, context: int, autocast: bool) -> float:
    model.eval()
    generator = torch.Generator().manual_seed(1234)  # the same windows at every evaluation
    losses = []
    for _ in range(config.eval_batches):
        x, y = data.batch(split, config.batch_size, context, generator)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            losses.append(float(model.loss(x, y)))
    return sum(losses) / len(losses)


@torch.no_grad()
def _sample(model: GPT, tokenizer, config: TrainConfig) -> str:
    """A short sample from the fixed prompt (temperature 0.8, top-k 40, a fixed seed), to watch the text improve."""
    model.eval()
    ids = tokenizer.encode(config.sample_prompt) or [model.config.eos_token_id]
    generator = torch.Generator().manual_seed(config.seed)
    params = SamplingParams(temperature=0.8, top_k=40)
    new = []
    for _ in range(config.sample_tokens):
        window = torch.tensor([(ids + new)[-model.config.block_size:]])
        token, _ = sample_token(model(window)[0, -1], params, generator)
        if token == model.config.eos_token_id:
            break
        new.append(token)
    return tokenizer.decode(new)


@torch.no_grad()
def _bits_per_character(model: GPT, tokenizer, data: TokenData, context: int, autocast: bool) -> float:
    """The held-out text's cross-entropy in bits per character (comparable across vocabularies), in whole windows."""
    model.eval()
    val = data.val
    nats, tokens = 0.0, 0
    for i in range(0, len(val) - 1, context):
        x, y = val[i : i + context][None], val[i + 1 : i + 1 + context][None]
        n = min(x.size(1), y.size(1))
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            nats += float(model.loss(x[:, :n], y[:, :n])) * n
        tokens += n
    chars = len(tokenizer.decode(val[1 : tokens + 1].tolist()))
    return nats / math.log(2) / max(chars, 1)

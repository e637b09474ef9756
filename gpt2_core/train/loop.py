"""The training loop (after nanoGPT's train.py): a config at the top, one loop, an evaluation every few steps, and a
checkpoint in the layout `load_model` reads.

    result = train(text, Path("out/my-gpt2"), TrainConfig(init="tiny", minutes=5))
    lm = load_model("out/my-gpt2")

Two starts. "tiny" and "small" build a small GPT-2 from nothing, with GPT-2's initialisation and a byte-level BPE
vocabulary trained on the text (a few thousand tokens, so a few million parameters learn on a CPU). Any other `init`
is a GPT-2 checkpoint (Hub id or directory) to fine-tune with its own vocabulary. AdamW with weight decay on the
matrices only, a linear warm-up then a cosine decay over the steps, gradient clipping, bf16 autocast where the
processor has it. The last tenth of the text is held out for validation.

Memory is planned before anything is allocated (plan.py): the window (at most 256 tokens when fine-tuning unless
asked), a micro-batch that fits, and gradient accumulation up to the batch (a step's windows are drawn whole and
split, so the micro-batch changes the memory, never what is learned). The schedule follows steps only: a time
budget becomes a step count after timing the first steps, so a seed and a step count give one model on any machine.
At the end, or when stopped, the optimizer and RNG states are saved (resume.py), and `resume=DIR` goes on from there.
"""

from __future__ import annotations

import json
import logging
import math
import platform
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from gpt2_core.backend import Tokenizer
from gpt2_core.checkpoint import load_state_dict, load_tokenizer, read_config, resolve_checkpoint_dir, save_checkpoint
from gpt2_core.config import GPTConfig
from gpt2_core.generate.sampling import sample_token
from gpt2_core.generate.settings import SamplingParams
from gpt2_core.model import GPT
from gpt2_core.train.bpe import train_bpe
from gpt2_core.train.data import TokenData
from gpt2_core.train.plan import FINE_TUNE_CONTEXT, TrainingPlan, plan_training
from gpt2_core.train.resume import ResumeState, read_resume, restore, save_resume, text_hash

# From-scratch sizes: (layers, heads, width, context). "tiny" is ~4M parameters with a 4096-token vocabulary.
SIZES = {"tiny": (4, 4, 256, 128), "small": (6, 6, 384, 256)}
SAVE_DTYPES = {"fp32": torch.float32, "fp16": torch.float16}
DEFAULT_MINUTES = 5.0  # the budget when neither minutes nor steps is given
TIMING_STEPS = 10  # steps timed to turn a time budget into a step count
EVAL_SHARE = 0.25  # with eval_points, a timed run evaluates no more often than this share of its time allows

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    init: str = "tiny"  # "tiny" or "small" (from scratch), or a GPT-2 checkpoint to fine-tune
    minutes: float | None = None  # time budget, a step count after TIMING_STEPS (DEFAULT_MINUTES if no steps)
    steps: int | None = None  # step budget (with minutes too: whichever is fewer steps)
    batch_size: int = 16  # windows per optimizer step (micro-batches accumulate up to it)
    micro_batch: int | None = None  # windows per forward pass (None: the largest that fits, plan.py)
    max_memory_gb: float | None = None  # the memory to plan for (None: what the machine has available)
    context: int | None = None  # from scratch: the model's context (None: the size's); to fine-tune: the window
    vocab_size: int = 4096  # of the BPE vocabulary trained from scratch
    learning_rate: float | None = None  # peak (None: 1e-3 from scratch, 1e-4 to fine-tune)
    min_lr_fraction: float = 0.1  # the cosine ends at this fraction of the peak
    warmup_steps: int = 50
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    dropout: float = 0.0  # from scratch only
    eval_every: int = 50  # steps between evaluations (and samples); with eval_points, the most steps between them
    eval_points: int | None = None  # evaluations after the start, spread over the run (None: every eval_every steps)
    eval_batches: int = 8
    bpc_tokens: int | None = None  # the held-out tokens (from the start) the final bits per character read (None: all)
    sample_prompt: str = "\n"
    sample_tokens: int = 48
    seed: int = 0
    threads: int | None = None  # torch threads while training (None: as they are)
    bf16: bool | None = None  # autocast to bf16 (None: where the processor computes bf16 natively)
    save_dtype: str = "fp32"  # "fp16" halves the saved weights (the bundled model is saved so)

    @property
    def from_scratch(self) -> bool:
        return self.init in SIZES


# What a resumed run takes from the new call; everything else comes from the stopped run's recipe.
RESUME_OVERRIDES = ("steps", "micro_batch", "max_memory_gb", "threads")


@dataclass
class Evaluation:
    step: int
    train_loss: float
    val_loss: float
    elapsed_s: float
    tokens_per_s: float
    lr: float
    sample: str
    total_steps: int | None = None  # the run's length (None while a time budget is still being timed)


@dataclass
class TrainResult:
    directory: Path
    evaluations: list[Evaluation] = field(default_factory=list)
    stopped: bool = False  # ended by the stop signal
    plan: TrainingPlan | None = None
    total_steps: int = 0


def train(text: str, out_dir: Path, config: TrainConfig = TrainConfig(), *,  # noqa: B008
          val_text: str | None = None, on_eval: Callable[[Evaluation], None] | None = None,
          on_plan: Callable[[TrainingPlan], None] | None = None, stop: threading.Event | None = None,
          resume: Path | None = None) -> TrainResult:
    """Train on `text` and save the result in `out_dir` (with training.json: recipe, loss curve, time, machine).

    Validation uses `val_text` when given (a held-out work), else the last tenth of `text`. `on_plan` hears the memory
    plan before the model is allocated (plan_training raises WontFitError instead if it would not fit). `resume` is
    the folder of a stopped run to go on with, on the same text: its recipe and schedule, to its total steps or to
    `config.steps` if given (the fields in RESUME_OVERRIDES come from `config`, the rest from the stopped run).
    """
    if config.minutes is None and config.steps is None:
        config = replace(config, minutes=DEFAULT_MINUTES)
    state, asked_steps = None, config.steps
    if resume is not None:
        state = read_resume(Path(resume))
        saved = TrainConfig(**state.info["recipe"])
        if saved.micro_batch is not None and saved.micro_batch > saved.batch_size:  # (a run saved when it made more)
            saved = replace(saved, micro_batch=None)
        config = TrainConfig(**{**asdict(saved), "minutes": None, "steps": state.info["total_steps"],
                                **{k: getattr(config, k) for k in RESUME_OVERRIDES if getattr(config, k) is not None}})
        if state.info["text_sha256"] != text_hash(text):
            raise ValueError(f"`resume` continues a run on the same text, but {str(resume)!r} was trained on another "
                             f"(give the --text it was trained on)")
        made = state.info["step"]
        if asked_steps is None and config.steps is not None and config.steps <= made:  # it would train nothing
            raise ValueError(f"`resume`: the run in {str(resume)!r} has made all its {made} steps (it finished, or was "
                             f"stopped before its time budget was turned into steps): give --steps more than {made} "
                             f"to go on")
        if config.steps is not None and config.steps <= made:
            raise ValueError(f"`steps` has to be more than the {made} steps the run in {str(resume)!r} has made, to go "
                             f"on, but is {config.steps}")
    out_dir = Path(out_dir)
    threads_before = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(config.threads)
    try:  # a new vocabulary is made aside, and reaches out_dir with the weights: an --overwrite cut short keeps the old
        with tempfile.TemporaryDirectory(prefix="gpt2-vocabulary-") as vocab_dir:
            return _train(text, val_text, out_dir, config, on_eval, on_plan, stop or threading.Event(), state,
                          Path(resume) if resume is not None else None, Path(vocab_dir))
    finally:
        torch.set_num_threads(threads_before)


def _train(text: str, val_text: str | None, out_dir: Path, config: TrainConfig,
           on_eval: Callable[[Evaluation], None] | None, on_plan: Callable[[TrainingPlan], None] | None,
           stop: threading.Event, state: ResumeState | None, resume_dir: Path | None, vocab_dir: Path) -> TrainResult:
    start = time.perf_counter()
    torch.manual_seed(config.seed)
    autocast = state.info["bf16_autocast"] if state else _use_bf16(config)

    def planned(shape: GPTConfig, context: int) -> TrainingPlan:
        return plan_training(shape, context=context, batch=config.batch_size, bf16=autocast,
                             micro_batch=config.micro_batch, max_memory_gb=config.max_memory_gb,
                             context_fixed=resume_dir is not None)

    new = config.from_scratch and resume_dir is None
    if new:  # a run that cannot fit with the vocabulary asked for (at most what it learns) is refused before
        planned(*_new_shape(config, config.vocab_size, eos=0))  # minutes of learning it
    checkpoint_dir = None if new else resume_dir or resolve_checkpoint_dir(config.init)  # (a Hub id: found once)
    tokenizer, tokenizer_dir = _tokenizer(text, config, checkpoint_dir, vocab_dir)
    shape, context = _shape(config, checkpoint_dir, tokenizer, resumed=resume_dir is not None)
    plan = planned(shape, context)
    log.info("%s", plan.describe())
    if on_plan:
        on_plan(plan)
    model = _model(shape, checkpoint_dir, state)
    if val_text is None:
        data = TokenData.split(tokenizer.encode(text), context=context)
    else:
        data = TokenData.held_out(tokenizer.encode(text), tokenizer.encode(val_text), context=context)
    decay = [p for p in model.parameters() if p.dim() >= 2]  # matrices and embeddings; not biases or LayerNorms
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    peak = config.learning_rate or (1e-3 if config.from_scratch else 1e-4)
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},  # lr: set at each step,
                                   {"params": no_decay, "weight_decay": 0.0}], lr=0.0, betas=(0.9, 0.95))  # 0 before
    generator = torch.Generator().manual_seed(config.seed)
    result = TrainResult(out_dir, plan=plan)
    step, tokens_seen, elapsed_before = 0, 0, 0.0
    total = config.steps if config.minutes is None else None  # a time budget is timed first
    if state:
        restore(state, optimizer=optimizer, generator=generator)
        step, tokens_seen, elapsed_before = state.info["step"], state.info["tokens_seen"], state.info["elapsed_s"]
        result.evaluations = [Evaluation(**e) for e in state.info["evaluations"]]
    last_eval_at, last_eval_tokens, eval_cost = start, tokens_seen, 0.0
    interval = _eval_interval(config, total)  # steps between evaluations (a timed run's is set with its total)
    timing_from: tuple[int, float] | None = None  # (step, time) where timing a budget's steps began
    timing_steps = max(1, min(TIMING_STEPS, config.warmup_steps))  # their learning rate needs no total

    def evaluate() -> float:
        """Measure, record and report; the seconds its losses took."""
        nonlocal last_eval_at, last_eval_tokens
        now = time.perf_counter()
        rate = (tokens_seen - last_eval_tokens) / max(now - last_eval_at, 1e-9)
        train_loss, val_loss = (_mean_loss(model, data, split, config, plan, autocast) for split in ("train", "val"))
        losses_s = time.perf_counter() - now
        record = Evaluation(step, train_loss, val_loss, elapsed_before + now - start, rate,
                            optimizer.param_groups[0]["lr"], _sample(model, tokenizer, config), total)
        last_eval_at, last_eval_tokens = time.perf_counter(), tokens_seen
        result.evaluations.append(record)
        if on_eval:
            on_eval(record)
        return losses_s

    end_cost = 0.0  # the bits per character measured at the end take as long as losses of as many tokens
    if state is None:
        before = time.perf_counter()
        losses_s = evaluate()  # where it starts: about ln(vocabulary) from scratch
        eval_cost = time.perf_counter() - before
        end_cost = losses_s * _bpc_tokens(data, config) / (2 * config.eval_batches * config.batch_size * context)
    model.train()
    while (total is None or step < total) and not (config.steps and step >= config.steps) and not stop.is_set():
        if total is None and timing_from is None:
            timing_from = (step, time.perf_counter())
        lr = _learning_rate(step, total, peak, config)
        for group in optimizer.param_groups:
            group["lr"] = lr
        x, y = data.batch("train", plan.batch, context, generator)  # the step's windows, however it is split
        for xs, ys in zip(torch.split(x, plan.micro_batch), torch.split(y, plan.micro_batch)):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                loss = model.loss(xs, ys) * (len(xs) / plan.batch)  # so the gradients add up to the batch's mean
            loss.backward()  # type: ignore[no-untyped-call]  # torch leaves Tensor.backward untyped
            tokens_seen += xs.numel()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        if total is None and timing_from is not None and step - timing_from[0] >= timing_steps:
            total, interval = _steps_in_budget(config, step, (time.perf_counter() - timing_from[1]) / timing_steps,
                                               eval_cost, time.perf_counter() - start, end_s=end_cost)
            log.info("the %g-minute budget fixes the run at %d steps, evaluated every %d", config.minutes, total,
                     interval)
        if step % interval == 0:
            evaluate()
            model.train()
    result.stopped = stop.is_set()
    result.total_steps = total if total is not None else step
    if not result.evaluations or result.evaluations[-1].step != step:
        evaluate()
    model.eval()
    save_checkpoint(model, out_dir, tokenizer_dir=tokenizer_dir, dtype=SAVE_DTYPES[config.save_dtype])
    elapsed = elapsed_before + time.perf_counter() - start
    curve = [asdict(e) for e in result.evaluations]
    save_resume(out_dir, model=model, optimizer=optimizer, generator=generator,
                keep_master_weights=config.save_dtype != "fp32",
                info=dict(step=step, total_steps=result.total_steps, tokens_seen=tokens_seen, elapsed_s=elapsed,
                          recipe=asdict(config), bf16_autocast=autocast, text_sha256=text_hash(text),
                          evaluations=curve))
    bits_per_char = _bits_per_character(model, tokenizer, data, context, autocast, _bpc_tokens(data, config))
    record = dict(recipe=asdict(config), model=asdict(model.config), parameters=model.num_parameters(),
                  context=context, plan=plan.as_dict(), steps=step, total_steps=result.total_steps,
                  tokens_seen=tokens_seen, elapsed_s=elapsed, stopped=result.stopped, bf16_autocast=autocast,
                  resumed_from=str(resume_dir) if resume_dir else None,
                  machine=f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
                  validation="held-out text" if val_text is not None else "the last tenth of the text",
                  val_bits_per_character=bits_per_char, curve=curve)
    (out_dir / "training.json").write_text(json.dumps(record, indent=1))
    return result


def _steps_in_budget(config: TrainConfig, step: int, step_s: float, eval_s: float, elapsed_s: float, *,
                     end_s: float) -> tuple[int, int]:
    """The step count a time budget allows, and the steps between its evaluations: what is left of the budget, over a
    step's time and its share of an evaluation (one more evaluation's time and the `end_s` of the last measurement are
    kept for the end). The step count is never fewer than the steps done, nor more than `steps`. With eval_points,
    evaluations take no more than EVAL_SHARE of the time unless eval_every (the most steps between them) is fewer."""
    assert config.minutes is not None  # a time budget is what sets the steps
    left = 60 * config.minutes - elapsed_s - eval_s - end_s
    fewest = math.ceil(eval_s / (EVAL_SHARE * step_s)) if step_s > 0 else 1

    def steps_with(interval: int) -> int:
        total = step + max(0, int(left / (step_s + eval_s / interval)))
        return min(total, config.steps) if config.steps else total

    # the interval depends on the step count: the most steps there could be set it, and it sets the step count
    interval = _eval_interval(config, steps_with(config.eval_every), fewest)
    return steps_with(interval), interval


def _eval_interval(config: TrainConfig, total: int | None, fewest: int = 1) -> int:
    """Steps between evaluations: eval_every, or with eval_points the run's steps over them (at least `fewest`)."""
    if config.eval_points is None or total is None:
        return config.eval_every
    return max(1, min(config.eval_every, max(fewest, math.ceil(total / config.eval_points))))


def _bpc_tokens(data: TokenData, config: TrainConfig) -> int:
    """The held-out tokens the final bits per character read: all, or the first bpc_tokens."""
    return len(data.val) if config.bpc_tokens is None else min(len(data.val), config.bpc_tokens)


def _tokenizer(text: str, config: TrainConfig, checkpoint_dir: Path | None, vocab_dir: Path
               ) -> tuple[Tokenizer, Path]:
    """(the tokenizer, the folder of its vocab.json and merges.txt): the checkpoint's, or for a new model
    (`checkpoint_dir` None) one trained on `text` into `vocab_dir`."""
    if checkpoint_dir is None:
        train_bpe(text, vocab_dir, vocab_size=config.vocab_size)
        return load_tokenizer(vocab_dir), vocab_dir
    return load_tokenizer(checkpoint_dir), checkpoint_dir


def _shape(config: TrainConfig, checkpoint_dir: Path | None, tokenizer: Tokenizer, *, resumed: bool
           ) -> tuple[GPTConfig, int]:
    """(the model's config, the training window), read without loading any weights, for the memory plan. A new
    vocabulary may have fewer tokens than asked for (a short text has fewer merges to learn)."""
    if checkpoint_dir is None:
        eos = tokenizer.eos_token_id
        assert eos is not None  # train_bpe names <|endoftext|> in tokenizer_config.json
        return _new_shape(config, len(tokenizer), eos=eos)
    shape = read_config(checkpoint_dir)
    if config.from_scratch:  # a resumed from-scratch model: its context is its window (a saved config says dropout 0)
        return GPTConfig(**{**asdict(shape), "dropout": config.dropout}), shape.block_size
    if not resumed and config.context is not None and config.context > shape.block_size:  # (it was cut, unsaid)
        raise ValueError(f"`context` has to be an integer in [8, {shape.block_size}] to fine-tune {config.init} (its "
                         f"context is {shape.block_size} tokens), but is {config.context}")
    return shape, min(config.context or FINE_TUNE_CONTEXT, shape.block_size)


def _new_shape(config: TrainConfig, vocab_size: int, *, eos: int) -> tuple[GPTConfig, int]:
    """A from-scratch model's config and window, for a vocabulary of `vocab_size`."""
    layers, heads, width, block = SIZES[config.init]
    block = config.context or block
    return GPTConfig(vocab_size=vocab_size, block_size=block, n_layer=layers, n_head=heads, n_embd=width,
                     eos_token_id=eos, dropout=config.dropout), block


def _model(shape: GPTConfig, checkpoint_dir: Path | None, state: ResumeState | None) -> GPT:
    """The model in training mode: new (`checkpoint_dir` None), or the checkpoint's weights (the stopped run's fp32
    master weights where it kept them)."""
    if checkpoint_dir is None:
        model = GPT(shape)
        model.init_weights()
        return model.train()
    weights = state.master_weights if state else None
    if weights is None:
        weights = load_state_dict(checkpoint_dir, shape, dtype=torch.float32)
    weights["lm_head.weight"] = weights["wte.weight"]
    with torch.device("meta"):
        model = GPT(shape)
    model.load_state_dict(weights, assign=True)
    assert isinstance(model.lm_head, torch.nn.Linear)  # (quantized later, if at all)
    model.lm_head.weight = model.wte.weight  # assign=True replaced the tied parameter; tie it again
    return model.train().requires_grad_(True)


def _use_bf16(config: TrainConfig) -> bool:
    if config.bf16 is not None:
        return config.bf16
    return torch.backends.cpu.get_cpu_capability() in ("AVX512", "AMX")  # bf16 arithmetic in hardware


def _learning_rate(step: int, total: int | None, peak: float, config: TrainConfig) -> float:
    """A linear warm-up, then a cosine from `peak` down to a fraction of it at step `total`: a function of the step
    alone (`total` is None only during the warm-up steps that time a budget)."""
    if step < config.warmup_steps:
        return peak * (step + 1) / config.warmup_steps
    assert total is not None  # known once the warm-up is over
    floor = peak * config.min_lr_fraction
    return floor + 0.5 * (peak - floor) * (1 + math.cos(math.pi * min(step / total, 1.0)))


@torch.no_grad()
def _mean_loss(model: GPT, data: TokenData, split: str, config: TrainConfig, plan: TrainingPlan,
               autocast: bool) -> float:
    """The mean loss over `eval_batches` fixed batches, each run a micro-batch at a time."""
    model.eval()
    generator = torch.Generator().manual_seed(1234)  # the same windows at every evaluation
    nats, windows = 0.0, 0
    for _ in range(config.eval_batches):
        x, y = data.batch(split, config.batch_size, plan.context, generator)
        for xs, ys in zip(torch.split(x, plan.micro_batch), torch.split(y, plan.micro_batch)):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                nats += float(model.loss(xs, ys)) * len(xs)
            windows += len(xs)
    return nats / windows


@torch.no_grad()
def _sample(model: GPT, tokenizer: Tokenizer, config: TrainConfig) -> str:
    """A short sample from the fixed prompt (temperature 0.8, top-k 40, a fixed seed), to watch the text improve."""
    model.eval()
    ids = tokenizer.encode(config.sample_prompt) or [model.config.eos_token_id]
    generator = torch.Generator().manual_seed(config.seed)
    params = SamplingParams(temperature=0.8, top_k=40)
    new: list[int] = []
    for _ in range(config.sample_tokens):
        window = torch.tensor([(ids + new)[-model.config.block_size:]])
        token, _ = sample_token(model(window, first=window.size(1) - 1)[0, -1], params, generator)
        if token == model.config.eos_token_id:
            break
        new.append(token)
    text = tokenizer.decode(new)
    assert isinstance(text, str)  # one sequence gives one text
    return text


@torch.no_grad()
def _bits_per_character(model: GPT, tokenizer: Tokenizer, data: TokenData, context: int, autocast: bool,
                        tokens: int) -> float:
    """The held-out text's cross-entropy in bits per character (comparable across vocabularies), in whole windows over
    its first `tokens` tokens."""
    model.eval()
    val = data.val[: tokens + 1]
    nats, tokens = 0.0, 0
    for i in range(0, len(val) - 1, context):
        x, y = val[i : i + context][None], val[i + 1 : i + 1 + context][None]
        n = min(x.size(1), y.size(1))
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            nats += float(model.loss(x[:, :n], y[:, :n])) * n
        tokens += n
    chars = len(tokenizer.decode(val[1 : tokens + 1].tolist()))
    return nats / math.log(2) / max(chars, 1)

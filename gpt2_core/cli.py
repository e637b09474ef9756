"""`python -m gpt2_core`: generate text, pre-fetch models for an offline classroom, and show what a model costs.

    python -m gpt2_core generate --model gpt2 --prompt "In a shocking finding," --seed 42
    python -m gpt2_core generate --model distilgpt2 --prompt "Hello" --num-samples 3 --json
    python -m gpt2_core generate --prompt-file essay.txt          # or --prompt-file - to read stdin
    python -m gpt2_core download gpt2 gpt2-medium
    python -m gpt2_core info --model gpt2 --quantize int8
    python -m gpt2_core train --text plays.txt --out my-gpt2 --init tiny --minutes 5   # or --init gpt2 to fine-tune
    python -m gpt2_core train --text plays.txt --resume my-gpt2                       # go on after a stop

Bad arguments exit with code 2 and one line on stderr; a model that cannot be had exits with 1 and says how to fix it.
Sampling numbers are read as written and checked by SamplingParams, so `--top-k 2.5` gets the same message
naming `top_k` and its range as the Python API and the app give.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from gpt2_core.checkpoint import BUNDLED, ModelUnavailableError, UnsafeCheckpointError
from gpt2_core.devices import DTYPE_NAMES
from gpt2_core.generate.settings import DEFAULTS
from gpt2_core.quantize import QUANTIZE_CHOICES

if TYPE_CHECKING:
    from gpt2_core.generate.settings import SamplingParams
    from gpt2_core.lm import LanguageModel, Sample
    from gpt2_core.train.loop import Evaluation
    from gpt2_core.train.plan import TrainingPlan


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, exit 2, no usage dump
        self.exit(2, f"{self.prog}: error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m gpt2_core", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def model_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--model", default="gpt2", help="Hub id (gpt2, distilgpt2, openai-community/gpt2-xl) or local dir")
        p.add_argument("--quantize", choices=QUANTIZE_CHOICES, default="auto",
                       help="int8: int8 weights (a CPU's default: fast); on a GPU bitsandbytes int8 / nf4")
        p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
        p.add_argument("--dtype", default="auto", choices=["auto", *DTYPE_NAMES],
                       help="weight precision (auto: int8 weights on a CPU, fp16 on a GPU)")
        p.add_argument("--exact", action="store_true",
                       help="the exact fp32 engine, proven equal to transformers (instead of a CPU's int8)")

    gen = commands.add_parser("generate", help="continue a prompt")
    model_options(gen)
    prompt = gen.add_mutually_exclusive_group()
    prompt.add_argument("--prompt", default="", help="text to continue (empty: an unconditional sample)")
    prompt.add_argument("--prompt-file", metavar="PATH", help="read the prompt from a UTF-8 file ('-': stdin)")
    gen.add_argument("--max-new-tokens", type=_number, default=DEFAULTS.max_new_tokens)
    gen.add_argument("--temperature", type=_number, default=DEFAULTS.temperature, help="0 = greedy")
    gen.add_argument("--top-k", type=_number, default=DEFAULTS.top_k, help="0 = off")
    gen.add_argument("--top-p", type=_number, default=DEFAULTS.top_p, help="1.0 = off")
    gen.add_argument("--repetition-penalty", type=_number, default=DEFAULTS.repetition_penalty, help="1.0 = off")
    gen.add_argument("--seed", type=_number, default=DEFAULTS.seed, help="omit for a random seed (it is reported)")
    gen.add_argument("--num-samples", type=_number, default=DEFAULTS.num_samples)
    gen.add_argument("--stop", action="append", default=None, help="stop at this text (repeatable, up to 4)")
    gen.add_argument("--json", action="store_true", help="print one JSON object per sample")

    dl = commands.add_parser("download", help="fetch models into the Hugging Face cache (for offline use)")
    dl.add_argument("models", nargs="+", metavar="MODEL")

    tr = commands.add_parser("train", help="train a small GPT-2 from scratch, or fine-tune one, on a text file")
    tr.add_argument("--text", required=True, metavar="FILE", help="a UTF-8 text file to learn")
    tr.add_argument("--out", metavar="DIR", help="where to write the model (Hugging Face layout; required unless "
                                                 "--resume, which writes to its own folder by default)")
    tr.add_argument("--overwrite", action="store_true", help="write over a model already in --out (refused "
                    "without it)")
    tr.add_argument("--init", default=None, help="tiny or small (from scratch), or a GPT-2 Hub id or directory to "
                                                 "fine-tune (default tiny)")
    budget = tr.add_mutually_exclusive_group()
    budget.add_argument("--minutes", type=_number, default=None, help="time budget, made a step count after timing "
                        "the first steps (default 5 minutes)")
    budget.add_argument("--steps", type=_number, default=None, help="step budget instead of a time budget")
    tr.add_argument("--resume", metavar="DIR", help="go on with the run saved in DIR (stopped, or finished: then give "
                    "a larger --steps) on the same --text, to its total steps")
    tr.add_argument("--val-text", metavar="FILE", help="a held-out text to validate on (default: the text's last tenth)")
    tr.add_argument("--eval-every", type=_number, default=None, help="steps between evaluations (default 100); "
                    "with --eval-points, the most steps between them (default: no limit)")
    tr.add_argument("--eval-points", type=_number, default=None, help="evaluate about this many times, spread over "
                    "the run (a timed run: no more often than a quarter of its time allows)")
    tr.add_argument("--eval-batches", type=_number, default=None, help="batches of 16 windows each evaluation's "
                    "losses are measured on (default 8; fewer is quicker and noisier)")
    tr.add_argument("--bpc-tokens", type=_number, default=None, help="the held-out tokens (from the start) the final "
                    "bits per character are measured on (default: all)")
    tr.add_argument("--context", type=_number, default=None, help="from scratch: the model's context in tokens "
                    "(default: the size's); to fine-tune: the training window (default 256 or the model's if less)")
    tr.add_argument("--micro-batch", type=_number, default=None, help="windows per forward pass: a step's batch "
                    "of 16 windows is split into micro-batches of this size (5: 5+5+5+1), which changes the memory "
                    "used, not the windows learned from (default: the largest that fits)")
    tr.add_argument("--max-memory", type=_number, default=None, metavar="GB", help="memory to plan for (default: "
                    "what is available, from /proc/meminfo and the cgroup's limit)")
    tr.add_argument("--seed", type=_number, default=None, help="the seed of the weights, batches and samples "
                    "(default 0)")
    tr.add_argument("--dropout", type=_number, default=None, help="from scratch: dropout while training (default 0)")
    tr.add_argument("--threads", type=_number, default=None, help="torch threads for training (default: all)")
    tr.add_argument("--save-dtype", choices=["fp32", "fp16"], default=None, help="precision of the saved weights "
                    "(default fp32)")
    tr.add_argument("--json", action="store_true", help='print {"plan": ...} first, then one JSON object per '
                                                        "evaluation")

    info = commands.add_parser("info", help="parameters, memory and device of a model")
    model_options(info)
    return parser


def _number(text: str) -> int | float | str:
    """An int or float as written ('3.7' stays 3.7, 'nan' is NaN); other text is passed on for the check to name."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _read_prompt(args: argparse.Namespace) -> str:
    if args.prompt_file is None:
        prompt: str = args.prompt  # --prompt's default is ""
        return prompt
    try:
        if args.prompt_file == "-":  # bytes, decoded here: the locale's reading let other bytes through as surrogates
            raw = getattr(sys.stdin, "buffer", None)  # (a text stream put in its place, by a caller, has none)
            return raw.read().decode("utf-8") if raw is not None else sys.stdin.read()
        with open(args.prompt_file, encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"`prompt_file` has to be a readable UTF-8 text file, but {args.prompt_file!r} is not: "
                         f"{e}") from e


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # recorded with a trained model
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return _run(args)
    except KeyboardInterrupt:  # Ctrl-C: one line, not a traceback (train's first Ctrl-C stops and saves instead)
        print(f"python -m gpt2_core {args.command}: interrupted", file=sys.stderr)
        return 130
    except ValueError as e:  # a bad value: the messages name the parameter and the allowed range
        print(f"python -m gpt2_core {args.command}: error: {e}", file=sys.stderr)
        return 2
    except (ModelUnavailableError, UnsafeCheckpointError, RuntimeError) as e:
        offline = ("" if args.command not in ("generate", "info") or "cannot be reached" not in str(e) else
                   " Offline, the model bundled with this project runs: --model mini-gpt2 (trained on Shakespeare).")
        print(f"python -m gpt2_core {args.command}: error: {e}{offline}", file=sys.stderr)
        return 1


# The train flags a resumed run takes from the stopped run's recipe (train.loop.RESUME_OVERRIDES are the ones it
# takes from the new command): given with --resume they are refused, not ignored.
RECIPE_FLAGS = ("init", "eval_every", "eval_points", "eval_batches", "bpc_tokens", "context", "seed", "dropout",
                "save_dtype")


def _train(args: argparse.Namespace) -> int:
    from gpt2_core.generate.settings import check_float, check_int
    from gpt2_core.train.loop import DEFAULT_MINUTES, TrainConfig, train
    from gpt2_core.train.plan import fix_mmap_threshold

    minutes = None if args.minutes is None else check_float("minutes", args.minutes, 0, 24 * 60, low_open=True)
    steps = None if args.steps is None else check_int("steps", args.steps, 1, 10**7)
    if args.resume is not None and minutes is not None:
        raise ValueError("`minutes` cannot be given with `resume`: a resumed run goes on to the step count its "
                         "budget was turned into (or to a new --steps)")
    recipe = [name for name in RECIPE_FLAGS if getattr(args, name) is not None]
    if args.resume is not None and recipe:
        raise ValueError(f"`{recipe[0]}` cannot be given with `resume`: a resumed run keeps the stopped run's recipe "
                         f"(only --steps, --micro-batch, --max-memory and --threads can change)")
    if args.out is None and args.resume is None:
        raise ValueError("`out` has to be given: the folder to write the model to (--out DIR)")
    if minutes is None and steps is None and args.resume is None:
        minutes = DEFAULT_MINUTES
    texts = {}
    for name, path in (("text", args.text), ("val_text", args.val_text)):
        if path is None:
            continue
        try:
            texts[name] = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise ValueError(f"`{name}` has to be a readable UTF-8 text file, but {path!r} is not: {e}") from e
    eval_points = None if args.eval_points is None else check_int("eval_points", args.eval_points, 1, 10**4)
    unlimited = 10**7 if eval_points else 100  # the steps between evaluations when --eval-every is not given
    eval_every = check_int("eval_every", unlimited if args.eval_every is None else args.eval_every, 1, 10**7)
    eval_batches = check_int("eval_batches", 8 if args.eval_batches is None else args.eval_batches, 1, 1000)
    bpc_tokens = None if args.bpc_tokens is None else check_int("bpc_tokens", args.bpc_tokens, 1, 10**9)
    threads = None if args.threads is None else check_int("threads", args.threads, 1, 256)
    context = None if args.context is None else check_int("context", args.context, 8, 1024)
    batch = TrainConfig.batch_size  # (a step's windows: --micro-batch splits them, and cannot make more)
    micro_batch = None if args.micro_batch is None else check_int("micro_batch", args.micro_batch, 1, batch)
    max_memory = None if args.max_memory is None else check_float("max_memory", args.max_memory, 0, 4096,
                                                                  low_open=True)
    seed = check_int("seed", 0 if args.seed is None else args.seed, 0, 2**31 - 1)
    dropout = check_float("dropout", 0.0 if args.dropout is None else args.dropout, 0.0, 0.9)
    if args.init is not None and not args.init.strip():  # ('' trained a tiny model from scratch without a word)
        raise ValueError("`init` has to be tiny or small (from scratch), or a GPT-2 Hub id or folder to fine-tune, "
                         "but is empty")
    config = TrainConfig(init=args.init or "tiny", minutes=minutes, steps=steps, save_dtype=args.save_dtype or "fp32",
                         eval_every=eval_every,
                         eval_points=eval_points, eval_batches=eval_batches, bpc_tokens=bpc_tokens,
                         threads=threads, context=context, micro_batch=micro_batch, max_memory_gb=max_memory,
                         seed=seed, dropout=dropout)
    made = _first_missing(Path(args.out)) if args.out is not None else None  # the top folder a refused run removes
    out = _out_folder(args)
    fix_mmap_threshold()  # freed activations go back to the system, as the memory plan assumes
    # SIGTERM (the app's Stop) ends the run early and saves it; so does Ctrl-C once training has begun (before, while
    # a download, the vocabulary or the weights are prepared, it interrupts). Further presses wait for the save: a
    # model cut half-written would be lost, the resumed run's own folder included.
    stop, training = threading.Event(), threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        if signum == signal.SIGINT and not training.is_set():
            raise KeyboardInterrupt
        if signum == signal.SIGINT:
            print("already stopping: the model is being saved" if stop.is_set() else
                  "stopping: measuring the loss once more and saving the model", file=sys.stderr, flush=True)
        stop.set()

    handlers = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    started = time.perf_counter()

    def state_plan(plan: TrainingPlan) -> None:  # before the model is allocated
        print(json.dumps({"plan": plan.as_dict()}) if args.json else plan.describe(), flush=True)
        if args.resume is not None:  # (a resumed run reads its own folder's weights: no evaluation before it trains)
            training.set()

    def report(e: Evaluation) -> None:
        training.set()
        if args.json:
            print(json.dumps({"step": e.step, "train_loss": round(e.train_loss, 4), "val_loss": round(e.val_loss, 4),
                              "elapsed_s": round(e.elapsed_s, 1), "tokens_per_s": round(e.tokens_per_s),
                              "lr": e.lr, "total_steps": e.total_steps, "sample": e.sample}), flush=True)
            return
        left = f", {max(0.0, 60 * minutes - (time.perf_counter() - started)):.0f} s left" if minutes else ""
        of = f" of {e.total_steps}" if e.total_steps else ""
        print(f"step {e.step}{of}: train loss {e.train_loss:.3f}, val loss {e.val_loss:.3f}, "
              f"{e.tokens_per_s:.0f} tokens/s{left}\n  sample: {e.sample[:120]!r}", flush=True)

    try:
        result = train(texts["text"], out, config, val_text=texts.get("val_text"), on_eval=report,
                       on_plan=state_plan, stop=stop, resume=None if args.resume is None else Path(args.resume))
    except BaseException:
        if made is not None:  # a run refused before writing (it would not fit) leaves no folder, nor --out's parents
            try:
                _remove_empty(out, up_to=made)
            except OSError:  # (the refusal is what to say)
                pass
        raise
    finally:
        for number, handler in handlers.items():  # (main() called in a process that goes on: a test, a notebook)
            signal.signal(number, handler)
    record_path = out / "training.json"  # the recipe: the command and the files it read
    record = json.loads(record_path.read_text())
    record.update(command=shlex.join(["python", "-m", "gpt2_core", *args.argv]), text_file=args.text,
                  val_text_file=args.val_text)
    record_path.write_text(json.dumps(record, indent=1))
    if not args.json:
        at = result.evaluations[-1].step
        goes_on = (f"--resume {out} goes on" if result.total_steps > at
                   else f"--resume {out} --steps N goes on, N more than {at}")  # stopped while its budget was timed
        stopped = f" (stopped at step {at}; {goes_on})" if result.stopped else ""
        print(f"saved to {result.directory}{stopped} (load it with --model {result.directory})")
        print(f"validation on {record['validation']}: {record['val_bits_per_character']:.2f} bits per character "
              f"(lower is better; comparable across vocabularies)")  # (it was only in training.json)
    return 0


def _print_as_written(lm: LanguageModel, prompt: str, settings: SamplingParams) -> Sample:
    """One sample printed token by token after its prompt: printed whole at the end, a long one looked hung, and
    Ctrl-C lost it. (Without stop texts a sample's text only grows; with them, or several samples, they print at the
    end.)"""
    print(prompt, end="", flush=True)
    shown, seed = "", None
    try:
        for (sample,) in lm.stream(prompt, settings):
            print(sample.text[len(shown):], end="", flush=True)
            shown, seed = sample.text, sample.seed
    except KeyboardInterrupt:  # what was printed stays, on its own lines, with the seed that wrote it
        print(flush=True)
        if seed is not None:
            print(f"[seed {seed}, interrupted]", file=sys.stderr)
        raise
    print()
    return sample


def _first_missing(folder: Path) -> Path | None:
    """The topmost of `folder` and its parents that does not exist (None if it exists)."""
    missing = None
    for path in (folder.absolute(), *folder.absolute().parents):
        if path.exists():
            return missing
        missing = path
    return missing


def _remove_empty(folder: Path, *, up_to: Path) -> None:
    """Remove `folder` and its parents up to `up_to`, each only if it is empty."""
    for path in (folder.absolute(), *folder.absolute().parents):
        if not path.is_dir() or any(path.iterdir()):
            return
        path.rmdir()
        if path == up_to:
            return


def _out_folder(args: argparse.Namespace) -> Path:
    """--out (or the resumed run's folder), made if needed: a folder that can be written and holds no model that the
    run would write over, unless --overwrite or it is the run being resumed. (`--out ''` wrote a model into the
    current folder, and `--out` of a bundled 40-minute model replaced it with a 1-step one, without a word.)"""
    if args.out is not None and not args.out.strip():
        raise ValueError("`out` has to name a folder to write the model to, but is empty")
    out = Path(args.out if args.out is not None else args.resume)
    if out.exists() and not out.is_dir():
        raise ValueError(f"`out` has to be a folder, but {str(out)!r} is a file")
    resumed_here = args.resume is not None and out.resolve() == Path(args.resume).resolve()
    if (out / "config.json").exists() and not args.overwrite and not resumed_here:
        raise ValueError(f"`out` already holds a model ({out / 'config.json'}): give another folder, or --overwrite to "
                         "write over it")
    if args.out is None:  # the resumed run's own folder: read_resume says if it is none
        return out
    try:
        out.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=out).close()  # a folder that exists may still refuse files (read-only, /proc)
    except OSError as e:
        raise ValueError(f"`out` has to be a folder that can be written, but {str(out)!r} cannot: "
                         f"{e.strerror or e}") from e
    return out


def _run(args: argparse.Namespace) -> int:
    from gpt2_core.generate.settings import SamplingParams
    from gpt2_core.lm import load_model  # imports torch: after argument errors are out of the way

    if args.command == "train":
        return _train(args)

    if args.command == "download":
        from gpt2_core.checkpoint import download

        for model in args.models:  # (a bundled name or a folder here is not fetched: the Hub has neither)
            if model in BUNDLED:
                print(f"{model}: bundled with this project, nothing to download ({BUNDLED[model]})")
            elif Path(model).expanduser().is_dir():
                print(f"{model}: a folder on this machine, nothing to download")
            else:
                print(f"{model}: {download(model)}")
        return 0

    if args.command == "generate":  # check every value before spending seconds on loading
        settings = SamplingParams(max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                                  top_k=args.top_k, top_p=args.top_p, repetition_penalty=args.repetition_penalty,
                                  seed=args.seed, num_samples=args.num_samples, stop=tuple(args.stop or ()))
        args.prompt = _read_prompt(args)
    if not args.model.strip():  # ('' read the current folder: ". has no config.json")
        raise ValueError("`model` has to be a Hub id (gpt2, distilgpt2, ...), mini-gpt2 or a folder, but is empty")
    if args.exact and (args.dtype != "auto" or args.quantize != "auto"):
        raise ValueError("--exact is fp32 without quantization: leave out --dtype and --quantize")
    dtype, quantize = ("fp32", None) if args.exact else (args.dtype, args.quantize)
    lm = load_model(args.model, device=args.device, dtype=dtype, quantize=quantize, compile=False)  # one run: no compile
    try:
        if args.command == "info":
            print(f"model       {lm.name}\nparameters  {lm.num_parameters():,}\ndevice      {lm.device}\n"
                  f"precision   {lm.precision}\nmemory      {lm.memory_bytes() / 2**20:,.1f} MiB\n"
                  f"layers      {lm.config.n_layer} x {lm.config.n_head} heads x {lm.config.n_embd} wide\n"
                  f"context     {lm.config.block_size} tokens")
            return 0
        if settings.num_samples == 1 and not settings.stop and not args.json:  # as it is written
            samples = [_print_as_written(lm, args.prompt, settings)]
        else:
            samples = lm.generate(args.prompt, **vars(settings))  # a huge prompt keeps its end (MAX_PROMPT_CHARS)
            for i, sample in enumerate(samples):
                if args.json:
                    print(json.dumps({"text": sample.text, "token_ids": sample.token_ids, "seed": sample.seed,
                                      "finish_reason": sample.finish_reason, "prompt_tokens": sample.prompt_tokens,
                                      "prompt_truncated": sample.prompt_truncated,
                                      "tokens_per_second": sample.tokens_per_second}))
                else:
                    if len(samples) > 1:
                        print(f"======== sample {i + 1} (seed {sample.seed}) ========")
                    print(args.prompt + sample.text)
        if not args.json:
            print(f"[seed {samples[0].seed}, {samples[0].finish_reason}]", file=sys.stderr)
        return 0
    finally:
        lm.close()

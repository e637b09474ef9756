"""The app's start-up settings: command-line flags, each with an environment variable for Hugging Face Spaces.

    python app.py --model gpt2-medium --port 8000
    GPT2_MODEL=gpt2-medium GRADIO_SERVER_PORT=8000 python app.py      # the same, as Spaces' settings would say it
    python app.py --backend http://gpu-box:8000                      # GPT-2 on a vLLM server (remote mode)

A flag wins over its environment variable, which wins over the default. On a ZeroGPU Space (the `spaces` package
says so: demo/zerogpu.py) training and switching the model are off whatever the flags say.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from demo import zerogpu
from gpt2_core.quantize import QUANTIZE_CHOICES
from gpt2_core.scale import SCALE_SOURCES

TRUE_WORDS = {"1", "true", "yes", "on"}
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
FALSE_WORDS = {"0", "false", "no", "off", ""}


@dataclass(frozen=True)
class AppConfig:
    model: str | None = None  # GPT-2 checkpoint: a Hub id or a local directory (None: gpt2; remote: the server's)
    backend: str | None = None  # an OpenAI-compatible server's URL (vLLM): run GPT-2 there, not here (remote mode)
    backend_api_key: str | None = field(default=None, repr=False)  # its key (env GPT2_BACKEND_API_KEY only)
    bert_model: str = "bert-base-uncased"  # BERT fill-mask checkpoint for the comparison tab (loaded on first use)
    quantize: str | None = None  # None, "int8" (on a CPU: fast int8 kernels; on a GPU: bitsandbytes) or "nf4"
    device: str = "auto"  # "auto", "cpu", "cuda", "cuda:N", "mps"
    host: str = "127.0.0.1"  # 0.0.0.0 serves other machines (Spaces sets GRADIO_SERVER_NAME=0.0.0.0)
    port: int = 7860
    share: bool = False  # a temporary public gradio.live link
    queue_size: int = 64  # requests that may wait for a free slot; the next one is told the demo is busy
    deadline_s: float = 120.0  # a generation ends by then ("took too long"), however many tokens it asked for
    compile: bool | None = None  # compile the decode step in the background (~2x tokens/s, +1-2.5 GB); None: where
    # it pays and the memory allows (CPU int8, gpt2_core/precision.py)
    exact: bool = False  # the exact fp32 engine, proven equal to transformers, instead of a CPU's fast int8
    allow_model_switch: bool | None = None  # visitors may switch the model; None = only when serving this machine
    allow_training: bool | None = None  # the Build your own tab trains; None = only when serving this machine
    scale_models: tuple[str, ...] = SCALE_SOURCES  # what the Scale tab runs, where their files are here
    scale_memory_gb: float | None = None  # the Scale tab's memory budget per model; None = a third of this machine's
    zero_gpu: bool = False  # a ZeroGPU Space, as the `spaces` package reports: GPT-2 on cuda, each call in spaces.GPU
    threads: int | None = None  # PyTorch's CPU threads; None: `cpu_threads` decides

    @property
    def source(self) -> str:
        """The GPT-2 checkpoint to load here (local mode)."""
        return self.model or "gpt2"

    @property
    def scale_budget_bytes(self) -> int:
        if self.scale_memory_gb is not None:
            return int(self.scale_memory_gb * 1e9)
        return memory_limit_bytes() // 3

    @property
    def public(self) -> bool:
        """Served to other machines (--host 0.0.0.0, Spaces, a share link): its visitors are not this host's owner."""
        return self.host not in LOCAL_HOSTS or self.share

    @property
    def model_switch_allowed(self) -> bool:
        """Switching the model is for a teacher at their own machine: on when only this machine is served, off when
        others are (--host 0.0.0.0, Spaces), unless --allow-model-switch / GPT2_ALLOW_MODEL_SWITCH says otherwise."""
        if self.zero_gpu:  # a model loaded after start-up cannot go to ZeroGPU's GPU
            return False
        if self.allow_model_switch is not None:
            return self.allow_model_switch
        return self.host in LOCAL_HOSTS

    @property
    def training_allowed(self) -> bool:
        """Training takes the processor for minutes: on for a teacher's own machine, off for a room or Spaces unless
        --allow-training / GPT2_ALLOW_TRAINING says otherwise. Never on ZeroGPU, whose GPU time comes from the
        visitors' small daily quotas."""
        if self.zero_gpu:
            return False
        return self.allow_training if self.allow_training is not None else self.host in LOCAL_HOSTS

    def cpu_threads(self, cores: int, env: Mapping[str, str] | None = None) -> int | None:
        """PyTorch's CPU threads for this app given the `cores` PyTorch would use (None: leave PyTorch's choice).

        --threads / GPT2_THREADS, else OMP_NUM_THREADS as the host set it, else one thread a core, less one where the
        page is read in a browser on this machine (served to 127.0.0.1 only). Each decode step splits every layer
        between the threads and waits for the last of them; the browser redraws the coloured text about 20 times a
        second and takes a core meanwhile, so one thread of the engine often waited for it: on 2 cores the page wrote
        gpt2's shape at 36 tok/s on 2 threads, 52 on 1 (benchmarks/bench_page.py). Served to other machines (Spaces, a
        classroom's network), the browsers are elsewhere and every core decodes."""
        env = os.environ if env is None else env
        if self.threads is not None:
            return self.threads
        if env.get("OMP_NUM_THREADS") or self.public or cores < 2:
            return None
        return cores - 1

    @classmethod
    def from_env_and_args(cls, argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> AppConfig:
        """Read flags from `argv` (default: none) over environment variables from `env` (default: os.environ)."""
        env = os.environ if env is None else env
        zero_gpu = zerogpu.reported()  # first: on ZeroGPU, importing `spaces` must come before any model loads
        parser = build_parser(env)
        args = parser.parse_args(list(argv or []))
        if args.quantize not in (None, *QUANTIZE_CHOICES):  # argparse checks choices of flags, not of defaults
            parser.error(f"GPT2_QUANTIZE has to be one of {', '.join(QUANTIZE_CHOICES)}, but is {args.quantize!r}")
        for name, variable in (("share", "GPT2_SHARE"), ("compile", "GPT2_COMPILE"), ("exact", "GPT2_EXACT"),
                               ("allow_model_switch", "GPT2_ALLOW_MODEL_SWITCH"),
                               ("allow_training", "GPT2_ALLOW_TRAINING")):
            value = getattr(args, name)
            if isinstance(value, str):  # from the environment (a flag gives a bool)
                try:
                    setattr(args, name, truthy(variable, value) if value else getattr(cls, name))
                except ValueError as e:
                    parser.error(str(e))
        if args.exact and args.quantize:
            parser.error("--exact (GPT2_EXACT) is fp32 without quantization: leave out --quantize (GPT2_QUANTIZE)")
        return cls(model=args.model, backend=args.backend or None,
                   backend_api_key=env.get("GPT2_BACKEND_API_KEY") or None,  # a secret: never a flag (ps shows flags)
                   bert_model=args.bert_model, quantize=args.quantize,
                   device=args.device,
                   host=args.host, port=args.port, share=args.share, queue_size=args.queue_size,
                   deadline_s=args.deadline, compile=args.compile, exact=args.exact,
                   allow_model_switch=args.allow_model_switch,
                   allow_training=args.allow_training, scale_models=args.scale_models,
                   scale_memory_gb=args.scale_memory, zero_gpu=zero_gpu, threads=args.threads)

    def launch_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `gr.Blocks.launch`. gr.Error messages reach the page; other errors stay generic."""
        return dict(server_name=self.host, server_port=self.port, share=self.share, show_error=False)


def memory_limit_bytes() -> int:
    """This machine's memory, or the container's limit where one is set (cgroup v2, as on Spaces), whichever is less."""
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
    except OSError:
        return physical
    return min(physical, int(limit)) if limit.isdigit() else physical


def build_parser(env: Mapping[str, str]) -> argparse.ArgumentParser:
    d = AppConfig()

    def first(*names: str, default: Any) -> Any:
        return next((env[name] for name in names if env.get(name)), default)

    parser = argparse.ArgumentParser(prog="app.py", description="GPT-2 Playground: a browser demo of GPT-2.")
    parser.add_argument("--model", default=first("GPT2_MODEL", default=d.model),
                        help="GPT-2 Hub id or local directory (env GPT2_MODEL; default gpt2). With --backend: the "
                             "server's model name, also where its tokenizer comes from (default: the server's only "
                             "model)")
    parser.add_argument("--backend", metavar="URL", type=backend_url, default=first("GPT2_BACKEND", default=d.backend),
                        help="run GPT-2 on an OpenAI-compatible completions server such as vLLM, e.g. "
                             "http://localhost:8000 (env GPT2_BACKEND; a server started with --api-key takes its key "
                             "from env GPT2_BACKEND_API_KEY; default: run GPT-2 here)")
    parser.add_argument("--bert-model", default=first("BERT_MODEL", default=d.bert_model),
                        help="BERT Hub id or local directory for the comparison tab (env BERT_MODEL)")
    parser.add_argument("--quantize", choices=QUANTIZE_CHOICES, default=first("GPT2_QUANTIZE", default=d.quantize),
                        help="int8: on a CPU, int8 weights (the default there: several times faster, a quarter of the "
                             "memory); on a GPU, bitsandbytes LLM.int8 to fit a bigger model. nf4: bitsandbytes 4-bit "
                             "(env GPT2_QUANTIZE)")
    parser.add_argument("--device", default=first("GPT2_DEVICE", default=d.device),
                        help="auto, cpu, cuda, cuda:N or mps (env GPT2_DEVICE; default %(default)s)")
    parser.add_argument("--host", default=first("GRADIO_SERVER_NAME", "HOST", default=d.host),
                        help="address to serve on (env GRADIO_SERVER_NAME or HOST; default %(default)s)")
    parser.add_argument("--port", type=port_number, default=first("GRADIO_SERVER_PORT", "PORT", default=d.port),
                        help="port to serve on (env GRADIO_SERVER_PORT or PORT; default %(default)s)")
    parser.add_argument("--share", action=argparse.BooleanOptionalAction,
                        default=first("GPT2_SHARE", default=""),  # text until checked in from_env_and_args
                        help="create a temporary public gradio.live link (env GPT2_SHARE=1; default off)")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction,
                        default=first("GPT2_COMPILE", default=""),  # text until checked in from_env_and_args
                        help="compile the decoding step in the background once the page is up: about 2x faster for "
                             "a lone request after 15-60 s, for 1-2.5 GB more memory (env GPT2_COMPILE=1/0; default: "
                             "on a CPU for int8 models from distilgpt2 up, when the memory is free)")
    parser.add_argument("--exact", action=argparse.BooleanOptionalAction,
                        default=first("GPT2_EXACT", default=""),  # text until checked in from_env_and_args
                        help="serve the exact fp32 engine, proven equal to transformers, instead of a CPU's default "
                             "int8 weights (the same next word as fp32 at 97%% of places, about 4x faster; env "
                             "GPT2_EXACT=1; default off)")
    parser.add_argument("--allow-model-switch", action=argparse.BooleanOptionalAction,
                        default=first("GPT2_ALLOW_MODEL_SWITCH", default=""),  # text until checked
                        help="let visitors switch the model for everyone (env GPT2_ALLOW_MODEL_SWITCH=1/0; default: "
                             "on when serving 127.0.0.1 only, off when serving other machines)")
    parser.add_argument("--allow-training", action=argparse.BooleanOptionalAction,
                        default=first("GPT2_ALLOW_TRAINING", default=""),  # text until checked
                        help="let visitors train models in the Build your own tab (env GPT2_ALLOW_TRAINING=1/0; "
                             "default: on when serving 127.0.0.1 only)")
    parser.add_argument("--queue-size", type=bounded(int, "queue_size", 1, 10_000),
                        default=first("GPT2_QUEUE_SIZE", default=d.queue_size),
                        help="requests that may wait for a free slot before users are told the demo is busy "
                             "(env GPT2_QUEUE_SIZE; default %(default)s)")
    parser.add_argument("--deadline", type=bounded(float, "deadline", 1, 3600),
                        default=first("GPT2_DEADLINE_S", default=d.deadline_s),
                        help="seconds after which a generation is stopped (env GPT2_DEADLINE_S; default %(default)s)")
    parser.add_argument("--scale-models", type=model_list, default=first("GPT2_SCALE_MODELS", default=d.scale_models),
                        help="comma-separated models the Scale tab runs side by side, where their files are on this "
                             "machine (env GPT2_SCALE_MODELS; default " + ",".join(d.scale_models) + ")")
    parser.add_argument("--scale-memory", type=bounded(float, "scale_memory", 0.01, 10_000),
                        default=first("GPT2_SCALE_MEMORY", default=d.scale_memory_gb),
                        help="GB of weights the Scale tab may load at once (one model at a time; larger ones are "
                             "listed as skipped); env GPT2_SCALE_MEMORY; default a third of this machine's memory")
    parser.add_argument("--threads", type=bounded(int, "threads", 1, 1024),
                        default=first("GPT2_THREADS", default=d.threads),
                        help="PyTorch's CPU threads (env GPT2_THREADS; default: one a core, less one when serving "
                             "127.0.0.1 only, for the browser on this machine; OMP_NUM_THREADS where it is set)")
    return parser


def backend_url(text: str | None) -> str | None:
    if text is None:
        return None
    if not text.startswith(("http://", "https://")):
        raise argparse.ArgumentTypeError(f"`backend` has to be a URL starting with http:// or https://, such as "
                                          f"http://localhost:8000, but is {text!r}")
    return text.rstrip("/")


def model_list(text: str | tuple) -> tuple[str, ...]:
    if isinstance(text, tuple):
        return text
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    if not 1 <= len(names) <= 8:
        raise argparse.ArgumentTypeError(f"`scale_models` has to name 1 to 8 models, separated by commas, but is {text!r}")
    return names


def bounded(kind: type, name: str, low: float, high: float) -> Callable[[str], Any]:
    """An argparse type: `kind` (int or float) in [low, high], with a message naming the setting."""
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not math.isfinite(value) or not low <= value <= high:
            what = "an integer" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"`{name}` has to be {what} in [{low:g}, {high:g}], but is {text!r}")
        return value

    return parse


def port_number(text: str | int) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 < port < 65536:
        raise argparse.ArgumentTypeError(f"`port` has to be an integer in [1, 65535], but is {text!r}")
    return port


def truthy(name: str, text: str) -> bool:
    word = text.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ValueError(f"`{name}` has to be one of {sorted(TRUE_WORDS | FALSE_WORDS - {''})}, but is {text!r}")

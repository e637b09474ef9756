"""Helpers for the app's tests: a tiny BERT checkpoint, a slowed-down GPT-2, the demo served on a free port, polling.

The tiny BERT is built like conftest's GPT-2 checkpoints: random weights through transformers'
BertForMaskedLM.save_pretrained (safetensors) and a WordPiece vocab.txt of a few hundred plain words.
The fixtures that use these live in fixtures_ui.py.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
PIECES = [".", ",", "'", "!", "?", "-", "##s", "##ed", "##ing", "##ly", "##er"]
WORDS = """
the a an and or but of to in on at by for with from up down over under after before about into out off
dog dogs cat cats bird birds fish horse cow pig sheep mouse mice lion tiger bear wolf fox duck hen owl
man woman boy girl child children baby mother father sister brother friend teacher doctor farmer king queen
mailman neighbor neighbour student driver police nurse cook baker pilot
barked meowed sang flew ran jumped walked swam ate drank slept woke cried laughed smiled shouted called
is was are were be been has have had do did does will would can could should may might must
morning evening night day week year today tomorrow yesterday hour minute time noon
house home school street park garden road city town village farm forest river sea lake mountain hill
water milk juice tea coffee wine beer soup bread cake pie apple apples orange banana rice meat egg eggs
glass cup plate bowl bottle table chair bed door window wall floor roof car bus train boat plane bike
shoes shoe boots socks hat coat shirt dress gloves jacket
teeth hair hands feet face eyes nose mouth head arm leg
brush wash clean open close read write sing play eat drink sleep walk run swim fly drive cook
big small old new good bad happy sad hot cold long short red blue green black white loud quiet
all some many few every each no not very too so then there here this that these those it he she we they
i you me him her us them my your his its our their who what where when why how which
branch tree trees flower flowers grass leaf leaves sky sun moon star rain snow wind cloud
book books letter letters paper pen phone computer music song songs game games ball
first last next one two three four five ten hundred
long hike breakfast lunch dinner sore rubbed took poured put let fresh air
""".split()


def tiny_bert_vocab() -> list[str]:
    return SPECIAL_TOKENS + PIECES + sorted(set(WORDS))


def save_tiny_bert(directory: Path, seed: int = 0) -> Path:
    from transformers import BertConfig, BertForMaskedLM

    directory.mkdir(parents=True, exist_ok=True)
    vocab = tiny_bert_vocab()
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128,
                        initializer_range=0.5)  # peaky enough that the bars differ
    BertForMaskedLM(config).eval().save_pretrained(directory)
    return directory


def slow_down(lm, delay: float):
    """Make every decode step of `lm`'s engine take at least `delay` seconds, so streaming and Stop can be watched."""
    decode = lm.engine.decode

    def slow_decode(*args, **kwargs):
        time.sleep(delay)
        return decode(*args, **kwargs)

    lm.engine.use(slow_decode, lm.engine.decoding)  # only this loaded model is slowed
    return lm


def as_toast(message: str) -> str:
    """`message` as a toast shows it: the page draws the parameter's name it begins with as code, without its
    backticks (errors.TOAST_CODE_JS); the rest stays as written."""
    return re.sub(r"^`([A-Za-z_][A-Za-z0-9_]*)`", r"\1", message)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class RunningApp:
    url: str
    models: object  # demo.AppModels
    demo: object = None  # demo.app.Playground, as launched


@contextmanager
def launched_app(gpt2_dir: Path | str, bert_dir: Path, *, delay: float = 0.0, load_gpt2: Callable | None = None,
                 remote: Callable | None = None, lend: Callable | None = None,
                 **config_fields) -> Iterator[RunningApp]:
    """Build the real demo on tiny checkpoints and serve it on a free port until the block ends.

    `config_fields` are further AppConfig fields (queue_size, deadline_s, ...); `lend` stands in for spaces.GPU when
    they say zero_gpu=True.
    """
    from demo import AppConfig, build_demo, launch_options, start_models
    from gpt2_core import load_model

    def load_slow(source, **kwargs):
        return slow_down(load_model(source, **kwargs), delay)

    config = AppConfig(model=str(gpt2_dir), bert_model=str(bert_dir), **{"device": "cpu", **config_fields})
    models = start_models(config, load_gpt2=load_gpt2 or (load_slow if delay else load_model),
                          **({"remote": remote} if remote else {}),  # with config_fields' backend: remote mode
                          **({"lend": lend} if lend else {}))
    assert models.gpt2.error is None, models.gpt2.error
    demo = build_demo(config, models=models)
    demo.launch(prevent_thread_lock=True, server_port=free_port(), quiet=True, **launch_options())
    try:
        yield RunningApp(demo.local_url, models, demo)
    finally:
        demo.close()
        models.close()


def wait_until(condition: Callable[[], object], timeout: float = 10.0, interval: float = 0.02, message: str = ""):
    """Poll `condition` until it returns something truthy (and return that); fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {message or condition}")
        time.sleep(interval)

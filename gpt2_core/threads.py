"""Running PyTorch's CPU work on a thread that ends with it, so that no OpenMP pool outlives the work.

PyTorch's CPU kernels split their work with OpenMP, and GNU OpenMP (libgomp, in PyTorch's Linux wheels) keeps a pool
of worker threads for every thread that ran such a kernel, for as long as that thread lives. Once the pools hold
more threads than the CPU has cores, libgomp stops spinning idle workers between kernels and puts them to sleep, so
every kernel of the engine's decode step (on the engine's own thread) then waits for its workers to wake up.

Work done on a caller's thread, and so left behind as a pool, slowed every later token. Measured on gpt2 int8
compiled, 2 cores (README, Performance): 9.3 ms a token with the model loaded on the main thread, 5.6 ms loaded on a
thread that ended; and 5.9 ms a token before an explanation (Next word, attention) on a long-lived worker thread, as
a web server's are, 9.8 ms after it while that thread lived, 5.8 ms once it had ended.

So loading a model and the explanations run on a thread of their own, which costs a thread's start (tens of
microseconds) per call, and an idle engine ends its thread (generate/engine.py, IDLE_S).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import torch

P = ParamSpec("P")
T = TypeVar("T")


def on_a_thread_that_ends(function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """function(*args, **kwargs) run on a new thread, which ends when it returns: its result, or its exception
    raised here."""
    results: list[T] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(function(*args, **kwargs))
        except BaseException as e:  # (handed to the caller, whatever it is)
            errors.append(e)

    thread = threading.Thread(target=run, name=f"gpt2-{function.__name__}", daemon=True)  # (Ctrl+C still exits)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return results[0]


def ends_its_thread(function: Callable[P, T]) -> Callable[P, T]:
    """A decorator: each call of `function` runs on_a_thread_that_ends."""
    @functools.wraps(function)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        return on_a_thread_that_ends(function, *args, **kwargs)

    return wrapper


def cpu_threads() -> int:
    """The threads PyTorch's CPU kernels split their work between (OMP_NUM_THREADS, else one a core)."""
    return torch.get_num_threads()


def use_cpu_threads(threads: int) -> None:
    """Split PyTorch's CPU work between `threads` threads, before a model loads: a compiled CPU graph keeps the count
    it was compiled with."""
    torch.set_num_threads(threads)

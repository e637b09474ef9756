"""ZeroGPU hosting, the app's side: whether this is a Hugging Face Space on ZeroGPU hardware, as the `spaces` package
reports it, and that package's `@spaces.GPU` decorator.

There (AppConfig.zero_gpu), GPT-2 is loaded on `cuda` at start-up and served by gpt2_core's ZeroGpuBackend, which
runs every model call inside a `spaces.GPU` call asking for a duration computed from the request
(gpt2_core/zerogpu.py; demo/models.py `start_zero_gpu`). Training, the Scale tab and switching the model are off,
and BERT runs on the CPU. deploy/spaces-README.md has the recipe.

`spaces` is imported here only, and only where it is installed: a ZeroGPU Space has it; elsewhere its decorator does
nothing, and the app runs as usual. On ZeroGPU, importing it sets up its emulation of CUDA, in which `.to("cuda")`
keeps the weights aside until a call is lent the GPU. So it has to be imported before any model loads:
AppConfig.from_env_and_args asks `reported()` first.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


def reported() -> bool:
    """Whether the `spaces` package says that this app runs on ZeroGPU (False where it is not installed)."""
    try:
        import spaces  # noqa: F401 (on ZeroGPU, the import itself sets up the CUDA emulation)
        from spaces.config import Config
    except ImportError:
        return False
    return bool(Config.zero_gpu)


def spaces_lend(fn: Callable[..., Any], duration: Callable[..., int]) -> Callable[..., Any]:
    """`fn` as a ZeroGPU task: `spaces.GPU(duration=duration)(fn)`, each call asking for `duration(*its arguments)`
    seconds of GPU (gpt2_core.zerogpu.Lend). Off ZeroGPU the package returns `fn` itself."""
    import spaces

    return spaces.GPU(duration=duration)(fn)

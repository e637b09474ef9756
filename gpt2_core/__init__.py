"""gpt2_core: OpenAI's GPT-2 as a small, readable PyTorch package: load any GPT-2 checkpoint, sample from it, stream it.

    from gpt2_core import load_model
    lm = load_model("gpt2")
    print(lm.generate("In a shocking finding,", max_new_tokens=40, seed=42)[0].text)
"""

from gpt2_core.checkpoint import ModelUnavailableError, UnsafeCheckpointError
from gpt2_core.config import PRESETS, GPTConfig
from gpt2_core.generate.settings import DEFAULTS, GenerationSettings, SamplingParams
from gpt2_core.lm import LanguageModel, Sample, TextModel, load_model

__all__ = [
    "DEFAULTS",
    "PRESETS",
    "SamplingParams",
    "GPTConfig",
    "GenerationSettings",  # = SamplingParams, its earlier name
    "LanguageModel",
    "ModelUnavailableError",
    "Sample",
    "TextModel",
    "UnsafeCheckpointError",
    "load_model",
]

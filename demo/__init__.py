"""The browser demo: a Gradio app on top of gpt2_core (it calls gpt2_core only and never touches tensors)."""

from demo.app import build_demo, launch_options, startup_message, use_cpu_threads
from demo.config import AppConfig
from demo.models import AppModels, start_models

__all__ = ["AppConfig", "AppModels", "build_demo", "launch_options", "start_models", "startup_message",
           "use_cpu_threads"]

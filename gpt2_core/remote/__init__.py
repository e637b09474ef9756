"""GPT-2 on a model server that speaks OpenAI's completions API (vLLM): see model.py."""

from gpt2_core.remote.client import BackendAuthError, BackendRequestError, BackendUnavailableError, CompletionsClient
from gpt2_core.remote.model import RemoteModel

__all__ = ["BackendAuthError", "BackendRequestError", "BackendUnavailableError", "CompletionsClient", "RemoteModel"]

"""Test-only helpers (kept apart from the engine): random-weight GPT-2 checkpoints in the real file layouts."""

from gpt2_core.testing.checkpoints import add_tokenizer, gpt2_tokenizer_files, random_checkpoint, random_hf_model, save_layout

__all__ = ["add_tokenizer", "gpt2_tokenizer_files", "random_checkpoint", "random_hf_model", "save_layout"]

"""Why GPT-2 chose each word: every token of a text scored (scoring.py), the next token's distribution before and after
the sampling settings (distribution.py)."""

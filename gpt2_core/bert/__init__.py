"""BERT beside GPT-2, for the comparison tab: BERT's fill-mask (fill_mask.py) and the comparison itself (compare.py)."""

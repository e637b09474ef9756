"""Training a GPT-2: from scratch (a small config and a BPE vocabulary trained on the text) or fine-tuning a loaded one.

`data.py` turns a text into token batches (train and held-out validation), `bpe.py` trains a byte-level BPE vocabulary
in GPT-2's format, `loop.py` is the training loop; the result is a directory `load_model` reads.
"""

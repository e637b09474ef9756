"""Generating text: the settings and their checks, the sampler, the batching engine, compiled decoding, detokenizing."""

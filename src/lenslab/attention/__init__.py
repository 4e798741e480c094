"""The attention lab: capture, head taxonomy, paraphrase stability, attribution."""

from lenslab.attention.capture import GPTLens, HFLens, LensModel, Tokens, load_lens

__all__ = ["GPTLens", "HFLens", "LensModel", "Tokens", "load_lens"]

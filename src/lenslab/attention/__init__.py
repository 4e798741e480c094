"""The attention lab: capture, head taxonomy, paraphrase stability, attribution, the viewer.

Other labs use these names only (never the lab's modules): a model as a :class:`LensModel`,
and the prompt battery and per-head scores of the taxonomy.
"""

from lenslab.attention.capture import GPTLens, HFLens, LensModel, Tokens, load_lens
from lenslab.attention.classes import HeadClass
from lenslab.attention.heads import random_battery, score_battery

__all__ = ["GPTLens", "HFLens", "LensModel", "Tokens", "load_lens", "HeadClass",
           "random_battery", "score_battery"]

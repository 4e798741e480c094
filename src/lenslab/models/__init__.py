"""The model zoo: own GPT, LSTM baseline, one-layer linear self-attention (in-context regression).

Hugging Face models are reached through the attention lab's lens
(:func:`lenslab.attention.capture.load_lens`), which loads them with eager attention."""

from __future__ import annotations

import torch.nn as nn

from lenslab.config import GPTConfig, LSAConfig, LSTMConfig
from lenslab.models.gpt import GPT
from lenslab.models.lsa import LinearSelfAttention
from lenslab.models.lstm import LSTM

__all__ = ["GPT", "LSTM", "LinearSelfAttention", "build_model"]


def build_model(cfg: GPTConfig | LSTMConfig | LSAConfig) -> nn.Module:
    """Build a freshly initialised model (initialisation uses torch's global RNG: seed first)."""
    if isinstance(cfg, GPTConfig):
        return GPT(cfg)
    if isinstance(cfg, LSTMConfig):
        return LSTM(cfg)
    if isinstance(cfg, LSAConfig):
        return LinearSelfAttention(cfg)
    raise TypeError(f"unknown model config {type(cfg).__name__}")

"""LSTM language model: the baseline trained by the same trainer on the same data.

Same interface as :class:`~lenslab.models.gpt.GPT` (``ids [B, T] -> logits [B, T, vocab]``,
``num_params``), so the trainer, metrics and per-position analyses never branch on model type.
It has no attention, so attention analyses refuse it with a clear error.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from lenslab.config import LSTMConfig
from lenslab.errors import ModelError


class LSTM(nn.Module):
    def __init__(self, cfg: LSTMConfig):
        super().__init__()
        if cfg.vocab_size is None:
            raise ModelError("LSTM needs model.vocab_size (set it, or let the task fill it in)")
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)
        self.lstm = nn.LSTM(
            cfg.d_model,
            cfg.d_model,
            num_layers=cfg.n_layer,
            batch_first=True,
            dropout=cfg.dropout if cfg.n_layer > 1 else 0.0,
        )
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.tok_emb.weight
        nn.init.normal_(self.tok_emb.weight, std=0.02)
        if not cfg.tie_embeddings:
            nn.init.normal_(self.lm_head.weight, std=0.02)

    @property
    def n_ctx(self) -> int:
        return self.cfg.n_ctx

    def num_params(self, non_embedding: bool = True) -> int:
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= self.tok_emb.weight.numel()
        return n

    def forward(self, idx: torch.Tensor, attn_hook=None, head_scale=None) -> torch.Tensor:
        if attn_hook is not None or head_scale is not None:
            raise ModelError("an LSTM has no attention heads to capture or ablate")
        if idx.shape[1] > self.cfg.n_ctx:
            raise ModelError(
                f"input has {idx.shape[1]} tokens but the run's context is {self.cfg.n_ctx}"
            )
        h, _ = self.lstm(self.drop(self.tok_emb(idx)))  # [B, T, D]
        return self.lm_head(self.ln_f(self.drop(h)))

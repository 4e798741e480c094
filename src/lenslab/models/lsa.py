"""One layer of linear self-attention, the model of von Oswald et al. 2023.

Tokens are ``e_i = (x_i, y_i)`` of width ``D = d + 1``; the last token is the query
``e_q = (x_q, 0)``. Each head ``h`` has four ``[D, D]`` matrices ``W_Q, W_K, W_V, P`` and updates
every token with a softmax-free attention over the *context* tokens (all but the last):

    e_j <- e_j + sum_h P_h W_V,h (1/N sum_{i<N} e_i e_i^T) W_K,h^T W_Q,h e_j

The prediction for token j is its updated last (y) coordinate. With
``W_K^T W_Q = [[I, 0], [0, 0]]`` and ``P W_V = [[0, 0], [0, eta]]`` this is exactly one step of
gradient descent on the in-context loss ``1/(2N) sum_i (w.x_i - y_i)^2`` started at ``w = 0``
with step size ``eta``: ``y_hat = eta / N sum_i y_i x_i . x_q`` (von Oswald et al.'s construction;
they read out ``-y`` with the opposite sign of ``P``). The context average (``1/N``) makes the
layer act the same way for any number of context tokens.

The forward pass returns ``[B, T, 1]`` (one prediction per token) so the same trainer and
squared-error loss as the GPT read-out variant apply; the task scores only the query.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from lenslab.config import LSAConfig
from lenslab.errors import ModelError


class LinearSelfAttention(nn.Module):
    """``[B, T, D] -> [B, T, 1]``: the y coordinate of each token after one LSA layer."""

    def __init__(self, cfg: LSAConfig):
        super().__init__()
        if cfg.d_in is None:
            raise ModelError("the lsa model needs model.d_in (set it, or let the task fill it in)")
        if cfg.d_in < 2:
            raise ModelError(f"model.d_in ({cfg.d_in}) must be at least 2: tokens are (x, y)")
        self.cfg = cfg
        D, H = cfg.d_in, cfg.n_head
        self.w_q = nn.Parameter(torch.randn(H, D, D) * cfg.init_std)  # [head, D, D]
        self.w_k = nn.Parameter(torch.randn(H, D, D) * cfg.init_std)
        self.w_v = nn.Parameter(torch.randn(H, D, D) * cfg.init_std)
        self.p = nn.Parameter(torch.randn(H, D, D) * cfg.init_std)

    @property
    def n_layer(self) -> int:
        return 1

    @property
    def n_head(self) -> int:
        return self.cfg.n_head

    def num_params(self, non_embedding: bool = True) -> int:
        """Parameter count (there are no embeddings: ``non_embedding`` changes nothing)."""
        return sum(p.numel() for p in self.parameters())

    def update(self, e: torch.Tensor) -> torch.Tensor:
        """The residual update ``[B, T, D]`` that the layer adds to every token ``e [B, T, D]``."""
        if e.dim() != 3 or e.shape[-1] != self.cfg.d_in:
            raise ModelError(f"the lsa model reads tokens [batch, T, {self.cfg.d_in}], not a "
                             f"tensor of shape {list(e.shape)}")
        if e.shape[1] < 2:
            raise ModelError("the lsa model needs at least one context token before the query")
        e = e.to(self.w_q.dtype)
        ctx = e[:, :-1]  # [B, N, D] context tokens (the query is not a key or value)
        cov = ctx.transpose(1, 2) @ ctx / ctx.shape[1]  # [B, D, D] = mean_i e_i e_i^T
        # per head: P W_V cov W_K^T W_Q e_j, for every token j
        pv = self.p @ self.w_v  # [H, D, D]
        kq = self.w_k.transpose(1, 2) @ self.w_q  # [H, D, D]
        m = torch.einsum("hab,nbc,hcd->nad", pv, cov, kq)  # [B, D, D], summed over heads
        return e @ m.transpose(1, 2)  # [B, T, D]

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        """Predictions ``[B, T, 1]``: the last coordinate of ``e + update(e)``."""
        out = e.to(self.w_q.dtype) + self.update(e)
        return out[..., -1:]

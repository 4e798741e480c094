"""Clipping done right: one global norm over every gradient, after unscaling, once per step."""

from __future__ import annotations

import torch


def clip_global_norm(params: list[torch.Tensor], max_norm: float) -> torch.Tensor:
    """Global L2 norm of all gradients (before clipping); clips in place when ``max_norm > 0``.

    Called exactly once per optimizer step, after unscaling. A non-finite norm is returned
    unclipped (the guard skips that step anyway; clipping would only spread the NaN).
    """
    if not params:
        return torch.zeros(())
    norm = torch.nn.utils.get_total_norm([p.grad for p in params], norm_type=2.0, foreach=True)
    if max_norm > 0 and torch.isfinite(norm):
        torch.nn.utils.clip_grads_with_norm_(params, max_norm, norm, foreach=True)
    return norm

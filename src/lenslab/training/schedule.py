"""Learning-rate schedule as a pure function of the step.

The trainer sets ``lr = lr_at(step) * guard.lr_scale`` on every param group before every step, so
there is no scheduler object whose state could disagree with the step counter, and an LR backoff
applies immediately, also right after an optimizer state (which carries its own ``lr``) is loaded.
"""

from __future__ import annotations

import math

from lenslab.config import OptimConfig


def lr_at(step: int, cfg: OptimConfig, max_steps: int) -> float:
    """Linear warmup from ``lr / warmup`` to ``lr``, then constant or cosine to ``lr * min_lr_ratio``."""
    if cfg.warmup_steps > 0 and step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return cfg.lr
    span = max(max_steps - cfg.warmup_steps, 1)
    progress = min(max(step - cfg.warmup_steps, 0) / span, 1.0)
    floor = cfg.lr * cfg.min_lr_ratio
    return floor + 0.5 * (cfg.lr - floor) * (1.0 + math.cos(math.pi * progress))

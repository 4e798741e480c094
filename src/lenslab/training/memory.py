"""Will a run fit in memory? An estimate made from the config alone, before anything is built.

A model or batch far too large for the machine used to end in an allocator's traceback (or,
with a million layers, after half a minute of building modules). :func:`check_memory` refuses it
in a moment with the estimate, which is deliberately coarse: parameters with their gradients
and AdamW's two moments in float32 (16 bytes each), and activations per layer after Korthikanti
et al. 2022 (``s b h (34 + 5 a s / h)`` bytes in 16-bit precision, doubled for float32). Only a
run that clearly cannot fit is refused; ``memory_check=False`` (``--no-memory-check``) skips it.
"""

from __future__ import annotations

import os
from typing import Any, Optional

from lenslab.config import GPTConfig, LSAConfig, LSTMConfig, RunConfig
from lenslab.errors import ConfigError

GiB = 2**30


def estimate(cfg: RunConfig) -> dict[str, float]:
    """``{"params": P, "state_bytes": ..., "activation_bytes": ...}`` for one training step."""
    m, d = cfg.model, cfg.data
    vocab = getattr(m, "vocab_size", None) or getattr(d, "vocab_size", None) or 1024
    B = cfg.optim.batch_size // max(cfg.optim.grad_accum, 1) or 1
    T = getattr(d, "seq_len", None) or getattr(m, "n_ctx", 256)
    if isinstance(m, GPTConfig):
        dm, L, H = m.d_model, m.n_layer, m.n_head
        mlp = m.d_mlp or 4 * dm
        params = L * (4 * dm * dm + 2 * dm * mlp + 13 * dm) + vocab * dm * 2 + m.n_ctx * dm
        act = 2 * L * B * T * (34 * dm + 5 * H * T)
    elif isinstance(m, LSTMConfig):
        dm, L = m.d_model, m.n_layer
        params = L * 8 * (dm * dm + dm) + 2 * vocab * dm
        act = 4 * L * B * T * dm * 12
    elif isinstance(m, LSAConfig):
        params, act = 16 * 64 * 64, 4 * B * T * 64
    else:  # pragma: no cover - every model kind is above
        return {"params": 0.0, "state_bytes": 0.0, "activation_bytes": 0.0}
    return {"params": float(params), "state_bytes": 16.0 * params,
            "activation_bytes": float(act + 4 * B * T * vocab * 3)}


def available_bytes(device: str = "cpu") -> Optional[float]:
    """Memory this process may still use on ``device`` (None when it cannot be told)."""
    if device.startswith("cuda"):
        import torch  # only a CUDA run asks the GPU

        if torch.cuda.is_available():
            idx = int(device.split(":")[1]) if ":" in device else 0
            return float(torch.cuda.mem_get_info(idx)[0])
        return None
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return float(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(cfg: RunConfig, device: str = "cpu") -> dict[str, Any]:
    """Refuse, with the estimate, a run whose model and one step need more memory than
    ``device`` has available; returns the estimate otherwise."""
    est = estimate(cfg)
    need = est["state_bytes"] + est["activation_bytes"]
    have = available_bytes(device)
    if have is not None and need > have:
        raise ConfigError(
            f"the model and one training step need about {need / GiB:,.1f} GiB "
            f"({est['params']:.3g} parameters with gradients and optimizer state: "
            f"{est['state_bytes'] / GiB:,.1f} GiB; activations: {est['activation_bytes'] / GiB:,.1f} "
            f"GiB) but {device} has {have / GiB:,.1f} GiB available; make the model or the batch "
            "smaller (optim.grad_accum splits a batch), or pass --no-memory-check to try anyway")
    return est

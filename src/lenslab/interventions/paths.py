"""Path patching.

**Path patching** (Wang et al. 2023; Goldowsky-Dill et al. 2023) measures a composition
between heads instead of assuming it: the *sender* head's clean output is allowed to reach the
*receivers* through one input only, their queries, keys or values. The receivers' inputs are
recomputed from the corrupted residual stream plus the change in the sender's own write (no
other component's), only the chosen input (``via``) is swapped in, and everything else runs
corrupted. The effect is normalised like activation patching (0 corrupted, 1 clean), with a
bootstrap interval over prompt pairs and the same two nulls: the sender's change taken between
two clean prompts with the same answer, and a random direction of the same norm.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from lenslab.errors import DataError
from lenslab.html import badge, escape, table_html
from lenslab.interventions.patching import (
    Prompts,
    _head_out,
    _random_like,
    answer_logprob,
    cache,
)
from lenslab.result import Result

VIA = ("q", "k", "v")


@torch.no_grad()
def _through(model, target: torch.Tensor, answer: torch.Tensor, resid_target: list[torch.Tensor],
             delta: torch.Tensor, receivers: Sequence[tuple[int, int]], via: str) -> torch.Tensor:
    """The answer's log-probability when the receivers' ``via`` input is recomputed from the
    target run's residual stream plus ``delta [B, T, D]`` (the sender's change)."""
    which = VIA.index(via)
    layers = sorted({layer for layer, _ in receivers})
    swapped = {}
    for layer in layers:
        block = model.blocks[layer]
        qkv = block.attn.heads_qkv(block.ln1(resid_target[layer] + delta))
        swapped[layer] = qkv[which]

    def hook(layer, q, k, v):
        if layer not in swapped:
            return q, k, v
        out = [q, k, v]
        t = out[which].clone()
        for rl, h in receivers:
            if rl == layer:
                t[:, h] = swapped[layer][:, h]
        out[which] = t
        return tuple(out)

    return answer_logprob(model(target, qkv_hook=hook), answer)


@dataclass
class PathResult(Result):
    """The effect of one sender head on the answer through the receivers' q, k and v."""

    run_dir: str
    step: int
    sender: str
    receivers: list[str]
    via: list[str]
    effect: list[float]
    low: list[float]
    high: list[float]
    null_high: list[float]
    n_pairs: int
    prompts: str = ""

    kind = "path-patching"
    title = "Path patching"

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "summary": self.summary}

    @classmethod
    def from_dict(cls, d: dict) -> "PathResult":
        return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls) if f.name in d})

    def clears(self, via: str) -> bool:
        i = self.via.index(via)
        return self.low[i] > self.null_high[i]

    @property
    def summary(self) -> str:
        parts = [f"{v}: {e:.2f} ({lo:.2f} to {hi:.2f}; null up to {n:.2f})"
                 + (" clears the null" if lo > n else "")
                 for v, e, lo, hi, n in zip(self.via, self.effect, self.low, self.high, self.null_high)]
        return (f"{self.sender} through the {', '.join(self.receivers)} inputs: "
                + "; ".join(parts))

    def to_html(self) -> str:
        rows = [{"through": v, "effect": e, "95% interval": f"{lo:.3f} to {hi:.3f}",
                 "null (97.5%)": n, "carries": "yes" if lo > n else "no"}
                for v, e, lo, hi, n in zip(self.via, self.effect, self.low, self.high, self.null_high)]
        carried = [v for v in self.via if self.clears(v)]
        return (f"<p>{badge(', '.join(carried) if carried else 'no path', 'ok' if carried else 'warn')} "
                f"{escape(self.summary)}. {self.n_pairs} prompt pairs. {escape(self.prompts)}.</p>"
                + table_html(rows, digits=3))


@torch.no_grad()
def path_patching(model, prompts: Prompts, sender: tuple[int, int],
                  receivers: Sequence[tuple[int, int]], via: Sequence[str] = VIA,
                  bootstrap: int = 1000, seed: int = 0, run_dir: str = "",
                  step: int = 0) -> PathResult:
    """Denoising path patching from ``sender = (layer, head)`` to ``receivers`` through each
    input in ``via`` (see the module docstring)."""
    sl, sh = sender
    if not receivers or any(rl <= sl for rl, _ in receivers):
        raise DataError(f"receivers must be heads of layers after the sender's ({sl})")
    bad = [v for v in via if v not in VIA]
    if bad:
        raise DataError(f"via must be among q, k, v, not {bad[0]!r}")
    model.eval()
    p = prompts
    n = p.clean.shape[0]
    r_t, z_t = cache(model, p.corrupt)
    r_c, z_s = cache(model, p.clean)
    _, z_b = cache(model, p.clean_b)
    m_clean = answer_logprob(model(p.clean), p.answer).numpy()
    m_corrupt = answer_logprob(model(p.corrupt), p.answer).numpy()
    delta = _head_out(model, sl, sh, z_s[sl][:, sh] - z_t[sl][:, sh])
    delta_cc = _head_out(model, sl, sh, z_b[sl][:, sh] - z_s[sl][:, sh])
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(bootstrap, n))
    span = m_clean[idx].mean(1) - m_corrupt[idx].mean(1)
    eff, lo, hi, null = [], [], [], []
    for v in via:
        real = _through(model, p.corrupt, p.answer, r_t, delta, receivers, v).numpy()
        rand = _through(model, p.corrupt, p.answer, r_t, _random_like(delta, gen), receivers, v).numpy()
        cc = _through(model, p.clean, p.answer, r_c, delta_cc, receivers, v).numpy()
        eff_b = (real[idx].mean(1) - m_corrupt[idx].mean(1)) / span
        rand_b = (rand[idx].mean(1) - m_corrupt[idx].mean(1)) / span
        cc_b = np.abs(cc[idx].mean(1) - m_clean[idx].mean(1)) / np.abs(span)
        eff.append(float((real.mean() - m_corrupt.mean()) / (m_clean.mean() - m_corrupt.mean())))
        lo.append(float(np.quantile(eff_b, 0.025)))
        hi.append(float(np.quantile(eff_b, 0.975)))
        null.append(float(max(np.quantile(rand_b, 0.975), np.quantile(cc_b, 0.975))))
    return PathResult(run_dir, step, f"L{sl}H{sh}", [f"L{rl}H{rh}" for rl, rh in receivers],
                      list(via), eff, lo, hi, null, int(n), p.description)

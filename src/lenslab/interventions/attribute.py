"""Attribution patching: every component's patching effect from one backward pass.

Activation patching needs one forward pass per component; attribution patching (Nanda 2023;
Syed et al. 2023) takes the change of the metric to first order instead,
``(a_clean - a_corrupt) . d metric / d a`` at the corrupted run, for every activation ``a`` at
once: each head's output (per head, and per head and position) and the residual stream entering
each layer (per layer and position). The gradient is the total one, through every later layer.

For heads, AtP*'s fix for saturated attention (Kramar et al. 2024) is applied where the model
lets the lab see its queries and keys (lenslab's GPT): a head's effect through a later layer's
attention pattern is taken exactly (that layer's queries and keys recomputed with the head's
clean write, the softmax taken exactly) instead of to first order. Without it, a head whose
effect passes through attention that is saturated in the corrupted run gets an estimate near 0
whatever its real effect. Per-position estimates are first order only.

Statistics follow :mod:`~lenslab.interventions.patching`: estimates per prompt pair, normalised
so 0 is the corrupted run and 1 the clean run, with 95% bootstrap intervals over pairs, and two
nulls estimated the same way: the clean-clean patch (a second clean prompt with the same answer
into the first) and a random direction of the same norm as each real change. A head *carries
the answer* by this estimate when its interval clears both nulls; with ``check``, the heads are
also patched for real and the two rankings' Spearman correlation is reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch
from scipy.stats import spearmanr

from lenslab.errors import DataError
from lenslab.html import escape, figure_block, figure_to_svg, pyplot, table_html
from lenslab.interventions.patching import (
    Metric,
    PatchingResult,
    Prompts,
    _head_out,
    _random_like,
    cache,
    lab_metric,
)


def _causal_softmax(q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores (masked entries 0) and the causal attention pattern, ``[B, H, T, T]``."""
    T = q.shape[-2]
    s = (q @ k.transpose(-2, -1)) / (q.shape[-1] ** 0.5)
    future = torch.ones(T, T, dtype=torch.bool, device=q.device).triu(1)
    a = s.masked_fill(future, float("-inf")).softmax(-1)
    return s.masked_fill(future, 0.0), a


@dataclass
class _Estimates:
    """Per-pair first-order changes of the metric (not normalised): per head ``[n, L, H]``,
    per head and position ``[n, L, H, T]``, per residual layer and position ``[n, L + 1, T]``."""

    heads: torch.Tensor
    head_pos: torch.Tensor
    resid: torch.Tensor


def _first_order(model, x: torch.Tensor, metric: Metric, sources: list[tuple[list, list]],
                 qk_fix: bool) -> tuple[torch.Tensor, list[_Estimates]]:
    """The metric at the run of ``x`` ``[n]`` and, for each source ``(z [L] of [n, H, T, dh],
    resid [L + 1] of [n, T, D])``, the estimated change of each pair's metric were the run's
    activations replaced by the source's. One forward and one backward pass for all sources."""
    zero_z: list[torch.Tensor] = []
    zero_r: list[torch.Tensor] = []
    z_run: list[torch.Tensor] = []
    r_run: list[torch.Tensor] = []
    qkv: list[tuple[torch.Tensor, ...]] = []

    # a zero added at each hook point: its gradient is the total gradient with respect to the
    # activation there, through every later layer (a detached copy would cut those paths)
    def zh(layer, z):
        z_run.append(z.detach())
        e = torch.zeros_like(z, requires_grad=True)
        zero_z.append(e)
        return z + e

    def rh(layer, t):
        r_run.append(t.detach())
        e = torch.zeros_like(t, requires_grad=True)
        zero_r.append(e)
        return t + e

    def qh(layer, q, k, v):
        qkv.append((q.detach(), k.detach(), v.detach()))
        return q, k, v

    with torch.enable_grad():
        out = model(x, z_hook=zh, resid_hook=rh, qkv_hook=qh if qk_fix else None)
        m = metric(out)
        grads = torch.autograd.grad(m.sum(), zero_z + zero_r)  # per pair: rows are independent
    g_z, g_r = grads[:len(zero_z)], grads[len(zero_z):]
    found = []
    for z_src, r_src in sources:
        hp = torch.stack([((zs - zr) * g).sum(-1) for zs, zr, g in zip(z_src, z_run, g_z)], 1)
        heads = hp.sum(-1).clone()  # [n, L, H]
        if qk_fix:
            heads += _qk_fix(model, z_src, z_run, r_run, qkv, g_z)
        rs = torch.stack([((a - b) * g).sum(-1) for a, b, g in zip(r_src, r_run, g_r)], 1)
        found.append(_Estimates(heads, hp, rs))
    return m.detach(), found


def _qk_fix(model, z_src, z_run, r_run, qkv, g_z) -> torch.Tensor:
    """AtP*'s correction per pair ``[n, L, H]``: for each head and each later layer, the exact
    change of that layer's attention pattern minus its first-order change (the part of the
    gradient estimate that went through that pattern), times the metric's gradient with respect
    to the pattern."""
    n = z_run[0].shape[0]
    fix = torch.zeros(n, model.n_layer, model.n_head)
    for later in range(1, model.n_layer):
        block = model.blocks[later]
        q, k, v = qkv[later]
        g_pattern = g_z[later] @ v.transpose(-2, -1)  # d metric / d pattern, [n, H, T, T]

        def pattern(d: torch.Tensor, later=later, block=block) -> torch.Tensor:
            q2, k2, _ = block.attn.heads_qkv(block.ln1(r_run[later] + d))
            return _causal_softmax(q2, k2)[1]

        for layer in range(later):
            for head in range(model.n_head):
                with torch.no_grad():
                    delta = _head_out(model, layer, head,
                                      z_src[layer][:, head] - z_run[layer][:, head])
                # the pattern's value and first-order change at the run (forward-mode AD)
                a, linear = torch.func.jvp(pattern, (torch.zeros_like(delta),), (delta,))
                with torch.no_grad():
                    exact = pattern(delta)
                    fix[:, layer, head] += ((exact - a - linear) * g_pattern).sum((1, 2, 3))
    return fix


def _qk_fix_possible(model, qk_fix: bool) -> bool:
    if qk_fix and getattr(model, "blocks", None) is None:
        return False  # a Hugging Face model: its queries and keys are not exposed to the lab
    return qk_fix


def attribution_patching(model, prompts: Prompts, qk_fix: bool = True,
                         per_position: bool = False) -> np.ndarray:
    """First-order estimates of every head's denoising effect ``[layer, head]`` (normalised:
    0 corrupted, 1 clean), from one forward and one backward pass; ``per_position``: of every
    head at every position, ``[layer, head, position]`` (first order only: no QK fix). See the
    module docstring for ``qk_fix``."""
    if per_position and qk_fix:
        raise DataError("the QK fix is per head; ask per_position with qk_fix=False")
    model.eval()
    p = prompts
    metric, _ = lab_metric(model, p)
    r_clean, z_clean = cache(model, p.clean)
    with torch.no_grad():
        m_clean = metric(model(p.clean)).mean()
    m, (est,) = _first_order(model, p.corrupt, metric, [(z_clean, r_clean)],
                             _qk_fix_possible(model, qk_fix))
    span = m_clean - m.mean()
    return ((est.head_pos if per_position else est.heads).mean(0) / span).numpy()


def attribution_agreement(estimate: np.ndarray, patched: np.ndarray) -> float:
    """Spearman correlation of attribution estimates and real patching effects over heads."""
    return float(spearmanr(np.ravel(estimate), np.ravel(patched)).statistic)


@dataclass
class AttributionResult(PatchingResult):
    """Attribution patching's estimates per head (with intervals and nulls, like
    :class:`PatchingResult` of ``what="heads"``), per head and position and per residual layer
    and position (first order, means over pairs)."""

    positions: list[str] = field(default_factory=list)
    head_pos: list[list[float]] = field(default_factory=list)  # [L * H, T]
    resid: list[list[float]] = field(default_factory=list)  # [L + 1, T]
    qk_fix: bool = True
    spearman: Optional[float] = None  # against real patching of the heads, where computed

    kind = "attribution"
    title = "Attribution patching"

    def figure(self):
        plt = pyplot()
        L, H = len(self.rows), len(self.cols)
        panels = [("heads (layer x head)", np.array(self.effect), self.rows, self.cols),
                  ("residual stream (layer x position)", np.array(self.resid),
                   [f"resid {i}" for i in range(L + 1)], self.positions),
                  ("heads (head x position)", np.array(self.head_pos),
                   [f"{r}H{h}" for r in self.rows for h in range(H)], self.positions)]
        fig, axes = plt.subplots(1, 3, figsize=(13.5, max(3.0, 0.3 * L * H + 1.4)),
                                 gridspec_kw={"width_ratios": [max(2, H), 5, 5]})
        for ax, (title, eff, rows, cols) in zip(axes, panels):
            lim = max(1.0, float(np.nanmax(np.abs(eff))) if eff.size else 1.0)
            im = ax.imshow(eff, cmap="RdBu", vmin=-lim, vmax=lim, aspect="auto")
            ax.set_yticks(range(len(rows)), rows, fontsize=7)
            step = max(1, len(cols) // 12)
            ax.set_xticks(range(0, len(cols), step), cols[::step], fontsize=7)
            ax.set_title(title, fontsize=9)
            fig.colorbar(im, ax=ax, fraction=0.05)
        for i in range(L):
            for j in range(H):
                if not self.nothing_to_restore and self.low[i][j] > self.null_high[i][j]:
                    axes[0].text(j, i, "*", ha="center", va="center", fontsize=9)
        fig.tight_layout()
        return fig

    @property
    def summary(self) -> str:
        s = super().summary
        if self.spearman is not None and not self.nothing_to_restore:
            s += f"; real patching of the heads agrees at Spearman {self.spearman:.2f}"
        return s

    def to_html(self) -> str:
        if self.nothing_to_restore:
            return super().to_html()
        rows = [{"head": n, "estimated effect": e, "margin over null": m}
                for n, e, m in self.carriers()]
        how = ("with AtP*'s QK fix for the heads" if self.qk_fix
               else "first order only (this model's queries and keys are not exposed: no QK fix)")
        return (f"<p>{escape(self.summary)}. Mean {escape(self.metric)}: clean {self.clean:.3f}, "
                f"corrupted {self.corrupt:.3f}; {self.n_pairs} prompt pairs, "
                f"{escape(how)}. {escape(self.prompts)}.</p>"
                + (table_html(rows, digits=3) if rows else "<p>No head clears its null.</p>")
                + figure_block(figure_to_svg(self.figure()),
                               "Estimated normalised effect of patching each component from the "
                               "clean run into the corrupted one (0 corrupted, 1 clean; * : the "
                               "head's 95% interval clears both nulls)."))


def attribute(model, prompts: Prompts, qk_fix: bool = True, bootstrap: int = 1000,
              seed: int = 0, check: bool = False, run_dir: str = "",
              step: int = 0) -> AttributionResult:
    """Attribution patching of every head, head and position, and residual layer and position
    (see the module docstring); ``check``: patch the heads for real as well and report the
    rankings' agreement."""
    model.eval()
    p = prompts
    n = p.clean.shape[0]
    L, H = model.n_layer, model.n_head
    qk_fix = _qk_fix_possible(model, qk_fix)
    metric, metric_name = lab_metric(model, p)
    r_clean, z_clean = cache(model, p.clean)
    r_corrupt, z_corrupt = cache(model, p.corrupt)
    r_b, z_b = cache(model, p.clean_b)
    gen = torch.Generator().manual_seed(seed)
    z_rand = [zc + _random_like(zs - zc, gen) for zs, zc in zip(z_clean, z_corrupt)]
    r_rand = [rc + _random_like(rs - rc, gen) for rs, rc in zip(r_clean, r_corrupt)]
    m_corrupt, (real, rand) = _first_order(model, p.corrupt, metric,
                                           [(z_clean, r_clean), (z_rand, r_rand)], qk_fix)
    m_clean, (cc,) = _first_order(model, p.clean, metric, [(z_b, r_b)], qk_fix)
    with torch.no_grad():
        m_b = metric(model(p.clean_b))
    mc, mk, mb = m_clean.numpy(), m_corrupt.numpy(), m_b.numpy()
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(bootstrap, n))
    span_b = (mc[idx].mean(1) - mk[idx].mean(1))[:, None]
    flat = real.heads.reshape(n, -1).numpy()
    eff_b = flat[idx].mean(1) / span_b
    rand_b = rand.heads.reshape(n, -1).numpy()[idx].mean(1) / span_b
    cc_b = np.abs(cc.heads.reshape(n, -1).numpy()[idx].mean(1)) / np.abs(span_b)
    null_hi = np.maximum(np.quantile(rand_b, 0.975, axis=0), np.quantile(cc_b, 0.975, axis=0))
    span = float(mc.mean() - mk.mean())
    lo, hi = np.quantile(eff_b, [0.025, 0.975], axis=0)
    diff_b = (mc - mk)[idx].mean(1)
    null_diff_b = np.abs((mc - mb)[idx].mean(1))

    def grid(a: np.ndarray, shape) -> list:
        return a.reshape(shape).tolist()

    res = AttributionResult(
        run_dir, step, "heads", "denoise", [f"L{i}" for i in range(L)], [f"H{h}" for h in range(H)],
        grid(flat.mean(0) / span, (L, H)), grid(np.minimum(lo, hi), (L, H)),
        grid(np.maximum(lo, hi), (L, H)), grid(null_hi, (L, H)), float(mc.mean()),
        float(mk.mean()), [float(v) for v in np.quantile(diff_b, [0.025, 0.975])],
        float(np.quantile(null_diff_b, 0.975)), int(n), p.description, metric=metric_name,
        positions=[str(t) for t in range(p.clean.shape[1])],
        head_pos=grid(real.head_pos.mean(0).numpy() / span, (L * H, -1)),
        resid=grid(real.resid.mean(0).numpy() / span, (L + 1, -1)), qk_fix=qk_fix)
    if check and not res.nothing_to_restore:
        from lenslab.interventions.patching import activation_patching

        patched = activation_patching(model, p, "heads", "denoise", None, 100, seed)
        res.spearman = attribution_agreement(np.array(res.effect), np.array(patched.effect))
    return res

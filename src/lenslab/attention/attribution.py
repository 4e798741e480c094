"""Attribution: attention rollout, and head importance by ablation.

A head whose pattern looks structured need not matter for the output, and a head that matters
may look unremarkable. So the lab sets each head's structure score against its *importance*:
how much a metric changes when the head's output is removed.

* **Rollout** (Abnar and Zuidema 2020): ``R = prod_l (0.5 * A_l + 0.5 * I)`` with ``A_l`` the
  head-averaged pattern of layer ``l`` (rows renormalised); ``R[q, k]`` estimates how much of
  token ``k`` flows into position ``q`` through the residual stream and attention.
* **Ablation**: the head's output is zeroed (zero ablation) or replaced by its mean over the
  prompts' positions (mean ablation), and the change of the metric is recorded. The metric is
  the mean next-token loss on the prompts, or a logit difference ``logit(a) - logit(b)`` at the
  last position that the user names. Only lenslab's GPT exposes per-head outputs through
  ``head_scale`` for zero ablation; mean ablation uses a forward hook on the head outputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from lenslab.attention.capture import GPTLens, LensModel
from lenslab.errors import ModelError


@torch.no_grad()
def rollout(lens: LensModel, ids: torch.Tensor, residual: float = 0.5) -> torch.Tensor:
    """Attention rollout ``[q, k]`` for one input (streams layer by layer)."""
    if ids.dim() == 1:
        ids = ids[None]
    T = ids.shape[1]
    eye = torch.eye(T)
    state = {"R": eye.clone()}

    def fn(layer: int, pat: torch.Tensor) -> None:
        a = pat[0].float().mean(0).cpu()  # [q, k], heads averaged
        a = residual * eye + (1 - residual) * a
        a = a / a.sum(-1, keepdim=True)
        state["R"] = a @ state["R"]

    lens.capture(ids, on_layer=fn)
    return state["R"]


def loss_metric(lens: GPTLens, batch: torch.Tensor) -> Callable[[Optional[torch.Tensor]], float]:
    """Mean next-token loss on ``batch [B, T]`` as a function of a ``head_scale``."""

    def metric(head_scale: Optional[torch.Tensor]) -> float:
        logits = lens.model(batch.to(lens.device), head_scale=head_scale)
        return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(),
                               batch[:, 1:].reshape(-1).to(lens.device)).item()

    return metric


def logit_diff_metric(lens: GPTLens, batch: torch.Tensor, good: int, bad: int):
    """``logit(good) - logit(bad)`` at the last position, averaged over the batch."""

    def metric(head_scale: Optional[torch.Tensor]) -> float:
        logits = lens.model(batch.to(lens.device), head_scale=head_scale)[:, -1].float()
        return (logits[:, good] - logits[:, bad]).mean().item()

    return metric


@dataclass
class Importance:
    metric_name: str
    baseline: float
    zero: torch.Tensor  # [L, H]: metric(ablated) - baseline
    mean: torch.Tensor  # [L, H]

    def to_dict(self) -> dict:
        return {"metric": self.metric_name, "baseline": self.baseline,
                "zero_ablation": self.zero.tolist(), "mean_ablation": self.mean.tolist()}


@torch.no_grad()
def head_importance(lens: LensModel, batch: torch.Tensor, metric: str = "loss",
                    good: Optional[int] = None, bad: Optional[int] = None) -> Importance:
    """Change of the metric when each head is zero- or mean-ablated (own GPT only)."""
    if not isinstance(lens, GPTLens):
        raise ModelError("head ablation needs per-head outputs: it works on lenslab GPT runs; "
                         "for Hugging Face models use rollout and the head taxonomy")
    if metric == "loss":
        f = loss_metric(lens, batch)
    elif metric == "logit_diff":
        if good is None or bad is None:
            raise ModelError("the logit_diff metric needs the two token ids to compare")
        f = logit_diff_metric(lens, batch, good, bad)
    else:
        raise ModelError(f"unknown metric {metric!r}; use loss or logit_diff")
    L, H = lens.n_layer, lens.n_head
    base = f(None)
    zero = torch.zeros(L, H)
    for layer in range(L):
        for h in range(H):
            s = torch.ones(L, H, device=lens.device)
            s[layer, h] = 0
            zero[layer, h] = f(s) - base
    mean = _mean_ablation(lens, batch, f, base)
    return Importance(metric, base, zero, mean)


def _mean_ablation(lens: GPTLens, batch: torch.Tensor, f, base: float) -> torch.Tensor:
    """Replace one head's output by its mean over batch and positions, via a forward hook on
    the attention projection's input (the concatenated head outputs)."""
    L, H = lens.n_layer, lens.n_head
    dh = lens.model.cfg.d_model // H
    means: dict[int, torch.Tensor] = {}
    handles = []
    for layer, block in enumerate(lens.model.blocks):
        def grab(mod, inp, layer=layer):
            means[layer] = inp[0].mean(dim=(0, 1))  # [D] = H * dh
        handles.append(block.attn.proj.register_forward_pre_hook(grab))
    f(None)
    for h_ in handles:
        h_.remove()
    out = torch.zeros(L, H)
    for layer, block in enumerate(lens.model.blocks):
        for h in range(H):
            sl = slice(h * dh, (h + 1) * dh)

            def patch(mod, inp, sl=sl, layer=layer):
                x = inp[0].clone()
                x[..., sl] = means[layer][sl]
                return (x,)

            handle = block.attn.proj.register_forward_pre_hook(patch)
            try:
                out[layer, h] = f(None) - base
            finally:
                handle.remove()
    return out

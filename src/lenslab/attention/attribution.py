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
  last position that the user names, or for encoders the shift of the mean-pooled
  representation (1 - cosine). Both ablations edit the head's slice of the input to the
  layer's attention output projection (a forward pre-hook), so they work the same on
  lenslab's GPT and on Hugging Face models (:data:`OUT_PROJECTIONS`).
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


#: Module names (suffixes) whose input is the concatenated head outputs ``[..., H * d_head]``,
#: one per layer: lenslab's GPT and the common Hugging Face families.
OUT_PROJECTIONS = (
    "attn.proj",                # lenslab GPT
    "attention.output.dense",   # BERT, RoBERTa, MiniLM, ELECTRA
    "attn.c_proj",              # GPT-2
    "self_attn.o_proj",         # LLaMA, Mistral, Qwen, Gemma
    "self_attn.out_proj",       # OPT, BART, Whisper
    "attn.out_proj",            # GPT-Neo, GPT-J
    "attention.dense",          # GPT-NeoX (Pythia), Falcon
)


def head_output_projections(lens: LensModel) -> list[torch.nn.Module]:
    """The module of each layer that mixes the concatenated heads back into the residual
    stream: ablating a head means editing its slice of that module's input."""
    found = [m for name, m in lens.model.named_modules() if name.endswith(OUT_PROJECTIONS)]
    if len(found) != lens.n_layer:
        raise ModelError(f"{lens.name}: head ablation needs one attention output projection per layer "
                         f"(one of {', '.join(OUT_PROJECTIONS)}); found {len(found)} for "
                         f"{lens.n_layer} layers")
    return found


def _forward(lens: LensModel, batch: torch.Tensor):
    if isinstance(lens, GPTLens):
        return lens.model(batch.to(lens.device))
    return lens.model(input_ids=batch.to(lens.device), output_hidden_states=True)


def _logits(out) -> torch.Tensor:
    logits = out if isinstance(out, torch.Tensor) else getattr(out, "logits", None)
    if logits is None:
        raise ModelError("this metric needs a model with an output head (logits); for an encoder "
                         "use the embedding_shift metric")
    return logits.float()


def _metric(lens: LensModel, batch: torch.Tensor, metric: str, good: Optional[int],
            bad: Optional[int]) -> Callable[[], float]:
    """The chosen metric on ``batch [B, T]``, measured by one forward under whatever hooks are
    installed."""
    if metric == "loss":
        if not isinstance(lens, GPTLens) and not lens.causal:
            raise ModelError(f"{lens.name} is not a causal language model: next-token loss does not "
                             "apply; use the embedding_shift metric")

        def f() -> float:
            logits = _logits(_forward(lens, batch))
            return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]),
                                   batch[:, 1:].reshape(-1).to(logits.device)).item()
        return f
    if metric == "logit_diff":
        if good is None or bad is None:
            raise ModelError("the logit_diff metric needs the two token ids to compare")

        def f() -> float:
            logits = _logits(_forward(lens, batch))[:, -1]
            return (logits[:, good] - logits[:, bad]).mean().item()
        return f
    if metric == "embedding_shift":
        def pooled() -> torch.Tensor:
            out = _forward(lens, batch)
            h = out if isinstance(out, torch.Tensor) else out.hidden_states[-1]
            return F.normalize(h.float().mean(dim=1), dim=-1)  # [B, D], mean over tokens

        ref = pooled()

        def f() -> float:  # 1 - cosine to the unablated mean-pooled representation
            return (1.0 - (pooled() * ref).sum(-1)).mean().item()
        return f
    raise ModelError(f"unknown metric {metric!r}; use loss, logit_diff or embedding_shift")


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
def head_importance(lens: LensModel, batch: torch.Tensor, metric: Optional[str] = None,
                    good: Optional[int] = None, bad: Optional[int] = None) -> Importance:
    """Change of the metric when each head's output is zeroed, or replaced by its mean over the
    batch and positions. Works on lenslab GPTs and on Hugging Face models whose attention
    output projection is one of :data:`OUT_PROJECTIONS`.

    ``metric``: ``loss`` (next-token loss; the default for causal models), ``logit_diff``
    (``logit(good) - logit(bad)`` at the last position) or ``embedding_shift`` (1 - cosine of
    the mean-pooled last hidden state to the unablated one; the default for encoders).
    """
    if metric is None:
        metric = "loss" if isinstance(lens, GPTLens) or lens.causal else "embedding_shift"
    f = _metric(lens, batch, metric, good, bad)
    projs = head_output_projections(lens)
    H = lens.n_head
    base = f()
    means: dict[int, torch.Tensor] = {}

    def grab(layer):
        def hook(mod, inp):
            means[layer] = inp[0].mean(dim=tuple(range(inp[0].dim() - 1)))  # [H * dh]
        return hook

    handles = [m.register_forward_pre_hook(grab(i)) for i, m in enumerate(projs)]
    try:
        f()
    finally:
        for h_ in handles:
            h_.remove()
    width = means[0].shape[-1]
    if width % H:
        raise ModelError(f"{lens.name}: the attention output has width {width}, not a multiple of "
                         f"{H} heads")
    dh = width // H
    out = {"zero": torch.zeros(lens.n_layer, H), "mean": torch.zeros(lens.n_layer, H)}
    for layer, proj in enumerate(projs):
        for h in range(H):
            sl = slice(h * dh, (h + 1) * dh)
            for kind in ("zero", "mean"):
                def patch(mod, inp, sl=sl, layer=layer, kind=kind):
                    x = inp[0].clone()
                    x[..., sl] = 0.0 if kind == "zero" else means[layer][sl]
                    return (x,) + tuple(inp[1:])

                handle = proj.register_forward_pre_hook(patch)
                try:
                    out[kind][layer, h] = f() - base
                finally:
                    handle.remove()
    return Importance(metric, base, out["zero"], out["mean"])

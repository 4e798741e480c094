"""Patching between two prompts of different lengths, aligned position by position.

Two phrasings of one question have different tokens and lengths, so the lab's clean/corrupted
pairs do not apply; but the words they share can be matched. :func:`aligned_patching` copies a
head's output at the *source* prompt's aligned positions into the *destination* prompt's
matching positions and asks whether the destination's output moves toward the source's.

The output is the residual stream after the last layer, mean-pooled over positions (for an
encoder, its sentence representation; for a causal model, the same stream its predictions are
read from). Its movement is normalised as in activation patching: with ``c(x)`` the cosine of
``x``'s output to the source's, the effect is ``(c(patched) - c(destination)) / (1 -
c(destination))``: 0 means the destination's output did not move toward the source's, 1 that it
became the source's. Each item gives one value; the mean has a 95% bootstrap interval over
items, and the null is the same patch in a random direction of the same norm (per position):
how far any change of that size moves the output toward the source's by chance. A head *moves
the output* when its interval's lower end is above the null's 97.5% point.

This is the paraphrase lab's causal column: a head whose attention pattern changes between
phrasings may not matter for the output, and one whose pattern stays may.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from lenslab.interventions.patching import _random_like


@dataclass
class AlignedItem:
    """One patch: the source and destination prompts' token ids ``[T_src]``, ``[T_dst]``, and
    the aligned positions (``src_pos[i]`` of the source goes to ``dst_pos[i]`` of the
    destination)."""

    src: torch.Tensor
    dst: torch.Tensor
    src_pos: torch.Tensor
    dst_pos: torch.Tensor


@torch.no_grad()
def _output(model, ids: torch.Tensor, z=None) -> torch.Tensor:
    """The mean-pooled residual stream after the last layer ``[1, D]``, with ``z = (layer,
    head, positions, values [k, dh])`` patched in."""
    kept = []

    def rh(layer, t):
        if layer == model.n_layer:
            kept.append(t)
        return t

    def zh(layer, t):
        if z is None or layer != z[0]:
            return t
        t = t.clone()
        t[0, z[1], z[2]] = z[3]
        return t

    model(ids[None], resid_hook=rh, z_hook=zh if z is not None else None)
    return kept[0].float().mean(1)


@torch.no_grad()
def _head_outputs(model, ids: torch.Tensor) -> list[torch.Tensor]:
    z = []
    model(ids[None], z_hook=lambda layer, t: (z.append(t[0].clone()), t)[1])
    return z  # [L] of [H, T, dh]


def aligned_patching(model, items: Sequence, heads: Sequence[tuple[int, int]],
                     bootstrap: int = 1000, seed: int = 0) -> list[dict]:
    """For each head ``(layer, head)``: ``effect`` (mean over items), ``interval`` (95%),
    ``null`` (97.5% point of the random-direction patch's mean) and ``moves`` (see the module
    docstring). ``model``: anything with ``resid_hook`` and ``z_hook`` (lenslab's GPT, or the
    adapters of :mod:`~lenslab.interventions.hf`: see :func:`lenslab.interventions.model_of`);
    ``items``: :class:`AlignedItem` or tuples of its four fields."""
    if not items:
        return []
    items = [it if isinstance(it, AlignedItem) else AlignedItem(*it) for it in items]
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    real = np.zeros((len(items), len(heads)))
    rand = np.zeros_like(real)
    for i, it in enumerate(items):
        ref = torch.nn.functional.normalize(_output(model, it.src), dim=-1)
        base_out = _output(model, it.dst)

        def cos(out: torch.Tensor) -> float:
            return float((torch.nn.functional.normalize(out, dim=-1) * ref).sum())

        base = cos(base_out)
        span = max(1.0 - base, 1e-9)
        z_src, z_dst = _head_outputs(model, it.src), _head_outputs(model, it.dst)
        for j, (layer, head) in enumerate(heads):
            val = z_src[layer][head, it.src_pos]  # [k, dh]
            own = z_dst[layer][head, it.dst_pos]
            real[i, j] = (cos(_output(model, it.dst, (layer, head, it.dst_pos, val))) - base) / span
            noise = own + _random_like(val - own, gen)
            rand[i, j] = (cos(_output(model, it.dst, (layer, head, it.dst_pos, noise))) - base) / span
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(items), size=(bootstrap, len(items)))
    lo, hi = np.quantile(real[idx].mean(1), [0.025, 0.975], axis=0)
    null = np.quantile(rand[idx].mean(1), 0.975, axis=0)
    return [{"layer": layer, "head": head, "effect": float(real[:, j].mean()),
             "interval": [float(lo[j]), float(hi[j])], "null": float(null[j]),
             "moves": bool(lo[j] > null[j]), "n": len(items)}
            for j, (layer, head) in enumerate(heads)]

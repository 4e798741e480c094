"""Activation patching on lenslab's GPT: does a component carry the answer?

Two prompts of equal length, *clean* and *corrupted*, with different answers. Run one, copy
in a component's activation from the other, and read the answer's log-probability at the last
position. Denoising (``direction="denoise"``) runs the corrupted prompt with clean
activations: the components that restore the answer carry it. Noising runs the clean prompt
with corrupted activations: the components whose loss breaks it are necessary. Effects are
normalised so that 0 is the corrupted run and 1 the clean run (Heimersheim and Nanda 2024).

Components (``what``):

* ``heads``: each head's output at every position, ``[layer, head]``;
* ``head_pos``: each head's output at one position, ``[layer * head, position]``;
* ``resid``: the residual stream entering each block (and the final norm) at one position,
  ``[layer + 1, position]``;
* ``direct``: each head's output added to the last position's final residual only, read
  through the final norm and unembedding: its direct effect, not through later layers.

Statistics: every effect is a mean over prompt pairs with a 95% bootstrap interval (pairs are
resampled, so the normalisation is resampled with them). Two nulls: the same patch between two
clean prompts that share the answer (the variation patching causes when nothing that matters
differs), and a patch that moves the activation by a random direction of the same norm as the
real patch would. A component *carries the answer* only when the lower end of its interval is
above the upper end of both nulls'; the margin is reported. When the clean-corrupted
difference itself lies within its null (two clean prompts differ as much), there is nothing to
restore and no normalised effect is given.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from lenslab.errors import DataError
from lenslab.html import badge, escape, figure_block, figure_to_svg, pyplot, table_html
from lenslab.result import Result

WHAT = ("heads", "head_pos", "resid", "direct")


@dataclass
class Prompts:
    """Clean and corrupted prompts ``[n, T]`` with each one's answer ``[n]``, and a second
    clean prompt per pair (``clean_b``) with the clean answer, for the null."""

    clean: torch.Tensor
    corrupt: torch.Tensor
    clean_b: torch.Tensor
    answer: torch.Tensor  # the clean answer, predicted at the last position
    description: str = ""


def induction_prompts(vocab: int, T: int, n: int, seed: int = 0, period: Optional[int] = None) -> Prompts:
    """Repeated random tokens ending inside the second period, on a token ``a`` whose first
    occurrence was followed by ``b``: the answer is ``b``. The corrupted prompt replaces that
    first ``a`` with a token the sequence does not contain, so nothing in it says what follows
    ``a`` (what an induction head looks up is gone). ``clean_b`` redraws every other token of
    the period and keeps ``a`` and ``b``: the same answer, other context."""
    rng = np.random.default_rng(seed)
    P = period or T // 2 + 1
    if not 3 <= P <= T - 2 or vocab < P + 2:
        raise DataError(f"induction prompts need 3 <= period <= T - 2 and vocab >= period + 2 "
                        f"(T = {T}, period = {P}, vocab = {vocab})")
    j = T - 1 - P  # the current (last) token repeats the token at j; the answer is at j + 1
    clean, corrupt, clean_b = (np.empty((n, T), np.int64) for _ in range(3))
    for i in range(n):
        perm = rng.permutation(vocab)
        prefix, spare = perm[:P], perm[P]
        clean[i] = prefix[np.arange(T) % P]
        corrupt[i] = clean[i]
        corrupt[i, j] = spare
        other = rng.permutation(np.setdiff1d(np.arange(vocab), prefix[[j, j + 1]]))[:P]
        other[[j, j + 1]] = prefix[[j, j + 1]]
        clean_b[i] = other[np.arange(T) % P]
    answer = clean[:, j + 1]
    return Prompts(torch.from_numpy(clean), torch.from_numpy(corrupt), torch.from_numpy(clean_b),
                   torch.from_numpy(answer.copy()),
                   f"{n} repeated random sequences of {T} tokens (period {P}); corrupted: the "
                   "first occurrence of the last token replaced by an unused token")


# -- running the model with patches ---------------------------------------------------------


@torch.no_grad()
def cache(model, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The residual stream entering each block and the final norm (``n_layer + 1`` tensors
    ``[B, T, D]``) and each layer's head outputs (``[B, H, T, dh]``)."""
    resid: list[torch.Tensor] = []
    z: list[torch.Tensor] = []

    def rh(layer, t):
        resid.append(t.clone())
        return t

    def zh(layer, t):
        z.append(t.clone())
        return t

    model(x, resid_hook=rh, z_hook=zh)
    return resid, z


def answer_logprob(logits: torch.Tensor, answer: torch.Tensor) -> torch.Tensor:
    """``log p(answer)`` at the last position, ``[B]``."""
    return logits[:, -1].float().log_softmax(-1).gather(1, answer[:, None])[:, 0]


#: What a patched run is scored by: the model's output -> one number per prompt, ``[B]``.
Metric = Callable[[torch.Tensor], torch.Tensor]


def lab_metric(model, prompts: Prompts) -> tuple[Metric, str]:
    """The metric the lab scores ``model``'s runs on ``prompts`` with, and its name: the
    answer's log-probability at the last position for a language model; a model adapter that
    reads out vectors instead (an encoder) brings its own ``make_metric(prompts)`` (the cosine
    of its representation to the clean prompt's)."""
    make = getattr(model, "make_metric", None)
    if make is not None:
        return make(prompts)
    return (lambda out: answer_logprob(out, prompts.answer)), "log p(answer)"


def _as_metric(metric) -> Metric:
    """A :data:`Metric`, or the answers ``[B]`` whose log-probability is the metric."""
    if callable(metric):
        return metric
    return lambda out: answer_logprob(out, metric)


@torch.no_grad()
def run_patched(model, x: torch.Tensor, metric,
                resid: Optional[dict[int, tuple[slice, torch.Tensor]]] = None,
                z: Optional[dict[tuple[int, int], tuple[slice, torch.Tensor]]] = None) -> torch.Tensor:
    """The metric (a :data:`Metric`, or the answers ``[B]`` for their log-probability) with
    activations replaced: ``resid[layer] = (positions, values [B, T, D])`` and
    ``z[(layer, head)] = (positions, values [B, T, dh])``. Positions are a slice, an index, or
    an index tensor ``[B, k]`` (per prompt; values then ``[B, k, ...]`` at those rows)."""
    metric = _as_metric(metric)
    resid, z = resid or {}, z or {}
    by_layer: dict[int, list] = {}
    for (layer, head), v in z.items():
        by_layer.setdefault(layer, []).append((head, *v))

    def rh(layer, t):
        if layer not in resid:
            return t
        pos, val = resid[layer]
        t = t.clone()
        _put(t, pos, val)
        return t

    def zh(layer, t):
        if layer not in by_layer:
            return t
        t = t.clone()
        for head, pos, val in by_layer[layer]:
            _put(t[:, head], pos, val)
        return t

    return metric(model(x, resid_hook=rh if resid else None, z_hook=zh if z else None))


def _put(t: torch.Tensor, pos, val: torch.Tensor) -> None:
    """``t[:, pos] = val[:, pos]`` in place, ``t [B, T, ...]``; ``pos`` a slice or an index, or
    a tensor ``[B, k]`` of positions per row, whose values ``val [B, k, ...]`` are given."""
    if isinstance(pos, torch.Tensor):
        rows = torch.arange(t.shape[0])[:, None].expand_as(pos)
        t[rows, pos] = val.to(t.dtype)
    else:
        t[:, pos] = val[:, pos]


def _head_out(model, layer: int, head: int, z: torch.Tensor) -> torch.Tensor:
    """One head's write into the residual stream ``[B, T, D]`` from its output ``[B, T, dh]``."""
    attn = model.blocks[layer].attn
    dh = attn.d_head
    w = attn.proj.weight[:, head * dh:(head + 1) * dh]  # [D, dh]
    return z @ w.T


@torch.no_grad()
def _direct(model, resid_final: torch.Tensor, delta: torch.Tensor, answer: torch.Tensor) -> torch.Tensor:
    """The answer's log-probability when ``delta [B, D]`` is added to the last position's final
    residual only (no later layer sees it)."""
    x = resid_final[:, -1] + delta
    logits = model.lm_head(model.ln_f(x))
    return logits.float().log_softmax(-1).gather(1, answer[:, None])[:, 0]


# -- the measure --------------------------------------------------------------------------


def _random_like(delta: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """A random direction per vector (last axis), with ``delta``'s norms."""
    r = torch.randn(delta.shape, generator=gen, dtype=delta.dtype)
    r = r / r.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return r * delta.norm(dim=-1, keepdim=True)


@dataclass
class PatchingResult(Result):
    """Normalised effects of patching each component, with intervals and nulls."""

    run_dir: str
    step: int
    what: str
    direction: str
    rows: list[str]
    cols: list[str]
    effect: list[list[float]]  # [rows, cols]; 0 = corrupted run, 1 = clean run
    low: list[list[float]]
    high: list[list[float]]
    null_high: list[list[float]]  # upper end of the larger null, per component
    clean: float  # mean log p(answer), clean prompts
    corrupt: float
    diff_interval: list[float]  # clean - corrupted, 95%
    null_diff_high: float  # upper end of |clean - other clean| (95%)
    n_pairs: int
    prompts: str = ""
    joint: dict[str, list[float]] = field(default_factory=dict)  # name -> [effect, low, high]
    attribution: list[list[float]] = field(default_factory=list)  # first-order estimates (heads)
    attribution_spearman: float | None = None  # their agreement with the real effects
    metric: str = "log p(answer)"  # what a run is scored by (encoders: cosine to the clean)

    kind = "patch"
    title = "Activation patching"

    def components(self) -> list[dict]:
        """Every component as the file lists it: ``layer``, ``head`` where it is one,
        ``position`` where it is one, ``effect``, ``interval``, ``null`` (the upper end of the
        larger null) and ``carries``. Rows and columns are named as :func:`activation_patching`
        names them: ``L1`` x ``H2`` (heads, direct), ``L1H2`` x ``7`` (head_pos), ``resid 1``
        x ``7`` (resid)."""
        out = []
        for i, r in enumerate(self.rows):
            if self.what == "resid":
                where = {"layer": int(r.split()[-1])}
            elif self.what == "head_pos":
                layer, head = r[1:].split("H")
                where = {"layer": int(layer), "head": int(head)}
            else:
                where = {"layer": int(r[1:])}
            for j, c in enumerate(self.cols):
                comp = dict(where)
                if self.what in ("heads", "direct"):
                    comp["head"] = int(c[1:])
                else:
                    comp["position"] = int(c)
                comp.update(effect=self.effect[i][j], interval=[self.low[i][j], self.high[i][j]],
                            null=self.null_high[i][j],
                            carries=(not self.nothing_to_restore
                                     and self.low[i][j] > self.null_high[i][j]))
                out.append(comp)
        return out

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        last = {k: k.rsplit(" ", 1)[-1] for k in self.joint}  # "all heads of layer 1" -> "1"
        d["joint"] = [{"name": k, "layer": int(last[k]) if last[k].isdigit() else None,
                       "effect": v[0], "interval": [v[1], v[2]]} for k, v in self.joint.items()]
        return {**d, "components": self.components(), "nothing_to_restore": self.nothing_to_restore,
                "summary": self.summary}

    @classmethod
    def from_dict(cls, d: dict) -> "PatchingResult":
        fields = {f.name: d[f.name] for f in dataclasses.fields(cls) if f.name in d}
        if isinstance(fields.get("joint"), list):
            fields["joint"] = {j["name"]: [j["effect"], *j["interval"]] for j in fields["joint"]}
        return cls(**fields)

    @property
    def nothing_to_restore(self) -> bool:
        """The clean-corrupted difference is within its null: no effect can be normalised."""
        return self.diff_interval[0] <= self.null_diff_high

    def carriers(self) -> list[tuple[str, float, float]]:
        """Components whose interval clears the null: ``(name, effect, margin)``."""
        if self.nothing_to_restore:
            return []
        out = []
        for i, r in enumerate(self.rows):
            for j, c in enumerate(self.cols):
                margin = self.low[i][j] - self.null_high[i][j]
                if margin > 0:
                    out.append((f"{r} {c}".strip(), self.effect[i][j], margin))
        return sorted(out, key=lambda t: -t[1])

    @property
    def summary(self) -> str:
        if self.nothing_to_restore:
            return (f"nothing to restore: the clean and corrupted prompts differ by "
                    f"{self.diff_interval[0]:.3f} to {self.diff_interval[1]:.3f} in "
                    f"{self.metric}, within what two clean prompts with the same answer differ "
                    f"(up to {self.null_diff_high:.3f})")
        c = self.carriers()
        if not c:
            return "no component clears its null"
        top = ", ".join(f"{n} ({e:.2f}, margin {m:.2f})" for n, e, m in c[:6])
        what = "the answer" if self.metric == "log p(answer)" else "the difference"  # encoders
        return f"{len(c)} component(s) carry {what}: {top}"

    def figure(self):
        plt = pyplot()
        eff = np.array(self.effect, dtype=float)
        fig, ax = plt.subplots(figsize=(max(4.0, 0.32 * len(self.cols) + 2.5),
                                        max(2.4, 0.38 * len(self.rows) + 1.2)))
        lim = max(1.0, float(np.nanmax(np.abs(eff))) if eff.size else 1.0)
        im = ax.imshow(eff, cmap="RdBu", vmin=-lim, vmax=lim, aspect="auto")
        ax.set_yticks(range(len(self.rows)), self.rows, fontsize=8)
        step = max(1, len(self.cols) // 16)
        ax.set_xticks(range(0, len(self.cols), step), self.cols[::step], fontsize=8)
        for i in range(len(self.rows)):
            for j in range(len(self.cols)):
                if self.low[i][j] > self.null_high[i][j] and not self.nothing_to_restore:
                    ax.text(j, i, "*", ha="center", va="center", fontsize=9)
        fig.colorbar(im, ax=ax, label="normalised effect (0 corrupted, 1 clean)")
        ax.set_title(f"{self.direction}: {self.what}", fontsize=9)
        fig.tight_layout()
        return fig

    def to_html(self) -> str:
        kind = "warn" if self.nothing_to_restore else "ok"
        head = (f"<p>{badge('nothing to restore' if self.nothing_to_restore else self.direction, kind)} "
                f"{escape(self.summary)}. Mean {escape(self.metric)}: clean {self.clean:.3f}, corrupted "
                f"{self.corrupt:.3f}; {self.n_pairs} prompt pairs. {escape(self.prompts)}.</p>")
        if self.nothing_to_restore:
            return head
        rows = [{"component": n, "effect": e, "margin over null": m} for n, e, m in self.carriers()]
        rows += [{"component": f"jointly: {k}", "effect": v[0],
                  "margin over null": f"interval {v[1]:.3f} to {v[2]:.3f}"} for k, v in self.joint.items()]
        attr = ""
        if self.attribution and self.attribution_spearman is not None:
            attr = (f"<p>Attribution patching (one forward and one backward pass): "
                    f"Spearman correlation {self.attribution_spearman:.2f} with the effects "
                    "above, over the heads. "
                    + escape(", ".join(f"{r}{c} {self.attribution[i][j]:.2f}"
                                       for i, r in enumerate(self.rows)
                                       for j, c in enumerate(self.cols)))
                    + " (AtP*: a later layer's attention pattern is recomputed exactly, so "
                      "effects through saturated attention are not lost).</p>")
        return (head + (table_html(rows, digits=3) if rows else "") + attr
                + figure_block(figure_to_svg(self.figure()),
                               "Normalised effect of patching each component (* : its 95% "
                               "interval clears both nulls)."))


def _boot_effect(m: np.ndarray, clean: np.ndarray, corrupt: np.ndarray, idx: np.ndarray):
    """Normalised effects over bootstrap resamples ``idx [B, n]``: ``m [n, k]`` -> ``[B, k]``."""
    c, k = clean[idx].mean(1), corrupt[idx].mean(1)
    return (m[idx].mean(1) - k[:, None]) / (c - k)[:, None]


@torch.no_grad()
def activation_patching(model, prompts: Prompts, what: str = "heads", direction: str = "denoise",
                        joint: Optional[dict[str, Sequence[tuple[int, int]]]] = None,
                        bootstrap: int = 1000, seed: int = 0, run_dir: str = "",
                        step: int = 0) -> PatchingResult:
    """Patch every component of kind ``what`` (see the module docstring) one at a time;
    ``joint`` names sets of heads ``[(layer, head), ...]`` patched together (their outputs at
    every position)."""
    if what not in WHAT:
        raise DataError(f"what must be one of {', '.join(WHAT)}, not {what!r}")
    if direction not in ("denoise", "noise"):
        raise DataError(f"direction must be denoise or noise, not {direction!r}")
    if what == "direct" and getattr(model, "blocks", None) is None:
        raise DataError(f"{getattr(model, 'name', 'this model')}: direct effects need lenslab's "
                        "GPT (its output projections); patch heads, head_pos or resid")
    model.eval()
    p = prompts
    n, T = p.clean.shape
    L, H = model.n_layer, model.n_head
    target, source = (p.corrupt, p.clean) if direction == "denoise" else (p.clean, p.corrupt)
    r_t, z_t = cache(model, target)
    r_s, z_s = cache(model, source)
    r_b, z_b = cache(model, p.clean_b)
    metric, metric_name = lab_metric(model, p)
    m_clean = metric(model(p.clean)).numpy()
    m_corrupt = metric(model(p.corrupt)).numpy()
    m_b = metric(model(p.clean_b)).numpy()
    gen = torch.Generator().manual_seed(seed)
    everywhere = slice(None)

    def one(patch: Callable[[str], torch.Tensor]):
        """The metric with the real patch, the random-direction null and the clean-clean null."""
        return patch("real").numpy(), patch("random").numpy(), patch("clean").numpy()

    def z_patch(layer: int, head: int, pos):
        def f(kind: str) -> torch.Tensor:
            if kind == "clean":  # the second clean prompt into the first
                return run_patched(model, p.clean, metric,
                                   z={(layer, head): (pos, z_b[layer][:, head])})
            val = z_s[layer][:, head]
            if kind == "random":
                base = z_t[layer][:, head]
                val = base + _random_like(val - base, gen)
            return run_patched(model, target, metric, z={(layer, head): (pos, val)})
        return f

    def resid_patch(layer: int, pos):
        def f(kind: str) -> torch.Tensor:
            if kind == "clean":
                return run_patched(model, p.clean, metric, resid={layer: (pos, r_b[layer])})
            val = r_s[layer]
            if kind == "random":
                val = r_t[layer] + _random_like(val - r_t[layer], gen)
            return run_patched(model, target, metric, resid={layer: (pos, val)})
        return f

    def direct_patch(layer: int, head: int):
        def f(kind: str) -> torch.Tensor:
            if kind == "clean":
                d = _head_out(model, layer, head, z_b[layer][:, head, -1] - z_s_clean[layer][:, head, -1])
                return _direct(model, r_clean_final, d, p.answer)
            d = _head_out(model, layer, head, z_s[layer][:, head, -1] - z_t[layer][:, head, -1])
            if kind == "random":
                d = _random_like(d, gen)
            return _direct(model, r_t[L], d, p.answer)
        return f

    if what == "direct":
        # the clean run's cache: the source's when denoising, else computed here
        r_c, z_s_clean = (r_s, z_s) if direction == "denoise" else cache(model, p.clean)
        r_clean_final = r_c[L]
    if what in ("heads", "direct"):
        rows = [f"L{layer}" for layer in range(L)]
        cols = [f"H{h}" for h in range(H)]
        grid = [[(z_patch(layer, h, everywhere) if what == "heads" else direct_patch(layer, h))
                 for h in range(H)] for layer in range(L)]
    elif what == "head_pos":
        rows = [f"L{layer}H{h}" for layer in range(L) for h in range(H)]
        cols = [str(t) for t in range(T)]
        grid = [[z_patch(layer, h, t) for t in range(T)] for layer in range(L) for h in range(H)]
    else:
        rows = [f"resid {layer}" for layer in range(L + 1)]
        cols = [str(t) for t in range(T)]
        grid = [[resid_patch(layer, t) for t in range(T)] for layer in range(L + 1)]

    flat = [one(f) for row in grid for f in row]
    real = np.stack([f[0] for f in flat], 1)  # [n, k]
    rand = np.stack([f[1] for f in flat], 1)
    cc = np.stack([f[2] for f in flat], 1)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(bootstrap, n))
    eff_b = _boot_effect(real, m_clean, m_corrupt, idx)
    rand_b = _boot_effect(rand, m_clean, m_corrupt, idx)
    # the clean-clean null: how far patching between two clean prompts moves the answer, in
    # the same units (a fraction of the clean-corrupted difference)
    span = (m_clean[idx].mean(1) - m_corrupt[idx].mean(1))[:, None]
    cc_b = np.abs(cc[idx].mean(1) - m_clean[idx].mean(1)[:, None]) / np.abs(span)
    if direction == "noise":  # the real patch moves the clean run down; the nulls stay near 1
        rand_b = 1.0 - rand_b
        eff_b = 1.0 - eff_b
    null_hi = np.maximum(np.quantile(rand_b, 0.975, axis=0), np.quantile(cc_b, 0.975, axis=0))
    effect = (real.mean(0) - m_corrupt.mean()) / (m_clean.mean() - m_corrupt.mean())
    if direction == "noise":
        effect = 1.0 - effect
    lo, hi = np.quantile(eff_b, [0.025, 0.975], axis=0)
    diff = m_clean - m_corrupt
    diff_b = diff[idx].mean(1)
    null_diff_b = np.abs((m_clean - m_b)[idx].mean(1))
    shape = (len(rows), len(cols))
    joint_out: dict[str, list[float]] = {}
    for name, heads in (joint or {}).items():
        src = {(layer, h): (everywhere, z_s[layer][:, h]) for layer, h in heads}
        jm = run_patched(model, target, metric, z=src).numpy()[:, None]
        jb = _boot_effect(jm, m_clean, m_corrupt, idx)[:, 0]
        je = float((jm.mean() - m_corrupt.mean()) / (m_clean.mean() - m_corrupt.mean()))
        if direction == "noise":
            je, jb = 1.0 - je, 1.0 - jb
        jl, jh = np.quantile(jb, [0.025, 0.975])
        joint_out[name] = [je, float(min(jl, jh)), float(max(jl, jh))]
    lo2, hi2 = np.minimum(lo, hi), np.maximum(lo, hi)
    return PatchingResult(
        run_dir, step, what, direction, rows, cols,
        effect.reshape(shape).tolist(), lo2.reshape(shape).tolist(), hi2.reshape(shape).tolist(),
        null_hi.reshape(shape).tolist(), float(m_clean.mean()), float(m_corrupt.mean()),
        [float(v) for v in np.quantile(diff_b, [0.025, 0.975])],
        float(np.quantile(null_diff_b, 0.975)), int(n), prompts.description, joint_out,
        metric=metric_name)

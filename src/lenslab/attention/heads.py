"""A head taxonomy that separates structured heads from random-looking ones, with nulls.

Every head is scored over a *battery* of prompts, not one prompt:

* ``random``: repeated random tokens (a random sequence, then the same sequence again), where
  induction and duplicate-token behaviour are unambiguous (Olsson et al. 2022);
* ``natural``: natural sentences for Hugging Face models, held-out task sequences for lenslab
  runs (or the user's own prompts, one per line).

Scores (attention mass, averaged over the query positions where they are defined):

==============  =====================================================================
prev_token      weight on the previous position ``q - 1``
induction       prefix matching: weight on the token *after* earlier occurrences of the
                current token (random battery only)
duplicate       weight on earlier occurrences of the current token (random battery only)
sink            weight on the first position (``[CLS]``/BOS or the first token)
delimiter       weight on special tokens other than the first position (``[SEP]``), plus
                punctuation tokens
offset          weight on ``q - d`` for the best fixed offset ``d`` (a positional head;
                ``d = 0`` is "attend to self", negative ``d`` looks ahead in bidirectional models)
entropy         mean row entropy over the row's maximum, ``H / log(n_keys)``: 1 = uniform
==============  =====================================================================

**Nulls.** Each mass score gets two nulls: (1) the same architecture with re-initialised
weights (``null_seeds`` fresh models, heads pooled: what an untrained head scores) and (2) a
permutation null: the head's own attention rows with key positions shuffled among the keys the
query may see (what *this* head would score if its attention ignored the structure). A head
gets a structure class only when its score clears ``max(re-init hi, permutation hi) + margin``,
where "hi" is the 99th percentile of the null. When several clear, the largest excess wins.
Heads that clear nothing are described by their entropy: ``broad`` (normalised entropy at least
``broad_entropy``, spreading evenly, as in Clark et al. 2019's broad heads), ``other-structured``
(concentrated, ``1 - entropy`` clearing the re-initialised null by the margin, but on none of
the named targets), otherwise ``random-like``.
"""

from __future__ import annotations

import math
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from rich.progress import Progress

from lenslab._io import read_user_text
from lenslab.attention.capture import GPTLens, LensModel, Tokens
from lenslab.attention.classes import HeadClass
from lenslab.attention.head_report import HeadReport
from lenslab.errors import DataError

MASS_SCORES = ("prev_token", "induction", "duplicate", "sink", "delimiter", "offset")
CLASS_OF = {"prev_token": HeadClass.PREVIOUS_TOKEN, "induction": HeadClass.INDUCTION,
            "duplicate": HeadClass.DUPLICATE, "sink": HeadClass.SINK,
            "delimiter": HeadClass.DELIMITER, "offset": HeadClass.POSITIONAL}

NATURAL_SENTENCES = [
    "The cat sat on the mat and looked out of the window.",
    "When the rain stopped, the children ran outside to play in the puddles.",
    "Scientists measured the temperature of the lake every morning for a year.",
    "She opened the letter, read it twice, and put it back in the drawer.",
    "A small boat drifted slowly across the quiet harbour at dawn.",
    "The committee will announce its decision after the meeting on Friday.",
    "He forgot his keys, so he waited for his sister to come home.",
    "Most birds build their nests in spring, when food is easy to find.",
    "The old library closed last year, but the building is still standing.",
    "If you heat ice, it melts; if you cool water, it freezes.",
    "Our train was late because a tree had fallen across the tracks.",
    "The recipe asks for two eggs, a cup of flour and some milk.",
    "Nobody expected the quiet student to win the national chess championship.",
    "After dinner we walked along the river and talked about the future.",
    "The museum displays paintings, sculptures, and ancient coins from Rome.",
    "Why do leaves change colour in the autumn before they fall?",
]


# ---------------------------------------------------------------------- prompts


@dataclass
class Prompt:
    ids: list[int]
    special: list[bool]
    punct: list[bool]
    battery: str  # "random" | "natural"


def _is_punct(s: str) -> bool:
    core = s.replace("##", "").replace("\u0120", "").replace("\u2581", "").strip()
    return bool(core) and all(unicodedata.category(c).startswith("P") for c in core)


def _prompt_from_tokens(t: Tokens, battery: str) -> Prompt:
    return Prompt(t.ids, list(t.special) or [False] * len(t), [_is_punct(s) for s in t.strings],
                  battery)


def random_battery(lens: LensModel, n: int = 16, length: Optional[int] = None,
                   seed: int = 0, vary: bool = False) -> list[Prompt]:
    """Repeated random tokens: ``[specials] x x [specials]`` with ``x`` random and ``length`` long.

    ``vary``: each prompt draws its own length in ``[length // 2, length]``. With one length L,
    the induction target of every query is also the key L - 1 back, and, for a model trained on
    sequences of period P dividing L, also a key of the same phase modulo P: a positional head
    would score as an induction head. Varied lengths keep only the content-based target common.
    """
    rng = np.random.default_rng(seed)
    tok = getattr(lens, "tokenizer", None)
    if tok is not None:
        special_ids = set(tok.all_special_ids)
        vocab = [i for s, i in tok.get_vocab().items()
                 if i not in special_ids and not s.startswith(("[unused", "<"))
                 and s.isalpha() and len(s) > 1]
        vocab = sorted(vocab)
        wrap = getattr(tok, "build_inputs_with_special_tokens", None)
    else:
        special_ids = set()
        vocab = list(range(lens.vocab_size))
        wrap = None
    n_extra = len(wrap([])) if wrap is not None else 0
    L = length or min(32, (lens.n_ctx - n_extra) // 2)
    if L < 2:
        raise DataError(f"{lens.name}'s context ({lens.n_ctx}) is too short for the random battery")
    out = []
    for _ in range(n):
        size = int(rng.integers(max(2, L // 2), L + 1)) if vary else L
        x = list(rng.choice(vocab, size=size, replace=len(vocab) < size))
        ids = [int(i) for i in (wrap(x + x) if wrap is not None else x + x)]
        special = [i in special_ids for i in ids]
        out.append(Prompt(ids, special, [False] * len(ids), "random"))
    return out


def natural_battery(lens: LensModel, prompts: Optional[Sequence[str]] = None,
                    n: int = 16, seed: int = 0) -> list[Prompt]:
    if prompts is not None:
        texts = [p for p in prompts if p.strip()]
        if not texts:
            raise DataError("the prompt file has no non-empty lines")
        return [_prompt_from_tokens(lens.tokenize(t, truncate=True), "natural") for t in texts]
    if isinstance(lens, GPTLens):
        task = lens.task
        if task is None:
            return []
        x, _ = next(iter(task.eval_batches(1, n)))
        return [Prompt(row.tolist(), [False] * x.shape[1],
                       [_is_punct(s) for s in task.token_str(row.tolist())], "natural")
                for row in x[:n]]
    return [_prompt_from_tokens(lens.tokenize(t, truncate=True), "natural")
            for t in NATURAL_SENTENCES[:n]]


def read_prompt_file(path: str | Path) -> list[str]:
    p = Path(path)
    text = read_user_text(p, "prompt file (one prompt per line)")
    lines = [x.strip() for x in text.splitlines() if x.strip()]
    if not lines:
        raise DataError(f"{p}: no prompts (one per line)")
    return lines


# ---------------------------------------------------------------------- per-prompt targets


@dataclass
class Targets:
    """Boolean key masks ``[T, T]`` per score, and which query rows each score is defined on."""

    masks: dict[str, torch.Tensor]
    rows: dict[str, torch.Tensor]  # [T] bool
    valid: torch.Tensor  # [T, T] keys a query may see
    offsets: list[int]


def targets_for(p: Prompt, causal: bool, max_offset: int = 8) -> Targets:
    ids = torch.tensor(p.ids)
    T = len(ids)
    q = torch.arange(T)[:, None]
    k = torch.arange(T)[None, :]
    valid = (k <= q) if causal else torch.ones(T, T, dtype=torch.bool)
    content = ~torch.tensor(p.special)
    masks, rows = {}, {}
    masks["prev_token"] = k == q - 1
    rows["prev_token"] = torch.arange(T) >= 1
    same = (ids[:, None] == ids[None, :]) & (k < q) & content[None, :] & content[:, None]
    masks["duplicate"] = same
    rows["duplicate"] = same.any(1) if p.battery == "random" else torch.zeros(T, dtype=torch.bool)
    ind = torch.zeros(T, T, dtype=torch.bool)  # token after an earlier occurrence
    ind[:, 1:] = same[:, :-1]
    ind &= valid & content[None, :]
    masks["induction"] = ind
    rows["induction"] = ind.any(1) if p.battery == "random" else torch.zeros(T, dtype=torch.bool)
    masks["sink"] = (k == 0).expand(T, T)
    rows["sink"] = torch.arange(T) >= 1  # row 0 of a causal model can only see itself
    special = torch.tensor(p.special)
    punct = torch.tensor(p.punct)
    delim = (special | punct).clone()
    delim[0] = False
    masks["delimiter"] = delim[None, :].expand(T, T) & valid
    rows["delimiter"] = (valid & delim[None, :]).any(1)
    offsets = list(range(0, max_offset + 1)) if causal else list(range(-max_offset, max_offset + 1))
    for d in offsets:
        masks[f"offset{d}"] = (k == q - d)
        rows[f"offset{d}"] = ((q - d >= 0) & (q - d < T)).squeeze(1)
    return Targets(masks, rows, valid, offsets)


# ---------------------------------------------------------------------- scoring


@dataclass
class _Acc:
    """Running sums of per-head scores over a battery: ``sum[name]`` is ``[L, H]``."""

    L: int
    H: int
    sums: dict = field(default_factory=dict)
    counts: dict = field(default_factory=dict)

    def add(self, name: str, layer: int, values: torch.Tensor, n: int) -> None:
        if n == 0:
            return
        s = self.sums.setdefault(name, torch.zeros(self.L, self.H, dtype=torch.float64))
        c = self.counts.setdefault(name, torch.zeros(self.L, dtype=torch.float64))
        s[layer] += values.double() * n
        c[layer] += n

    def mean(self, name: str) -> torch.Tensor:
        if name not in self.sums:
            return torch.full((self.L, self.H), float("nan"))
        return (self.sums[name] / self.counts[name].clamp(min=1)[:, None]).float()


def _score_layer(acc: _Acc, layer: int, pat: torch.Tensor, tg: Targets, perm: Optional[dict],
                 gen: Optional[torch.Generator], n_perm: int) -> None:
    """Accumulate every score of one layer's pattern ``[H, q, k]`` for one prompt."""
    H, T, _ = pat.shape
    for name, mask in tg.masks.items():
        rows = tg.rows[name]
        n = int(rows.sum())
        if n == 0:
            continue
        mass = (pat * mask.to(pat.dtype)).sum(-1)  # [H, T]
        acc.add(name, layer, mass[:, rows].mean(-1), n)
        if perm is not None and not name.startswith("offset"):
            # permutation null: the same rows, the targets moved to random visible keys.
            # Single-target scores (fixed offsets) share prev_token's: same shape of target set.
            m = mask[rows] & tg.valid[rows]  # [n, T]
            vis = tg.valid[rows].float()
            k_t = m.sum(-1)  # targets per row
            scores = torch.rand((n_perm, n, T), generator=gen) * vis - (1 - vis)  # invisible last
            order = scores.argsort(-1, descending=True)
            ranks = torch.empty_like(order)
            ranks.scatter_(-1, order, torch.arange(T).expand_as(order))
            pick = (ranks < k_t[None, :, None]).float()  # [P, n, T]
            pm = torch.einsum("hnt,pnt->phn", pat[:, rows], pick).mean(-1)  # [P, H]
            s = perm.setdefault(name, torch.zeros(n_perm, acc.L, acc.H, dtype=torch.float64))
            s[:, layer] += pm.double() * n
    nk = tg.valid.sum(-1).float()  # [T]
    ent = -(pat.clamp_min(1e-12).log() * pat).sum(-1)  # [H, T]
    rows = nk > 1
    acc.add("entropy", layer, (ent[:, rows] / nk[rows].log()).mean(-1), int(rows.sum()))


def score_battery(lens: LensModel, prompts: list[Prompt], with_perm: bool = False,
                  n_perm: int = 50, seed: int = 0, max_offset: int = 8):
    """Mean score of every head over ``prompts``; with ``with_perm`` also the permutation null
    (``[n_perm, L, H]`` per score)."""
    acc = _Acc(lens.n_layer, lens.n_head)
    perm: Optional[dict] = {} if with_perm else None
    gen = torch.Generator().manual_seed(seed)
    for p in prompts:
        tg = targets_for(p, lens.causal, max_offset)

        def fn(layer: int, pat: torch.Tensor, tg=tg) -> None:
            _score_layer(acc, layer, pat[0].float().cpu(), tg, perm, gen, n_perm)

        lens.capture(torch.tensor([p.ids]), on_layer=fn)
    means = {name: acc.mean(name) for name in acc.sums}
    perm_means = None
    if perm is not None:
        perm_means = {name: (s / acc.counts[name].clamp(min=1)[None, :, None]).float()
                      for name, s in perm.items()}
    return means, perm_means


# ---------------------------------------------------------------------- taxonomy


def classify(
    lens: LensModel,
    prompts: Optional[Sequence[str]] = None,
    n_random: int = 16,
    n_natural: int = 16,
    null_seeds: int = 2,
    n_perm: int = 50,
    margin: float = 0.1,
    broad_entropy: float = 0.85,
    seed: int = 0,
    progress: bool = False,
) -> HeadReport:
    """Score every head of ``lens`` over the battery and classify it against the nulls."""
    bat = (random_battery(lens, n_random, seed=seed, vary=True)
           + natural_battery(lens, prompts, n_natural, seed))
    steps = [("trained model", lambda: score_battery(lens, bat, True, n_perm, seed))]
    for s in range(null_seeds):
        steps.append((f"re-initialised model {s}",
                      lambda s=s: score_battery(lens.reinitialized(1000 + s), bat, False)))
    results = []
    if progress:
        with Progress(transient=True) as bar:
            t = bar.add_task("scoring heads", total=len(steps))
            for label, fn in steps:
                bar.update(t, description=f"scoring heads: {label}")
                results.append(fn())
                bar.advance(t)
    else:
        results = [fn() for _, fn in steps]
    (means, perm), nulls = results[0], [r[0] for r in results[1:]]
    L, H = lens.n_layer, lens.n_head
    offsets = sorted(int(k[6:]) for k in means if k.startswith("offset"))

    # pooled re-init null per score: every head of every null model
    def pooled(name: str) -> np.ndarray:
        vals = [n[name].flatten().numpy() for n in nulls if name in n]
        v = np.concatenate(vals) if vals else np.array([np.nan])
        return v[np.isfinite(v)] if np.isfinite(v).any() else np.array([np.nan])

    null_summary = {}
    for name in list(MASS_SCORES[:-1]) + [f"offset{d}" for d in offsets] + ["entropy"]:
        v = pooled(name)
        null_summary[name] = {"reinit_mean": float(np.mean(v)), "reinit_hi": float(np.quantile(v, 0.99)),
                              "reinit_lo": float(np.quantile(v, 0.01))}
    heads = []
    for layer in range(L):
        for h in range(H):
            scores, nul, excess = {}, {}, {}
            for name in MASS_SCORES[:-1]:
                val = float(means[name][layer, h]) if name in means else float("nan")
                scores[name] = val
                nul[name] = _null_entry(null_summary[name], perm, name, layer, h, margin)
                if math.isfinite(val) and math.isfinite(nul[name]["threshold"]):
                    excess[name] = val - nul[name]["threshold"]
            # best fixed offset other than 1 (that is previous-token)
            cand = [d for d in offsets if d != 1]
            offs = {d: float(means[f"offset{d}"][layer, h]) for d in cand}
            best = max(offs, key=lambda d: offs[d]) if offs else 0
            scores["best_offset"] = best
            scores["offset"] = offs.get(best, float("nan"))
            key = f"offset{best}"
            nul["offset"] = _null_entry(null_summary[key], perm, "prev_token", layer, h, margin)
            if math.isfinite(scores["offset"]):
                excess["offset"] = scores["offset"] - nul["offset"]["threshold"]
            ent = float(means["entropy"][layer, h])
            scores["entropy"] = ent
            ne = null_summary["entropy"]
            nul["entropy"] = {"reinit_mean": ne["reinit_mean"], "reinit_lo": ne["reinit_lo"],
                              "focus_threshold": 1 - ne["reinit_lo"] + margin}
            cleared = {k: v for k, v in excess.items() if v > 0}
            if cleared:
                win = max(cleared, key=lambda k: cleared[k])
                cls = CLASS_OF[win]
                ev = (f"{win} {scores[win]:.3f} clears threshold {nul[win]['threshold']:.3f} "
                      f"(re-init hi {nul[win]['reinit_hi']:.3f}, permutation hi "
                      f"{nul[win]['perm_hi']:.3f}, margin {margin})")
            elif ent >= broad_entropy:
                win, cls = None, HeadClass.BROAD
                ev = f"no structure score clears its null; entropy {ent:.3f} >= {broad_entropy}"
            elif 1 - ent >= nul["entropy"]["focus_threshold"]:
                win, cls = None, HeadClass.OTHER_STRUCTURED
                ev = (f"concentrated (1 - entropy = {1 - ent:.3f} >= "
                      f"{nul['entropy']['focus_threshold']:.3f}) but on no named target")
            else:
                win, cls = None, HeadClass.RANDOM_LIKE
                ev = f"no score clears its null; entropy {ent:.3f}"
            heads.append({"layer": layer, "head": h, "class": cls,
                          "offset": best if cls is HeadClass.POSITIONAL else None,
                          "winning_score": win,
                          "scores": scores, "null": nul, "excess": excess, "evidence": ev})
    battery = {"random": n_random, "natural": len(bat) - n_random,
               "user_prompts": prompts is not None}
    null_doc = {"reinit_seeds": null_seeds, "permutations": n_perm, "quantile": 0.99,
                "rule": "class when score >= max(reinit_hi, perm_hi) + margin; largest excess wins"}
    return HeadReport(lens.name, L, H, margin, broad_entropy, heads, battery, null_doc)


def _null_entry(ns: dict, perm: Optional[dict], name: str, layer: int, h: int,
                margin: float) -> dict:
    if perm is not None and name in perm:
        pv = perm[name][:, layer, h].numpy()
        p_mean, p_hi = float(pv.mean()), float(np.quantile(pv, 0.99))
    else:
        p_mean = p_hi = float("nan")
    r_hi = ns["reinit_hi"]
    finite = [x for x in (r_hi, p_hi) if math.isfinite(x)]
    thr = max(finite) + margin if finite else float("nan")  # score undefined for this model
    return {"reinit_mean": ns["reinit_mean"], "reinit_hi": r_hi, "perm_mean": p_mean,
            "perm_hi": p_hi, "threshold": thr}


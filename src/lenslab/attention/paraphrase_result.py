"""The paraphrase-stability result: per-head numbers, the pairs behind them, and its page.

:class:`ParaphraseResult` holds everything its page shows, the captured attention of the groups
the viewers need included (quantized), so ``paraphrase.json`` renders without the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from lenslab._io import finite_or_none, num
from lenslab.attention import viewer
from lenslab.attention.classes import label, parse_class
from lenslab.attention.viewer import load_head_info
from lenslab.html import (
    escape,
    figure_block,
    figure_to_svg,
    fmt,
    fmt_interval,
    pyplot,
    table_html,
)
from lenslab.result import Result

PROFILE_FEATURES = ("entropy", "offset", "first_token", "special_tokens", "non_word")

# Verdicts of :meth:`ParaphraseResult.verdict` and their short labels (viewer grid, CLI table).
SHORT_VERDICT = {
    "more stable than unrelated sentences": "stable",
    "less stable than unrelated sentences": "phrasing-sensitive",
    "not distinguishable from unrelated sentences": "like unrelated",
    "little attention on shared words": "non-word",
    "no comparable pair": "n/a",
    "no null": "no null",
}

#: The per-head arrays ``[layer, head]``, with the record key each is written under.
_ARRAYS = {"stability": "stability", "profile": "profile_similarity", "null": "null",
           "null_profile": "null_profile", "gap": "gap", "word_mass": "word_mass"}
#: The per-head intervals ``[2, layer, head]`` (low, high).
_INTERVALS = {"stability_ci": "stability_ci", "profile_ci": "profile_ci", "null_ci": "null_ci",
              "gap_ci": "gap_ci"}


@dataclass
class ParaphraseResult(Result):
    """Per-head paraphrase stability of one model on some groups of phrasings.

    Arrays are ``[layer, head]``; ``*_ci`` are ``[2, layer, head]`` (low, high); ``per_group``
    is ``[group, layer, head]``. ``phrasings[g]`` describes group ``g``'s phrasings (``text``,
    ``n_tokens``, ``words``, ``truncated``). ``captures[g]`` holds group ``g``'s attention as
    viewer inputs (only the groups a viewer shows); ``taxonomy`` the head classes to show
    (``"layer,head"`` to a label), when a head taxonomy was given.
    """

    kind = "paraphrase"
    title = "Paraphrase stability"

    model: str
    n_layer: int
    n_head: int
    phrasings: list[list[dict]]
    pairs: list[dict]  # {"group", "a", "b", "shared": [...], "used": bool}
    null_pairs: list[dict]  # {"a": text, "b": text, "source": "other groups" | "built-in"}
    stability: np.ndarray
    stability_ci: np.ndarray
    profile: np.ndarray
    profile_ci: np.ndarray
    null: np.ndarray
    null_ci: np.ndarray
    null_profile: np.ndarray
    gap: np.ndarray
    gap_ci: np.ndarray
    word_mass: np.ndarray
    per_group: np.ndarray  # [group, layer, head] mean attention similarity (NaN: no pair)
    sensitive: list[tuple[int, int]]
    settings: dict
    notes: list[str] = field(default_factory=list)
    captures: dict[int, list[dict]] = field(default_factory=dict)
    taxonomy: dict[str, str] = field(default_factory=dict)
    # the causal column: per head {"layer", "head", "role" (sensitive | stable), "effect",
    # "interval", "null", "moves", "n"}, from the interventions lab's aligned patching
    causal: list[dict] = field(default_factory=list)

    # -- reading ---------------------------------------------------------------------------
    def ranked(self) -> list[tuple[int, int]]:
        """The heads that are ranked (enough attention on shared words, a stability), least
        stable first: :attr:`sensitive` is its head."""
        L, H = self.n_layer, self.n_head
        ok = [(layer, h) for layer in range(L) for h in range(H)
              if self.word_mass[layer, h] >= self.settings["min_word_mass"]
              and np.isfinite(self.stability[layer, h])]
        return sorted(ok, key=lambda x: (self.stability[x], -np.nan_to_num(self.null[x])))

    def causal_heads(self, k: Optional[int] = None) -> list[tuple[tuple[int, int], str]]:
        """The heads the causal column patches: the ``k`` most phrasing-sensitive and the ``k``
        most stable (default ``k``: as many as :attr:`sensitive`), each with its role."""
        ranked = self.ranked()
        k = len(self.sensitive) if k is None else k
        sens = ranked[:k]
        stable = [x for x in reversed(ranked) if x not in sens][:k]
        return [(x, "sensitive") for x in sens] + [(x, "stable") for x in stable]

    def worst_group(self, layer: int, head: int) -> int:
        """The group whose phrasings this head treats least alike."""
        col = self.per_group[:, layer, head]
        return int(np.argmin(np.where(np.isfinite(col), col, np.inf)))

    def verdict(self, layer: int, head: int) -> str:
        """A short reading of one head's numbers."""
        if self.word_mass[layer, head] < self.settings["min_word_mass"]:
            return "little attention on shared words"
        if not np.isfinite(self.stability[layer, head]):
            return "no comparable pair"
        if not np.isfinite(self.gap_ci[0, layer, head]):
            return "no null"
        if self.gap_ci[0, layer, head] > 0:
            return "more stable than unrelated sentences"
        if self.gap_ci[1, layer, head] < 0:
            return "less stable than unrelated sentences"
        return "not distinguishable from unrelated sentences"

    def heads(self) -> list[dict]:
        """One JSON-safe record per head."""
        out = []
        for layer in range(self.n_layer):
            for h in range(self.n_head):
                rec: dict[str, Any] = {"layer": layer, "head": h}
                for attr, key in _ARRAYS.items():
                    rec[key] = finite_or_none(getattr(self, attr)[layer, h])
                for attr, key in _INTERVALS.items():
                    arr = getattr(self, attr)
                    rec[key] = [finite_or_none(arr[0, layer, h]), finite_or_none(arr[1, layer, h])]
                rec["per_group"] = [finite_or_none(x) for x in self.per_group[:, layer, h]]
                rec["verdict"] = self.verdict(layer, h)
                out.append(rec)
        return out

    # -- data ------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """Everything needed to read the result and draw its page, JSON-safe (NaN as null)."""
        groups = [{"phrasings": grp, "pairs": [{k: p[k] for k in ("a", "b", "shared", "used")}
                                               for p in self.pairs if p["group"] == g]}
                  for g, grp in enumerate(self.phrasings)]
        by_source: dict[str, int] = {}
        for p in self.null_pairs:
            by_source[p["source"]] = by_source.get(p["source"], 0) + 1
        heads = self.heads()
        return {
            "model": self.model,
            "n_layer": self.n_layer,
            "n_head": self.n_head,
            "settings": dict(self.settings),
            "measures": {
                "stability": "mean over paraphrase pairs of the Pearson correlation of "
                             "word-to-word attention restricted to shared words, rows renormalized",
                "profile_similarity": "1 - mean absolute difference of the head profile "
                                      f"({', '.join(PROFILE_FEATURES)}; each in [0, 1])",
                "null": "the same on unrelated sentence pairs of similar length",
                "intervals": f"{self.settings['ci']:.0%} percentile bootstrap over pairs "
                             f"({self.settings['n_boot']} resamples)",
            },
            "groups": groups,
            "null_pairs": {"count": len(self.null_pairs), "by_source": by_source,
                           "pairs": [{"a": p["a"], "b": p["b"], "source": p["source"]}
                                     for p in self.null_pairs]},
            "heads": heads,
            "most_sensitive": [dict(heads[layer * self.n_head + h], group=self.worst_group(layer, h))
                               for layer, h in self.sensitive],
            "notes": list(self.notes),
            "captures": {str(g): v for g, v in self.captures.items()},
            "taxonomy": dict(self.taxonomy),
            "causal": [dict(c) for c in self.causal],
        }

    @classmethod
    def from_dict(cls, d: dict) -> "ParaphraseResult":
        L, H = int(d["n_layer"]), int(d["n_head"])
        heads = d["heads"]

        def grid(key: str, i: Optional[int] = None) -> np.ndarray:
            vals = [num(h[key] if i is None else h[key][i]) for h in heads]
            return np.array(vals, dtype=float).reshape(L, H)

        arrays = {attr: grid(key) for attr, key in _ARRAYS.items()}
        arrays.update({attr: np.stack([grid(key, 0), grid(key, 1)])
                       for attr, key in _INTERVALS.items()})
        n_groups = len(d["groups"])
        per_group = np.array([[num(v) for v in h["per_group"]] for h in heads], dtype=float)
        per_group = per_group.T.reshape(n_groups, L, H) if n_groups else np.zeros((0, L, H))
        phrasings = [list(g["phrasings"]) for g in d["groups"]]
        pairs = [{"group": g, **p} for g, grp in enumerate(d["groups"]) for p in grp["pairs"]]
        return cls(str(d["model"]), L, H, phrasings, pairs, list(d["null_pairs"]["pairs"]),
                   per_group=per_group,
                   sensitive=[(int(e["layer"]), int(e["head"])) for e in d["most_sensitive"]],
                   settings=dict(d["settings"]), notes=list(d.get("notes", [])),
                   captures={int(g): v for g, v in (d.get("captures") or {}).items()},
                   taxonomy=dict(d.get("taxonomy") or {}),
                   causal=list(d.get("causal") or []), **arrays)

    # -- page ------------------------------------------------------------------------------
    def heading(self) -> str:
        return f"Paraphrase stability: {self.model}"

    def head_info(self) -> dict:
        """Per-head numbers in the viewer's head-info form (class: the taxonomy's class when
        one was given, else the stability verdict)."""
        info = {}
        for layer in range(self.n_layer):
            for h in range(self.n_head):
                cls = self.taxonomy.get(f"{layer},{h}") or SHORT_VERDICT[self.verdict(layer, h)]
                info[(layer, h)] = {
                    "class": cls,
                    "scores": {"stability": finite_or_none(self.stability[layer, h]),
                               "profile": finite_or_none(self.profile[layer, h]),
                               "word mass": finite_or_none(self.word_mass[layer, h])},
                    "null": {"stability": finite_or_none(self.null[layer, h]),
                             "profile": finite_or_none(self.null_profile[layer, h])},
                }
        return info

    def figure(self):
        """Stability, null and gap per head (layers x heads)."""
        plt = pyplot()
        fig, axes = plt.subplots(1, 3, figsize=(13, 0.45 * self.n_layer + 1.6), squeeze=False)
        panels = [(self.stability, "stability (paraphrases)", "viridis"),
                  (self.null, "null (unrelated pairs)", "viridis"),
                  (self.gap, "gap = stability - null", "RdBu")]
        for ax, (arr, name, cmap) in zip(axes[0], panels):
            im = ax.imshow(arr, cmap=cmap, vmin=-1, vmax=1, aspect="auto")
            ax.set_title(name, fontsize=10)
            ax.set_xlabel("head")
            ax.set_ylabel("layer")
            ax.set_xticks(range(self.n_head))
            ax.set_yticks(range(self.n_layer))
            ax.tick_params(labelsize=7)
            fig.colorbar(im, ax=ax, shrink=0.8)
        fig.tight_layout()
        return fig

    def _viewer(self, group: int, **opts: Any) -> str:
        if group not in self.captures:
            return ""
        inputs = [viewer.decode_input(x) for x in self.captures[group]]
        return viewer.viewer_fragment(inputs, self.head_info(), **opts)

    def sections(self, sub: int = 3) -> list[tuple[str, str]]:
        """``(heading, HTML)`` parts: summary, per-head map and table, the most sensitive heads
        each side by side, and an all-heads viewer. ``sub`` is the level of inner headings."""
        d = self.to_dict()
        st = self.settings
        notes = "".join(f"<div class='note'>{escape(n)}</div>" for n in self.notes)
        rows = [{"group": g, "phrasing": i + 1, "text": ph["text"], "tokens": ph["n_tokens"],
                 "words": " ".join(ph["words"])}
                for g, grp in enumerate(self.phrasings, 1) for i, ph in enumerate(grp)]
        pair_rows = [{"group": p["group"] + 1, "a": p["a"] + 1, "b": p["b"] + 1,
                      "shared words": " ".join(p["shared"]),
                      "used": "yes" if p["used"] else f"no (< {st['min_shared']} shared)"}
                     for p in self.pairs]
        n_used = sum(p["used"] for p in self.pairs)
        sources = ", ".join(f"{v} from {k}" for k, v in d["null_pairs"]["by_source"].items())
        summary = (
            f"<p>{n_used} paraphrase pairs in {len(self.phrasings)} group(s) against "
            f"{len(self.null_pairs)} unrelated pairs ({escape(sources or 'none')}). "
            "Stability is the Pearson correlation of word-to-word attention on the words two "
            "phrasings share (rows renormalized), averaged over pairs; 1 means the head attends "
            "between shared words the same way in every phrasing. Intervals: "
            f"{st['ci']:.0%} bootstrap over pairs ({st['n_boot']} resamples, "
            f"seed {st['seed']}).</p>" + notes + table_html(rows) + table_html(pair_rows))
        sens_rows = [{"head": f"L{e['layer']}H{e['head']}", "stability": e["stability"],
                      "95% interval": fmt_interval(*e["stability_ci"]), "null": e["null"],
                      "gap": e["gap"], "gap interval": fmt_interval(*e["gap_ci"]),
                      "profile": e["profile_similarity"], "word mass": e["word_mass"],
                      "verdict": e["verdict"], "worst group": e["group"] + 1}
                     for e in d["most_sensitive"]]
        sens = table_html(sens_rows)
        for e in d["most_sensitive"]:
            key = (e["layer"], e["head"])
            view = self._viewer(e["group"], heads=[key], select=key, hide_special=True)
            if view:
                sens += (f"<h{sub}>Layer {e['layer']}, head {e['head']}: group {e['group'] + 1}"
                         f"</h{sub}><p class='caption'>stability {fmt(e['stability'], 3)} "
                         f"{fmt_interval(*e['stability_ci'])}, null {fmt(e['null'], 3)}, "
                         f"profile similarity {fmt(e['profile_similarity'], 3)}; "
                         f"{escape(e['verdict'])}.</p>" + view)
        all_rows = [{"head": f"L{e['layer']}H{e['head']}", "stability": e["stability"],
                     "interval": fmt_interval(*e["stability_ci"]), "null": e["null"],
                     "gap": e["gap"], "profile": e["profile_similarity"],
                     "null profile": e["null_profile"], "word mass": e["word_mass"],
                     "verdict": e["verdict"]} for e in d["heads"]]
        sections = [
            ("Summary", summary),
            ("Stability per head", figure_block(figure_to_svg(self.figure()),
                                                "Left: paraphrase stability; middle: the same "
                                                "measure on unrelated sentence pairs; right: the "
                                                "gap.")
             + "<details><summary>All heads</summary>" + table_html(all_rows, digits=3)
             + "</details>"),
            ("Most phrasing-sensitive heads", sens or "<p>(no head qualifies)</p>"),
        ]
        if self.causal:
            sections.append(("Does the change matter?", self._causal_html()))
        first = self.worst_group(*self.sensitive[0]) if self.sensitive else 0
        overview = self._viewer(first, select=self.sensitive[0] if self.sensitive else (0, 0),
                                title=f"Group {first + 1}: every head; grid labels are stability "
                                      "verdicts (or taxonomy classes when given)")
        if overview:
            sections.append(("All heads, side by side", overview))
        return sections

    def _causal_html(self) -> str:
        rows = [{"head": f"L{c['layer']}H{c['head']}", "role": c["role"],
                 "stability": finite_or_none(self.stability[c["layer"], c["head"]]),
                 "output moves": c["effect"], "95% interval": fmt_interval(*c["interval"]),
                 "null (97.5%)": c["null"], "moves the output": "yes" if c["moves"] else "no"}
                 for c in self.causal]
        n = self.causal[0]["n"]
        return ("<p>Patching settles whether a pattern that changes matters. For the most "
                "phrasing-sensitive and the most stable heads, one phrasing's head output is "
                "copied into the other's at the tokens of the words they share (both "
                f"directions, {n} patches), and the other phrasing's output (the mean-pooled "
                "last residual stream) is measured: how far it moves toward the first one's, as "
                "a fraction of the way (0: not at all, 1: all the way). The null is the same "
                "patch in a random direction of the same size; a head moves the output when its "
                "interval clears it.</p>" + table_html(rows, digits=3))

    def fragment(self, level: int = 3) -> str:
        """The result as HTML to embed in another lenslab page, headings at ``level`` (the page
        must carry the viewer's assets: :meth:`assets`)."""
        return "".join(f"<h{level}>{heading}</h{level}>{body}"
                       for heading, body in self.sections(sub=level + 1))

    def to_html(self) -> str:
        return self.fragment(level=3)

    def assets(self) -> tuple[str, str]:
        return viewer.assets() if self.captures else ("", "")


def taxonomy_labels(head_info: Any) -> dict[str, str]:
    """``{"layer,head": label}`` of the heads in a head taxonomy (heads.json, a HeadReport's
    heads, ...) that name a class."""
    out = {}
    for (layer, h), e in load_head_info(head_info).items():
        cls, off = parse_class(e.get("class"), None)
        if cls is not None:
            out[f"{layer},{h}"] = e.get("label") or label(cls, off)
    return out

"""The attention lab's entry points: what ``lenslab heads`` runs, as a Python API."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Optional

import torch

from lenslab._io import atomic_write_json
from lenslab.attention.attribution import Importance, head_importance, rollout
from lenslab.attention.capture import GPTLens, LensModel, load_lens
from lenslab.attention.heads import HeadReport, classify, random_battery, read_prompt_file
from lenslab.report.html import Page, escape, figure_block, figure_to_svg


def structure_vs_importance_figure(report: HeadReport, imp: Importance):
    """Each head: how structured it looks (largest excess over its null) against how much the
    loss rises when it is zero-ablated."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    classes = sorted({h["class"].split("(")[0] for h in report.heads})
    cmap = plt.get_cmap("tab10")
    for i, c in enumerate(classes):
        pts = [h for h in report.heads if h["class"].split("(")[0] == c]
        xs = [max(h["excess"].values(), default=float("nan")) for h in pts]
        ys = [float(imp.zero[h["layer"], h["head"]]) for h in pts]
        ax.scatter(xs, ys, color=cmap(i % 10), label=c, s=28)
        for h, x, y in zip(pts, xs, ys):
            ax.annotate(f"L{h['layer']}H{h['head']}", (x, y), fontsize=7, xytext=(3, 2),
                        textcoords="offset points")
    ax.axvline(0, color="#999", lw=0.8, ls="--")
    ax.axhline(0, color="#999", lw=0.8)
    ax.set_xlabel("structure: largest score excess over its null threshold")
    ax.set_ylabel(f"importance: change of {imp.metric_name} when zero-ablated")
    ax.legend(fontsize=8, frameon=False)
    ax.grid(alpha=0.25)
    fig.tight_layout()
    return fig


def rollout_figure(lens: LensModel, ids: torch.Tensor, strings: list[str]):
    import matplotlib.pyplot as plt

    R = rollout(lens, ids).numpy()
    fig, ax = plt.subplots(figsize=(5.2, 4.6))
    ax.imshow(R, cmap="Blues")
    n = len(strings)
    if n <= 40:
        ax.set_xticks(range(n), strings, rotation=90, fontsize=6)
        ax.set_yticks(range(n), strings, fontsize=6)
    ax.set_xlabel("source token (key)")
    ax.set_ylabel("position (query)")
    ax.set_title("attention rollout", fontsize=10)
    fig.tight_layout()
    return fig


def run_heads(model: str | LensModel, out: str | Path, prompts_file: Optional[str | Path] = None,
              progress: bool = True, command: Optional[str] = None) -> HeadReport:
    """Classify every head, measure importance (lenslab runs), write heads.json and heads.html."""
    lens = load_lens(model) if not isinstance(model, LensModel) else model
    prompts = read_prompt_file(prompts_file) if prompts_file is not None else None
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report = classify(lens, prompts, progress=progress)
    data = report.to_dict()
    data["command"] = command or " ".join(shlex.quote(a) for a in sys.argv)
    imp = None
    if isinstance(lens, GPTLens):
        batch = torch.tensor([p.ids for p in random_battery(lens, 16, seed=1)])
        imp = head_importance(lens, batch)
        data["importance"] = imp.to_dict()
        for h in data["heads"]:
            h["importance"] = {"zero_ablation": float(imp.zero[h["layer"], h["head"]]),
                               "mean_ablation": float(imp.mean[h["layer"], h["head"]])}
    atomic_write_json(out / "heads.json", data)
    page = Page(f"Heads of {lens.name}", "Head taxonomy against re-initialised and permutation "
                "nulls. Command: " + data["command"])
    page.add("Taxonomy", report.to_html())
    if imp is not None:
        page.add("Structure against importance",
                 "<p>A head that looks structured need not matter, and the reverse. Importance is "
                 f"the rise of the loss on repeated random tokens (baseline {imp.baseline:.3f}) "
                 "when the head's output is zeroed.</p>"
                 + figure_block(figure_to_svg(structure_vs_importance_figure(report, imp))))
    example = random_battery(lens, 1, length=min(12, lens.n_ctx // 2 - 1), seed=7)[0]
    strings = _token_strings(lens, example.ids)
    page.add("Rollout", figure_block(figure_to_svg(rollout_figure(lens, torch.tensor([example.ids]),
                                                                  strings)),
                                     "Rollout on repeated random tokens."))
    _add_viewer(page, lens, report)
    page.write(out / "heads.html")
    return report


def _token_strings(lens: LensModel, ids: list[int]) -> list[str]:
    tok = getattr(lens, "tokenizer", None)
    if tok is not None:
        return list(tok.convert_ids_to_tokens(ids))
    task = getattr(lens, "task", None)
    return task.token_str(ids) if task is not None else [str(i) for i in ids]


def _add_viewer(page: Page, lens: LensModel, report: HeadReport) -> None:
    """Embed the interactive viewer when it is available (lenslab.report.viewer)."""
    try:
        from lenslab.report import viewer
    except ImportError:
        return
    embed = getattr(viewer, "embed_section", None)
    if embed is None:
        return
    ex = random_battery(lens, 1, length=min(16, lens.n_ctx // 2 - 1), seed=3)[0]
    pats = lens.capture(torch.tensor([ex.ids]))
    page.add("Viewer", embed(page, [("repeated random tokens", _token_strings(lens, ex.ids), pats)],
                              head_info=report.heads))


__all__ = ["run_heads", "escape"]

"""The attention lab's entry points: what ``lenslab heads`` runs, as a Python API."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Optional

import torch

from lenslab._io import atomic_write_json
from lenslab.attention.attribution import Importance, head_importance, rollout
from lenslab.errors import ModelError
from lenslab.attention.capture import HFLens, LensModel, load_lens
from lenslab.attention.heads import HeadReport, classify, random_battery, read_prompt_file
from lenslab.html import pyplot, Page, escape, figure_block, figure_to_svg


def structure_vs_importance_figure(report: HeadReport, imp: Importance):
    """Each head: how structured it looks (largest excess over its null) against how much the
    loss rises when it is zero-ablated."""
    plt = pyplot()

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
    plt = pyplot()

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
    # a pretrained HF model is far larger than a lenslab run: 4 sequences keep its 2 x L x H
    # ablated forwards to seconds on a CPU
    n_seq = 4 if isinstance(lens, HFLens) else 16
    batch = torch.tensor([p.ids for p in random_battery(lens, n_seq, seed=1)])
    try:
        imp = head_importance(lens, batch)
    except ModelError as e:  # an architecture whose head outputs lenslab cannot reach
        data["importance_unavailable"] = str(e)
    if imp is not None:
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
                 + (f"the rise of the loss on repeated random tokens (baseline {imp.baseline:.3f})"
                    if imp.metric_name == "loss" else
                    "the shift of the mean-pooled representation of repeated random tokens "
                    "(1 - cosine to the unablated one)")
                 + " when the head's output is zeroed.</p>"
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


def add_viewer_assets(page: Page) -> None:
    """Inline the viewer's CSS and JS into ``page`` once (fragments need them)."""
    from lenslab.attention import viewer

    css, js = viewer.assets()
    if js not in page.scripts:
        page.scripts.append(js)
        page.extra_css += css


def viewer_block(lens: LensModel, report: Optional[HeadReport], texts: list[tuple[str, list[int]]],
                 title: str = "") -> str:
    """An interactive viewer fragment for token-id inputs, with the head classes beside heads."""
    from lenslab.attention import viewer

    inputs = []
    for name, ids in texts:
        pats = lens.capture(torch.tensor([ids]))
        tok = getattr(lens, "tokenizer", None)
        special = ([i in set(tok.all_special_ids) for i in ids] if tok is not None else None)
        d = {"title": name, "tokens": _token_strings(lens, ids), "patterns": pats}
        if special is not None:
            d["special"] = special
        inputs.append(d)
    return viewer.viewer_fragment(inputs, report.heads if report is not None else None, title=title)


def _add_viewer(page: Page, lens: LensModel, report: HeadReport) -> None:
    add_viewer_assets(page)
    ex = random_battery(lens, 1, length=min(16, lens.n_ctx // 2 - 1), seed=3)[0]
    page.add("Viewer", "<p>Click a head in the grid; hover tokens for weights.</p>"
             + viewer_block(lens, report, [("repeated random tokens", ex.ids)]))


__all__ = ["run_heads", "escape"]


PARAPHRASE_GROUP = [
    "What is the capital city of France?",
    "Which city is the capital of France?",
    "France's capital city is which one?",
    "Name the capital of France.",
]


def tour_chapter(out: Path, page: Page, quick: bool) -> str:
    """"Inside the model": the tour GPT's heads with evidence, MiniLM's taxonomy, a paraphrase
    group. Needs the training chapter's run (``out/runs/induction``)."""
    import time

    from lenslab.attention.capture import GPTLens
    from lenslab.html import table_html

    add_viewer_assets(page)
    parts = []
    run = out / "runs" / "induction"
    t0 = time.perf_counter()
    rep = run_heads(GPTLens.from_run(run), run / "analysis", progress=False,
                    command=f"lenslab heads {run} --out {run / 'analysis'}")
    gpt = GPTLens.from_run(run)
    data = __import__("json").loads((run / "analysis" / "heads.json").read_text())
    imp = data.get("importance")
    ind = [h for h in rep.heads if h["class"] == "induction"]
    prev = [h for h in rep.heads if h["class"] == "previous-token"]
    best = max(rep.heads, key=lambda h: h["scores"]["induction"])
    bn = best["null"]["induction"]
    if ind:
        finding = (
            f"The model trained in the first chapter has {len(prev)} previous-token head(s) and "
            f"{len(ind)} induction head(s). The best, L{best['layer']}H{best['head']}, puts "
            f"{best['scores']['induction']:.2f} of its attention on the token after the previous "
            f"occurrence of the current token, against a threshold of {bn['threshold']:.2f} from "
            f"its nulls (re-initialised weights, 99th percentile {bn['reinit_hi']:.3f}; its own "
            f"attention with shuffled keys, {bn['perm_hi']:.3f}). "
            + ("This is the two-layer induction circuit of Olsson et al. 2022: a layer-0 head "
               "copies the previous token into each position, a layer-1 head matches on it."
               if any(h["layer"] == 0 for h in prev) and all(h["layer"] >= 1 for h in ind) else ""))
    else:
        finding = (
            "The model trained in the first chapter has no induction head yet: its best "
            f"prefix-matching score is {best['scores']['induction']:.2f} (L{best['layer']}H"
            f"{best['head']}), under the threshold {bn['threshold']:.2f} set by its nulls. "
            "(Short training, e.g. `--quick`, stops before the phase change.)")
    parts.append("<h3>The tour's GPT</h3><p>" + escape(finding) + "</p>" + rep.to_html())
    if imp is not None:
        parts.append(figure_block(figure_to_svg(structure_vs_importance_figure(
            rep, _importance_from(imp))), "Structure against importance (rise of the loss on "
            "repeated random tokens when the head is zeroed)."))
    ex = random_battery(gpt, 1, length=min(16, gpt.n_ctx // 2 - 1), seed=3)[0]
    parts.append(viewer_block(gpt, rep, [("repeated random tokens", ex.ids)],
                              title="Attention of the tour's GPT"))
    try:
        minilm = load_lens("minilm")
    except Exception as e:  # the package is optional for users; say what is missing
        parts.append(f"<div class='note'>MiniLM section skipped: {escape(e)}</div>")
        return "".join(parts)
    mdir = out / "minilm"
    mrep = run_heads(minilm, mdir, progress=False, command=f"lenslab heads minilm --out {mdir}")
    counts: dict[str, int] = {}
    for h in mrep.heads:
        counts[h["class"]] = counts.get(h["class"], 0) + 1
    parts.append(
        "<h3>all-MiniLM-L6-v2 (pretrained, 6 layers x 12 heads)</h3>"
        "<p>The same battery and nulls on a real pretrained model. "
        + escape(", ".join(f"{k}: {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])))
        + ". Many heads park their attention on [CLS] (sink heads: a no-op when there is nothing "
        "to attend to), layer 0 holds most of the broad heads, and a few heads are sharply "
        "structured (previous-token, duplicate-token, next-token).</p>"
        + figure_block(figure_to_svg(mrep.grid_figure()))
        + "<details><summary>all 72 heads with evidence</summary>"
        + table_html(mrep.table_rows(), digits=3) + "</details>")
    try:
        from lenslab.attention.paraphrase import paraphrase_stability
    except ImportError:
        return "".join(parts)
    pres = paraphrase_stability(minilm, [PARAPHRASE_GROUP], head_info=mrep.heads,
                                n_boot=200 if quick else 1000, top=3)
    from lenslab._io import atomic_write_json

    atomic_write_json(mdir / "paraphrase.json", pres.to_dict())
    parts.append("<h3>The same question, phrased four ways</h3><p>"
                 + " / ".join(escape(s) for s in PARAPHRASE_GROUP) + "</p>" + pres.fragment(level=4))
    parts.append(f"<p class='caption'>Attention chapter computed in {time.perf_counter() - t0:.0f} s."
                 "</p>")
    return "".join(parts)


def _importance_from(d: dict) -> Importance:
    return Importance(d["metric"], d["baseline"], torch.tensor(d["zero_ablation"]),
                      torch.tensor(d["mean_ablation"]))

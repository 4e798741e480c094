"""Tour chapter "Does it matter?": patching, path patching and attribution patching of the tour
GPT's induction circuit, beside the head classes of "Inside the model"."""

from __future__ import annotations

from pathlib import Path

from lenslab.html import Page, escape, fmt
from lenslab.interventions import lens_run, patch_run, path_run
from lenslab.result import read_result, write_result

LENGTH = 32  # tokens per prompt: a repeated sequence of 17 with the answer in its second period


def chapter(out: Path, page: Page, quick: bool) -> str:
    """Needs the training chapter's run (``out/runs/induction``); reads the head classes the
    attention chapter wrote, when it did."""
    run = out / "runs" / "induction"
    n, boot = (32, 200) if quick else (64, 500)
    cmd = f"lenslab patch {run} --length {LENGTH} --n {n}"
    heads = patch_run(run, "heads", n=n, bootstrap=boot, length=LENGTH)
    write_result(heads, run / "analysis", cmd)
    classes: dict = {}
    try:
        classes = read_result(run / "analysis" / "heads.json").classes()
    except Exception:  # noqa: BLE001 - the attention chapter may have failed; say less, not nothing
        classes = {}

    def name(layer: int, head: int) -> str:
        c = classes.get((layer, head))
        return f"L{layer}H{head}" + (f" ({c.value})" if c is not None else "")

    if heads.nothing_to_restore:
        return ("<p>" + escape(heads.summary) + ": the tour's GPT has not learned to copy, so "
                "there is no answer for a component to carry.</p>" + heads.to_html())
    best0 = max(range(len(heads.cols)), key=lambda h: heads.effect[0][h])
    path = path_run(run, (0, best0), n=n, bootstrap=boot, length=LENGTH)
    write_result(path, run / "analysis", f"lenslab path {run} --sender L0H{best0} --length {LENGTH}")
    lens = lens_run(run, n=4 * n, length=LENGTH)
    write_result(lens, run / "analysis", f"lenslab lens {run} --length {LENGTH}")
    joint = heads.joint.get(f"all heads of layer {len(heads.rows) - 1}")
    carrying = sorted((c for c in heads.components() if c["carries"]), key=lambda c: -c["effect"])
    carriers = ", ".join(f"{name(c['layer'], c['head'])} {fmt(c['effect'], 2)}"
                         for c in carrying[:5])
    k = path.via.index("k")
    v = path.via.index("v")
    text = (
        "Inside the model said which heads look like an induction circuit. Patching asks whether "
        "they carry the answer: each head's output is copied from a clean prompt (a repeated "
        "sequence whose last token occurred once before) into a corrupted one (that earlier "
        "occurrence replaced), and the answer's log-probability is read, 0 for the corrupted "
        "run and 1 for the clean one. "
        + (f"The last layer's heads together restore {fmt(joint[0], 3)} (interval "
           f"{fmt(joint[1], 3)} to {fmt(joint[2], 3)}). " if joint else "")
        + f"Heads that clear both nulls: {carriers or 'none'}. "
        f"Path patching from {name(0, best0)} to the next layer's heads: {fmt(path.effect[k], 2)} "
        f"through their keys ({'clears' if path.clears('k') else 'does not clear'} the null), "
        f"{fmt(path.effect[v], 2)} through their values: "
        + ("K-composition, as in Olsson et al.'s induction circuit. " if path.clears("k")
           and path.effect[v] < path.effect[k] else "not the K-composition of an induction "
           "circuit. ")
        + (f"Attribution patching (one backward pass, AtP*) ranks the heads at Spearman "
           f"{fmt(heads.attribution_spearman, 2)} against real patching. "
           if heads.attribution_spearman is not None else "")
        + f"Logit lens: {lens.summary}.")
    return ("<p>" + escape(text) + "</p>" + heads.to_html() + "<h3>Path patching</h3>"
            + path.to_html() + "<h3>Logit lens</h3>" + lens.to_html())

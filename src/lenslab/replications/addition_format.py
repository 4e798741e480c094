"""Format decides how much data addition needs (Lee et al. 2023, "Teaching Arithmetic to Small
Transformers"): with the answer written least significant digit first, the order in which
carries are computed, a small transformer learns 3-digit addition from far fewer examples than
with the answer written as usual.

Published (the authors' ``plots/sample_efficiency.csv`` in ``lee-ny/teaching_arithmetic``; a
6-layer, 384-wide NanoGPT, 5000 steps of batch 256 on carry-balanced data, exact match on 9,900
held-out questions): with 4,000 training examples, 98.2% reversed against 62.3% plain; with
2,000, 30.7% against 1.7%; plain stays under 91% up to 20,000.

Here, on a CPU: a 4-layer, 128-wide GPT trained on ``n_train`` distinct questions with operands
drawn uniformly from 0..999 and written as numbers are (``7+35=42$``, no zero padding, as Lee et
al.; not their carry-balanced sampling), evaluated greedily on questions never trained. The counterfactual probe then asks each model whether ``b + a`` gets
the answer of ``a + b``: a model that learned addition, not a table, answers both alike.
"""

from __future__ import annotations

from pathlib import Path

from lenslab.config import RunConfig, config_from_dict
from lenslab.html import Page, escape, figure_block, figure_to_svg, pyplot, table_html
from lenslab.probes import counterfactual
from lenslab.replications import (
    Replication,
    finish,
    json_block,
    register,
    train_fresh,
    verdict_html,
)
from lenslab.run import Run

#: Lee et al.'s exact match (%) by number of training examples, from their repository's
#: ``plots/sample_efficiency.csv``.
PUBLISHED = {1000: (0.39, 1.57), 2000: (1.74, 30.65), 3000: (28.75, 79.14),
             4000: (62.25, 98.17), 5000: (81.09, 99.83), 10000: (87.42, 100.0)}
#: The training-set size compared, and the targets at it.
N_TRAIN = 4000
REVERSED_AT_LEAST = 0.90
GAP_AT_LEAST = 0.25


def addition_config(fmt: str, n_train: int = N_TRAIN, steps: int = 3000, seed: int = 0) -> RunConfig:
    """A 4-layer GPT on ``n_train`` 3-digit questions, answer ``fmt`` ("plain" | "reversed");
    AdamW as Lee et al. (lr 1e-3, betas 0.9/0.99, weight decay 0.1, 100 warmup steps, cosine
    to a tenth, dropout 0.2, batch 256)."""
    return config_from_dict({
        "name": f"addition-{fmt}-{n_train}", "seed": seed,
        "model": {"kind": "gpt", "n_layer": 4, "n_head": 4, "d_model": 128, "n_ctx": 16,
                  "dropout": 0.2},
        "data": {"task": "addition", "digits": 3, "base": 10, "format": fmt, "pad": False,
                 "n_train": n_train},
        "optim": {"lr": 1e-3, "warmup_steps": 100, "weight_decay": 0.1, "betas": [0.9, 0.99],
                  "batch_size": 256, "grad_clip": 1.0},
        "train": {"max_steps": steps, "eval_every": 250, "checkpoint_every": 500},
    }, "addition_format")


def _figure(curves: dict[str, list[dict]]):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.6))
    colors = {"plain": "#b3261e", "reversed": "#1b7f3b"}
    for fmt, mets in curves.items():
        ev = [m for m in mets if "exact_match" in m]
        ax.plot([m["step"] + 1 for m in ev], [m["exact_match"] for m in ev], "o-", ms=3,
                color=colors[fmt], label=f"{fmt} (Lee et al.: {PUBLISHED[N_TRAIN][fmt == 'reversed']:.1f}%)")
    ax.axhline(REVERSED_AT_LEAST, color="#999", ls=":", lw=1)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("step")
    ax.set_ylabel("exact match, held-out questions")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


@register("addition-format", "reversed answers need far fewer examples than plain ones for "
                             "3-digit addition (Lee et al. 2023)")
def replicate_addition_format(out: Path, progress: bool = True, steps: int = 3000,
                              n_train: int = N_TRAIN) -> Replication:
    measured: dict = {"n_train": n_train, "published_percent": {
        "plain": PUBLISHED.get(n_train, (None, None))[0],
        "reversed": PUBLISHED.get(n_train, (None, None))[1]}}
    short: list[str] = []
    curves, probes = {}, {}
    for fmt in ("plain", "reversed"):
        run = out / f"addition-{fmt}"
        res, m, s = train_fresh(addition_config(fmt, n_train, steps), run, progress)
        short += s
        mets = Run(run).metrics()
        curves[fmt] = mets
        last = [x for x in mets if "exact_match" in x]
        measured[fmt] = {**m, "exact_match": last[-1]["exact_match"] if last else None,
                         "digit_acc": last[-1]["digit_acc"] if last else None}
        if res.status == "completed":
            cf = counterfactual(run, "swap", n=1000, bootstrap=500)
            probes[fmt] = cf
            measured[fmt]["swap_probe"] = {"verdict": cf.verdict, "consistency": cf.consistency,
                                           "acc_original": cf.acc_original,
                                           "acc_swapped": cf.acc_variant}
    pl, rv = measured["plain"].get("exact_match"), measured["reversed"].get("exact_match")
    if rv is not None and pl is not None:
        if rv < REVERSED_AT_LEAST:
            short.append(f"reversed exact match {rv:.3f} < {REVERSED_AT_LEAST}")
        if rv - pl < GAP_AT_LEAST:
            short.append(f"reversed beats plain by {rv - pl:+.3f}, not by {GAP_AT_LEAST} or more")
    targets = (f"with {n_train} training questions, held-out exact match of the reversed format "
               f">= {REVERSED_AT_LEAST} and at least {GAP_AT_LEAST} above the plain format "
               f"(Lee et al.: {PUBLISHED.get(n_train, ('?', '?'))[1]}% against "
               f"{PUBLISHED.get(n_train, ('?', '?'))[0]}%)")
    page = Page("Replication: answer format and sample efficiency in addition",
                "Lee et al. 2023, on this CPU: the same model and data, the answer written most "
                "significant digit first (plain) or least significant first (reversed).")
    page.add("Result", verdict_html(not short, short, targets), "result")
    rows = [{"training questions": n, "plain (%)": p, "reversed (%)": r}
            for n, (p, r) in PUBLISHED.items()]
    page.add("Published", table_html(rows) + "<p class='caption'>Lee et al.'s exact match by "
             "training-set size (6-layer NanoGPT, carry-balanced data; their repository's "
             "plots/sample_efficiency.csv).</p>", "published")
    if any(curves.values()):
        page.add("Curves", figure_block(figure_to_svg(_figure(curves)),
                 "Exact match on held-out questions during training."), "curves")
    if probes:
        page.add("What the swap probe says", "".join(
            f"<p><b>{escape(fmt)}</b>: {escape(cf.verdict)}; {escape(cf.summary)}</p>"
            for fmt, cf in probes.items()), "probe")
    page.add("Measured", json_block(measured)
             + f"<p class='caption'>Command: <code>lenslab replicate addition-format --out "
               f"{escape(out)}</code>.</p>", "measured")
    return finish("addition-format", out, page, measured, short)

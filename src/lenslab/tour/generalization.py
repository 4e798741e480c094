"""Tour chapter "Generalization": which rule a model learned, how far it carries to longer
inputs, and what a counterfactual variant shows."""

from __future__ import annotations

import shutil
from pathlib import Path

from lenslab.config import LSTMConfig, apply_overrides
from lenslab.examples import example_config
from lenslab.html import Page, escape, figure_block, figure_to_svg, table_html
from lenslab.probes import probe
from lenslab.result import write_result
from lenslab.run import Run
from lenslab.training import train

_POSITIONS = {"learned": "learned absolute positions (GPT-2)",
              "rope": "rotary positions (RoPE)", "none": "no positions at all"}


def _train(root: Path, name: str, task: str, sets: list[str], lstm: bool = False) -> Path:
    run = root / name
    if run.exists():
        shutil.rmtree(run)
    cfg = example_config(task)
    if lstm:  # the baseline: the same data and steps, the LSTM example's width and LR
        cfg = cfg.model_copy(update={
            "model": LSTMConfig(n_layer=1, d_model=128, n_ctx=cfg.model.n_ctx),
            "optim": cfg.optim.model_copy(update={"lr": example_config("lstm").optim.lr})})
    cfg = apply_overrides(cfg, [f"name=\"tour-{name}\"", *sets])
    res = train(cfg, run, progress=True)
    if res.status != "completed":
        raise RuntimeError(f"training {name} ended {res.status}: {res.message}")
    return run


def _probe(run: Path):
    res = probe(run)
    write_result(res, Run(run), f"lenslab probe {run}")
    return res


def chapter(out: Path, page: Page, quick: bool) -> str:
    root = out / "runs" / "probes"
    parts = []

    # Two rules: the same data, three position encodings.
    steps = 250 if quick else 600
    positions = ("learned", "rope") if quick else ("learned", "rope", "none")
    tests = {p: _probe(_train(root, f"repeat-{p}", "repeat",
                              [f"model.position={p}", f"train.max_steps={steps}"]))
             for p in positions}
    rows = [{"positions": _POSITIONS[p], "right where rules agree": t.in_distribution_acc,
             **{t_: t.shares[t_] for t_ in t.rules}, "verdict": t.verdict}
            for p, t in tests.items()]
    first = tests["learned"]
    parts.append(
        "<h3>Two rules fit the data: which one did the model learn?</h3>"
        f"<p>A 2-layer attention-only GPT is trained for {steps} steps on random tokens "
        f"repeated with a period of {first.trained_period}. Three rules predict every repeated "
        "token equally well: <b>induction</b> (find the previous occurrence of the current "
        "token and copy what followed it: the rule we mean), <b>offset</b> (copy the token "
        f"{first.trained_period - 1} places back) and <b>phase</b> (copy the token at the same "
        "place in the first period). Sequences of other periods, held out, tell them apart: at "
        "the positions where all three answers differ, the table gives the share of the "
        "model's answers each rule gives (the rest follow none). The same data and "
        "training, with only the position encoding changed:</p>"
        + table_html(rows, digits=3)
        + f"<p>{'; '.join(escape(_POSITIONS[p] + ': ' + t.summary) for p, t in tests.items())}"
        ". A model that is right on every training example can still have learned "
        "the wrong rule, and which wrong rule depends on what its architecture makes "
        "easy. (Give training sequences of other periods, <code>data.disambiguating</code>, "
        "and the rule follows the data.)</p>"
        + figure_block(figure_to_svg(first.figure()),
                       "The model with learned positions: shares of the disputed answers, "
                       "overall and at each probe period.")
        + "<p class='caption'>Commands: <code>lenslab init repeat &gt; repeat.toml; lenslab "
        "train repeat.toml --out RUN --set model.position=rope; lenslab probe RUN</code>.</p>")

    if quick:  # two more trainings; tests/test_probes.py covers both sections' measures
        parts.append("<div class='note'>Length generalization and a counterfactual variant are "
                     "in the full tour (<code>lenslab tour</code>, without --quick).</div>")
        return "".join(parts)

    # Length: trained on 1-8, asked 1-16.
    steps = 800
    lengths = {p: _probe(_train(root, f"copy-{p}", "sequence",
                                [f"model.position={p}", f"train.max_steps={steps}"]))
               for p in ("learned", "rope")}
    lengths["lstm"] = _probe(_train(root, "copy-lstm", "sequence",
                                    [f"train.max_steps={steps}"], lstm=True))
    lt = lengths["learned"]
    parts.append(
        "<h3>Length generalization</h3>"
        f"<p>The same GPT with an MLP learns to copy strings of {lt.train_range[0]} to "
        f"{lt.train_range[1]} symbols ({steps} steps), then is asked every length up to "
        f"{lt.lengths[-1]}"
        + (", and so is an LSTM trained the same way" if "lstm" in lengths else "")
        + f". {'; '.join(escape(t.model + ': ' + t.summary) for t in lengths.values())}. "
        "Exact match needs every answer token right; per-token accuracy shows how far into "
        "the answer the model stays right. A learned position table has nothing for positions "
        "it never saw; what the LSTM loses, it loses gradually, as its state fills.</p>"
        + figure_block(figure_to_svg(lt.figure(others=[t for p, t in lengths.items() if p != "learned"])),
                       "Exact match (with 95% intervals) and per-token accuracy at each length; "
                       "the shaded band is the training range."))

    # Counterfactual: a memorizing modular-addition model, asked b + a for a + b.
    steps = 400
    cf = _probe(_train(root, "modadd", "modular_addition",
                       ["data.p=13", "data.train_fraction=0.5", f"train.max_steps={steps}",
                        "train.checkpoint_every=100"]))
    parts.append(
        "<h3>A counterfactual variant</h3>"
        f"<p>A 1-layer transformer trained {steps} steps on half of all pairs (a, b) of "
        "addition mod 13 fits its training set but has not grokked. Each held-out question "
        "is asked again with its operands swapped.</p>" + cf.to_html())
    return "".join(parts)

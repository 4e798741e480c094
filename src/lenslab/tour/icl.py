"""Tour chapter "Learning in context": the induction phase change, a transformer against an
LSTM, and which algorithm a small GPT runs in context."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from lenslab.config import RunConfig, config_from_dict
from lenslab.examples import example_config
from lenslab.html import Page, escape, figure_block, figure_to_svg
from lenslab.icl.algorithms import compare_algorithms, load_regression_model
from lenslab.icl.score import compare, measure_icl
from lenslab.replications import fresh
from lenslab.replications.lsa_gd import lsa_gd_experiment, lsa_gd_figure
from lenslab.result import write_result
from lenslab.run import Run
from lenslab.training import train


def chapter(out: Path, page: Page, quick: bool) -> str:
    """The phase change of the tour's GPT (needs the training chapter's run), a transformer
    against an LSTM on the same data and token budget, and in-context regression against known
    algorithms."""
    run = out / "runs" / "induction"
    parts = []
    rep = measure_icl(run)
    ph = rep.phase
    write_result(rep, Run(run), f"lenslab icl {run} --out {run / 'analysis'}")
    parts.append(
        "<h3>The induction phase change</h3>"
        "<p>Every checkpoint of the first chapter's run, measured again: the best head's "
        "prefix-matching score, the best previous-token score, the loss on a repeated random "
        "sequence and the ICL score. Olsson et al. 2022 saw all of these change together in a "
        "narrow window of training; so does this model.</p>" + ph.to_html())
    gcfg = Run(run).config
    lcfg = example_config("lstm")
    lcfg = lcfg.model_copy(update={
        "name": "tour-lstm", "seed": gcfg.seed, "data": gcfg.data,
        "optim": lcfg.optim.model_copy(update={"batch_size": gcfg.optim.batch_size}),
        "train": lcfg.train.model_copy(update={"max_steps": gcfg.train.max_steps, "eval_every": 100,
                                               "checkpoint_every": 100})})
    lrun = out / "runs" / "lstm"
    if lrun.exists():
        shutil.rmtree(lrun)
    res = train(lcfg, lrun, progress=True)
    cmp_ = compare(run, lrun)
    gname, lname = cmp_.names
    g, l_ = cmp_.scores[gname], cmp_.scores[lname]
    if l_["loss_early"] - l_["loss_late"] < 0.1:
        lstm_says = (f"the LSTM has not learned to use its context at all in this budget (loss "
                     f"{l_['loss_early']:.2f} early, {l_['loss_late']:.2f} late): a sequence of up "
                     "to 32 random tokens must pass through its state, which it has not learned to do")
    else:
        lstm_says = (f"the LSTM improves too ({l_['loss_early']:.2f} to {l_['loss_late']:.2f}), "
                     "but less: what it recalls must have passed through its state")
    parts.append(
        "<h3>Transformer against LSTM</h3>"
        f"<p>An LSTM ({cmp_.params[lname]:,} non-embedding parameters) trained by the same trainer "
        f"on the same data and token budget ({res.step} steps) as the GPT "
        f"({cmp_.params[gname]:,}). Early in the context neither can do better than guess "
        f"({g['loss_early']:.2f} and {l_['loss_early']:.2f} nats at position {g['early'] + 1}). Later "
        f"the transformer copies from context (loss {g['loss_late']:.2f} at position "
        f"{g['late'] + 1}), while {escape(lstm_says)}. Kaplan et al. 2020 (fig. 7) describe LSTMs "
        "keeping up early in the context and falling behind later.</p>" + cmp_.to_html())
    if quick:  # two more trainings; tests/test_icl_algorithms.py covers the section itself
        parts.append("<h3>Which algorithm runs in context?</h3><div class='note'>In the full "
                     "tour (<code>lenslab tour</code>, without --quick).</div>")
    else:
        parts.append("<h3>Which algorithm runs in context?</h3>"
                     + regression_section(out / "runs", quick))
    return "".join(parts)


def _chapter_gpt_config(steps: int) -> RunConfig:
    """A small GPT on a small in-context regression problem (d = 3, 8 points), for the tour."""
    return config_from_dict({
        "name": "tour-icl-regression", "seed": 0,
        "model": {"kind": "gpt", "n_layer": 2, "n_head": 2, "d_model": 32, "n_ctx": 16},
        "data": {"task": "icl_regression", "d": 3, "n_points": 8, "x_dist": "normal",
                 "layout": "query_pair"},
        "optim": {"lr": 2e-3, "schedule": "cosine", "warmup_steps": 50, "betas": [0.9, 0.999],
                  "grad_clip": 1.0, "batch_size": 64},
        "train": {"max_steps": steps, "eval_every": max(steps // 10, 1),
                  "checkpoint_every": steps, "threads": 1},
    }, "tour icl-regression")


def regression_section(out_dir: Path, quick: bool) -> str:
    """The tour's in-context regression section (HTML): a linear self-attention layer against
    one step of gradient descent, and a small GPT against all the baselines, per k.

    Trains two runs under ``out_dir`` (``icl-lsa`` and ``icl-regression``), each replaced when
    it exists. About 10-20 s with ``quick``, 70-90 s without, on 2 shared cores.
    """
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    lsa_steps, gpt_steps = (500, 300) if quick else (600, 2000)
    parts = []

    lsa_dir = out_dir / "icl-lsa"
    exp = lsa_gd_experiment(lsa_dir, lsa_steps, progress=False)
    if exp["curve"]:
        last = exp["curve"][-1]
        parts.append(
            "<p>In-context linear regression: every sequence is a new problem "
            "<i>y = w&middot;x</i> with <i>w</i> ~ N(0, I), and the model must infer <i>w</i> "
            "from the pairs before the query. First, one linear self-attention layer (von Oswald "
            f"et al. 2023; d = 10, 10 examples, x uniform in [-1, 1]) trained for {exp['steps']} "
            f"steps: its held-out error is {last['mse']:.3f} against {last['mse_gd']:.3f} for one "
            f"step of gradient descent with the best step size ({100 * last['rel_gap']:+.1f}%), "
            f"and the cosine between its gradient with respect to the query and GD's is "
            f"{last['sens_cos']:.3f}. "
            + ("The layer has learned to take one GD step." if abs(last["rel_gap"]) <= 0.05
               and last["sens_cos"] >= 0.95 else
               "This short run is still on its way there; the replication (<code>lenslab "
               "replicate lsa-gd</code>, 5000 steps) asks for 2% and a cosine above 0.99.")
            + "</p>"
            + figure_block(figure_to_svg(lsa_gd_figure(exp["curve"], Run(exp["run"]).metrics(),
                                                        last["mse_gd"])),
                           "Left: loss of the LSA layer and of one optimal GD step. Right: cosine "
                           "of their input sensitivities."))
    else:
        parts.append(f"<p class='note'>The LSA run ended {escape(exp['status'])}: "
                     f"{escape(exp['message'])}</p>")

    run = out_dir / "icl-regression"
    fresh(run)
    res = train(_chapter_gpt_config(gpt_steps), run, progress=True)
    if res.status == "completed":
        model, task, step, cfg = load_regression_model(run)
        cmp_ = compare_algorithms(model, task, n_problems=300, model_name="GPT (2 layers)")
        cmp_.step = step
        write_result(cmp_, Run(run), f"lenslab algorithms {run}")
        kmax = cmp_.ks[-1]
        v = cmp_.verdict_at(kmax)
        parts.append(
            f"<p>Then a 2-layer GPT with a linear read-in and read-out (d = 3, up to {kmax} "
            f"examples, {res.step} steps), compared per number of examples k with least "
            "squares, ridge, 3-nearest neighbours, averaging and one line-searched GD step "
            "(Garg et al. 2022; Akyurek et al. 2022). With "
            f"{kmax} examples its normalized error is {cmp_.error_at(kmax):.3f} (least squares "
            f"{cmp_.error_at(kmax, 'least_squares'):.3f}, averaging "
            f"{cmp_.error_at(kmax, 'averaging'):.3f}) and its predictions are closest to "
            f"<b>{escape(cmp_.algorithms[v['closest']]['label'])}</b> (prediction distance "
            f"{v['distance']:.3f}, margin {v['margin']:.3f} over "
            f"{escape(cmp_.algorithms[v['runner_up']]['label'])}). A short run: the full "
            "replication is <code>lenslab replicate icl-regression</code>.</p>" + cmp_.summary_html()
            + f"<p class='caption'>Command: <code>lenslab algorithms {escape(run)}</code> "
              f"(written to <code>{escape(run / 'analysis')}</code>).</p>")
    else:
        parts.append(f"<p class='note'>The GPT run ended {escape(res.status)}: "
                     f"{escape(res.message)}</p>")
    parts.append(f"<p class='caption'>In-context regression computed in "
                 f"{time.perf_counter() - t0:.0f} s.</p>")
    return "".join(parts)

"""Tour chapter "Scaling": a small sweep, its fitted law with intervals, and an emergence verdict.

:func:`chapter` trains a family of small GPTs on 3-digit addition with
:func:`lenslab.scaling.sweep.run_sweep` (two workers of one thread each), fits
``L(N) = E + A N^-alpha`` to their final losses with bootstrap intervals
(:func:`lenslab.scaling.fit.fit_table`), checks the law against the largest model held out,
runs :func:`lenslab.scaling.diagnose.diagnose`, and asks :mod:`lenslab.emergence` whether
exact match on the same models' answers is emergent or a metric artifact. Everything is
measured by this call; the text around the numbers is generated from them.

Budget (2 cores): about 3 minutes in full mode (six sizes, 1000 steps), about 40 s in quick
mode (four sizes, 300 steps).
"""

from __future__ import annotations

import math
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from lenslab.emergence import EmergenceResult, analyze_csv
from lenslab.errors import LensError
from lenslab.html import Page, badge, escape, fmt, table_html
from lenslab.result import write_result
from lenslab.scaling import fit_table
from lenslab.scaling.diagnose import diagnose
from lenslab.scaling.sweep import SweepResult, run_sweep, write_predictions

#: (n_layer, d_model) of the sweep's models, and optimizer steps, per mode.
FULL_SHAPES = [(1, 16), (1, 24), (2, 32), (2, 48), (2, 64), (2, 96)]
FULL_STEPS = 1000
QUICK_SHAPES = [(1, 16), (1, 24), (2, 32), (2, 48)]
QUICK_STEPS = 200
BOOTSTRAP = 1000
#: Sizes below which the chapter skips :func:`lenslab.scaling.diagnose.diagnose` (the single law
#: of its bend test is only fitted with two points to spare).
DIAGNOSE_MIN_SIZES = 5
#: An exact-match curve whose whole range is below this gets a warning next to its verdict.
SMALL_CHANGE = 0.05



def chapter(out: Path, page: Page, quick: bool) -> str:
    """Run the chapter's sweep into ``out/scaling`` and return its HTML (trusted, escaped)."""
    out_dir = out / "scaling"

    shapes, steps = (QUICK_SHAPES, QUICK_STEPS) if quick else (FULL_SHAPES, FULL_STEPS)
    out = Path(out_dir) / "scaling" / ("addition-quick" if quick else "addition")
    if out.exists():  # every number in the tour is measured by this tour
        shutil.rmtree(out)
    cfg = addition_sweep_config(shapes, steps, workers=2, threads=1, name="tour-addition")
    result = run_sweep(cfg, out, progress=True)
    if result.exit_code != 0:

        detail = "; ".join(f"{k}: {v}" for k, v in result.messages.items()) or "interrupted"
        raise LensError(f"the chapter's sweep did not finish ({detail}); see {out}")
    rows = result.rows
    base = cfg["base"]
    n_sizes = len(rows)

    parts = [
        f"<p>{n_sizes} GPTs, from {min(r['N'] for r in rows):,} to {max(r['N'] for r in rows):,} non-embedding "
        f"parameters "
        f"({', '.join(f'{L}x{d}' for L, d in shapes)} layers x width), each trained for {steps} steps "
        f"of {base['optim']['batch_size']} problems on 3-digit addition (answers written least "
        f"significant digit first), with the same learning rate ({base['optim']['lr']:g}, cosine, "
        f"{base['optim']['warmup_steps']} warmup steps) and seed at every size. "
        f"<code>lenslab sweep</code> ran them as guarded run folders, two at a time "
        f"({result.elapsed_s:.0f} s).</p>",
        f"<p class='caption'>Folder: <code>{escape(out)}</code>; the sweep as run: "
        f"<code>{escape(out / 'sweep.toml')}</code>; table: <code>{escape(out / 'results.csv')}</code>.</p>",
        table_html([{k: r.get(k) for k in ("name", "N", "D", "loss", "val_loss", "exact_match", "digit_acc",
                                           "epochs", "guard_events")} for r in rows]),
        "<p class='caption'>loss: the final model's loss on training problems; val_loss, exact_match "
        "and digit_acc: on separately drawn problems at the end of training; epochs: training problems drawn / the 10<sup>6</sup> distinct "
        "problems.</p>",
    ]

    # --- the law --------------------------------------------------------------------------------
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = fit_table(out, "power", bootstrap=BOOTSTRAP, seed=0)
    p, iv = fit.params, fit.intervals
    resid = fit.residuals
    rmsle = float(math.sqrt(sum(float(r) ** 2 for r in resid) / len(resid)))
    parts.append("<h3>The fitted law</h3>")
    parts.append(
        f"<p><code>L(N) = E + A N<sup>-alpha</sup></code> fitted to the final losses (Huber loss on log "
        f"loss, L-BFGS from a grid of starts, {BOOTSTRAP} bootstrap resamples of the {fit.n_points} points): "
        f"alpha = {fmt(p['alpha'])} [{fmt(iv['alpha'][0])}, {fmt(iv['alpha'][1])}], "
        f"E = {fmt(p['E'])} [{fmt(iv['E'][0])}, {fmt(iv['E'][1])}] (95% intervals); the fit misses the points "
        f"by {rmsle:.2f} in log loss (root mean square).</p>")
    parts.append(fit.html())
    if n_sizes >= 5:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            held = fit_table(out, "power", bootstrap=BOOTSTRAP, seed=0, holdout_last=1)
        ho = held.holdout()
        pt = ho["points"][0]
        inside = pt.get("inside_interval")
        lo, hi = pt.get("interval", [math.nan, math.nan])
        verdict = ("inside" if inside else "outside") if inside is not None else "without"
        parts.append(
            f"<p><b>Does the law extrapolate?</b> Fitted without the largest model, it predicts "
            f"{fmt(pt['predicted'])} (95% interval [{fmt(lo)}, {fmt(hi)}]) for N = {int(pt['N']):,}; the model "
            f"measured {fmt(pt['loss'])}, {verdict} the interval, off by a factor "
            f"{math.exp(abs(ho['rmsle'])):.2f}"
            + (f"; an interval spanning a factor {hi / lo:,.0f} says the smaller models do not pin the "
               f"largest one down" if lo > 0 and hi / lo > 10 else "") + ".</p>")

    # --- the diagnosis ----------------------------------------------------------------------------
    parts.append("<h3>Where would it bend, and why?</h3>")
    supported: list[str] = []
    if n_sizes >= DIAGNOSE_MIN_SIZES:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dg = diagnose(out, n_boot=0)
        supported = [c.title for c in dg.checks if c.status == "supported"]
        parts.append(dg.html(figure=False))
        parts.append(f"<p>Causes that the runs' own records support: {escape(', '.join(supported) or 'none')}. "
                     f"With a bend test that cannot tell, these are checks of how the sweep was run, not "
                     f"explanations of a bend.</p>" if dg.bend.status == "cannot tell" else
                     f"<p>Causes that the runs' own records support: "
                     f"{escape(', '.join(supported) or 'none')}.</p>")
    else:
        parts.append(f"<p>{badge('skipped')} The bend test compares the single law with a broken one and "
                     f"needs at least {DIAGNOSE_MIN_SIZES} sizes (3 parameters and 2 points to spare); this "
                     f"sweep has {n_sizes}.</p>")

    # --- emergence --------------------------------------------------------------------------------
    pred, em = addition_emergence(out, n_boot=BOOTSTRAP, n_examples=cfg["predictions"])
    parts.append("<h3>Emergent, or the metric?</h3>")
    parts.append(
        f"<p>Every model answered the same {cfg['predictions']} problems "
        f"(<code>{escape(pred)}</code>, the input of <code>lenslab emergence</code>). Exact match scores "
        f"the whole answer; per-digit accuracy, edit distance, the log-likelihood and the Brier score of "
        f"the correct answer are continuous metrics of the same answers.</p>")
    parts.append(em.html())
    em_range = float(em.curves["exact_match"].values.max() - em.curves["exact_match"].values.min())
    if em_range < SMALL_CHANGE:
        hits = int(round(float(em.curves["exact_match"].values.max()) * cfg["predictions"]))
        parts.append(f"<div class='note'>Exact match moves by only {em_range:.3f} across all sizes (at best "
                     f"{hits} of {cfg['predictions']} answers right). A share that moves by less than "
                     f"0.05 is called flat, whatever its shape, so these models say nothing yet about "
                     f"emergence: the capability has not appeared in any of them.</div>")

    # --- what this can and cannot show ------------------------------------------------------------
    em_curve = em.curves["exact_match"].values
    lr_note = (" (the diagnosis lists the shared learning rate as a supported cause)"
               if "Learning rate not retuned across sizes" in supported else "")
    ratios = [b / a for a, b in zip(em.scales[:-1], em.scales[1:])] or [math.nan]
    parts.append("<h3>What a sweep this small can and cannot show</h3><ul>" + "".join(f"<li>{t}</li>" for t in [
        "It shows the machinery end to end on numbers measured here: a resumable sweep, a results table "
        "that <code>lenslab fit</code>, <code>diagnose</code> and <code>emergence</code> read, a law with "
        "intervals, a bend test and a verdict. It is not evidence about large models.",
        f"Every model was trained on {steps * base['optim']['batch_size']:,} problems ({steps} steps of "
        f"{base['optim']['batch_size']}): this is loss against N at one fixed D. The floor E mixes the irreducible loss with what {steps} steps "
        f"leave unlearned, so it is not the Chinchilla law L(N, D) and says nothing about how to split "
        f"compute between parameters and data.",
        f"{fit.n_points} points for a 3-parameter law: the bootstrap intervals are wide, and with this few "
        f"points they are themselves rough (resampling {fit.n_points} points drops whole sizes). Read the "
        f"width of the interval, not the third digit of alpha.",
        "Addition is learned as an algorithm: once a model can carry, its loss falls by orders of magnitude. "
        "A smooth power law is the wrong shape for such a transition"
        + (f", and the residuals show it (root mean square {rmsle:.2f} in log loss)" if rmsle > 0.1 else
           f"; the residuals are small here ({rmsle:.2f} in log loss), but that says more about how few "
           f"points there are than about the shape") + "; the law is fitted to demonstrate the fit, not "
        "because addition obeys it.",
        f"One seed per size and one learning rate for all sizes: at these sizes the seed alone can move a "
        f"model across the transition, and a learning rate tuned for the small models may not suit the "
        f"large ones{lr_note}. Exact match per size here was {', '.join(f'{v:.2f}' for v in em_curve)}.",
        f"The verdict is about these {len(em.scales)} models on this task after {steps} steps. Neighbouring "
        f"sizes differ by a factor {min(ratios):.1f} to {max(ratios):.1f} in N, so a change that happens "
        f"between two neighbours looks like a jump "
        f"under any metric; a denser grid around the jump (and more seeds) is what would separate a sharp "
        f"but continuous change from a discontinuity.",
    ]) + "</ul>")
    if quick:
        best = float(max(em_curve)) if len(em_curve) else math.nan
        parts.append(f"<div class='note'>Quick mode: {n_sizes} sizes and {steps} steps (best exact match "
                     f"{best:.2f}). This is a smoke test of the machinery; run the tour without --quick for "
                     f"{len(FULL_SHAPES)} sizes trained {FULL_STEPS} steps, long enough for the larger ones to "
                     f"learn to carry.</div>")
    return "".join(parts)


# ---------------------------------------------------------------------- the addition case


@dataclass
class AdditionCase:
    """The live case: the sweep, its predictions CSV and the emergence verdict."""

    sweep: SweepResult
    predictions: Path
    emergence: EmergenceResult

    def _repr_html_(self) -> str:
        return self.emergence.to_html()


def addition_emergence(sweep_dir: str | Path, n_boot: int = 1000, seed: int = 0,
                       n_examples: int = 512) -> tuple[Path, Any]:
    """The verdict for an addition sweep that has finished: ``(predictions.csv, EmergenceResult)``.

    Writes ``predictions.csv`` when it is missing, then ``emergence/emergence.json`` and
    ``emergence/emergence.html`` in the sweep folder.
    """
    sweep_dir = Path(sweep_dir)
    pred = sweep_dir / "predictions.csv"
    if not pred.is_file():
        pred = write_predictions(sweep_dir, n_examples)
    res = analyze_csv(pred, n_boot=n_boot, seed=seed)
    res.source = str(pred)
    write_result(res, sweep_dir / "emergence",
                 f"lenslab emergence {pred} --bootstrap {n_boot} --seed {seed} --out {sweep_dir / 'emergence'}")
    return pred, res


def addition_sweep_config(shapes: list[tuple[int, int]], steps: int, *, digits: int = 3, lr: float = 3e-3,
                          batch_size: int = 64, warmup: int = 50, seeds: tuple[int, ...] = (0,),
                          workers: int = 2, threads: int = 1, predictions: int = 512,
                          name: str = "addition") -> dict[str, Any]:
    """A sweep (as a dict for :func:`lenslab.scaling.sweep.run_sweep`) of GPTs on addition.

    ``shapes`` are ``(n_layer, d_model)`` pairs; each gets the most heads out of 8, 4, 2, 1
    that keeps every head at least 8 wide. The learning rate and warmup are the same for every
    size (a choice that :func:`lenslab.scaling.diagnose` reports as ``lr_not_retuned``).
    """
    shp = [{"n_layer": L, "d_model": d, "n_head": _heads(d)} for L, d in shapes]
    return {
        "name": name, "workers": workers, "threads": threads, "predictions": predictions,
        "base": {
            "name": name, "seed": 0,
            "model": {"kind": "gpt", "n_ctx": 3 * digits + 2},
            "data": {"task": "addition", "digits": digits, "base": 10, "format": "reversed"},
            "optim": {"lr": lr, "warmup_steps": warmup, "batch_size": batch_size},
            "train": {"max_steps": steps, "eval_every": steps, "eval_batches": 4,
                      "checkpoint_every": max(steps // 2, 1), "keep_checkpoints": 2, "device": "cpu"},
        },
        "grid": {"shapes": shp, "steps": [steps], "seeds": list(seeds)},
    }


def _heads(d_model: int) -> int:
    for h in (8, 4, 2, 1):
        if d_model % h == 0 and d_model // h >= 8:
            return h
    return 1


def addition_case(out: str | Path, shapes: Optional[list[tuple[int, int]]] = None, steps: int = 1000, *,
                  workers: int = 2, threads: int = 1, n_boot: int = 1000, progress: bool = True,
                  **config: Any) -> AdditionCase:
    """Run (or resume) an addition sweep into ``out``, then judge emergence on its answers.

    Defaults: six shapes from 1 layer x 16 wide to 2 layers x 96 wide, 1000 steps each.
    ``config`` goes to :func:`addition_sweep_config` (digits, lr, batch_size, seeds, ...).
    """
    shapes = shapes or [(1, 16), (1, 24), (2, 32), (2, 48), (2, 64), (2, 96)]
    sweep_cfg = addition_sweep_config(shapes, steps, workers=workers, threads=threads, **config)
    result = run_sweep(sweep_cfg, out, progress=progress)
    if result.exit_code != 0:
        msg = "; ".join(f"{k}: {v}" for k, v in result.messages.items()) or "interrupted"
        raise LensError(f"the addition sweep in {out} did not finish ({msg}); rerun to resume it")
    pred, res = addition_emergence(out, n_boot=n_boot, n_examples=sweep_cfg["predictions"])
    return AdditionCase(result, pred, res)

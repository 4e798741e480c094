"""Replication ``lsa-gd``: one linear self-attention layer trained on in-context linear
regression implements one step of gradient descent (von Oswald et al. 2023)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import torch

from lenslab.config import RunConfig, config_from_dict
from lenslab.data.regression import ICLRegressionTask
from lenslab.html import Page, escape, figure_block, figure_to_svg, pyplot, table_html
from lenslab.icl.algorithms import (
    ModelPredictor,
    cosine,
    gd_step_size,
    gd_step_size_closed_form,
    gd_weights,
    load_regression_model,
    sensitivity,
)
from lenslab.replications import (
    Replication,
    finish,
    json_block,
    register,
    train_fresh,
    verdict_html,
)
from lenslab.run import Run


def lsa_gd_config(steps: int = 5000, seed: int = 0) -> RunConfig:
    """von Oswald et al. 2023's setting: one LSA layer, d = N = 10, x uniform in [-1, 1]^d,
    ``w ~ N(0, I)``, no noise; Adam (lr 1e-3, betas 0.9/0.999, no decay, no clipping),
    batch 512."""
    return config_from_dict({
        "name": "lsa-gd", "seed": seed,
        "model": {"kind": "lsa", "n_head": 1, "init_std": 0.05},
        "data": {"task": "icl_regression", "d": 10, "n_points": 11, "noise": 0.0,
                 "x_dist": "uniform", "layout": "paired"},
        "optim": {"lr": 1e-3, "schedule": "constant", "warmup_steps": 0, "betas": [0.9, 0.999],
                  "weight_decay": 0.0, "grad_clip": 0.0, "batch_size": 512},
        "train": {"max_steps": steps, "eval_every": max(steps // 20, 1),
                  "checkpoint_every": max(steps // 20, 1), "keep_checkpoints": 1000},
    }, "lsa-gd")


@torch.no_grad()
def lsa_gd_measure(model: torch.nn.Module, task: ICLRegressionTask, n: int = 8192,
                   eta: Optional[float] = None) -> dict:
    """The LSA model against one line-searched GD step at ``k = n_points - 1``.

    On ``n`` held-out problems: mean squared errors of the model, of GD with the optimal step
    size (``eta``; when not given, the exact optimum for the task's distribution,
    :func:`gd_step_size_closed_form`) and of the zero predictor,
    the relative gap ``(model - gd) / gd``, the mean prediction distance and the mean cosine of
    the input sensitivities ``d y_hat / d x_q`` of the model and GD.
    """
    k = task.n_points - 1
    if eta is None:
        eta = gd_step_size_closed_form(task.d, k, task.x_var, task.x_m4, task.cfg.noise)
    pr = task.problems(n, 0)
    xs, ys = torch.from_numpy(pr.xs), torch.from_numpy(pr.ys)
    xc, yc, xq, y = xs[:, :k], ys[:, :k], xs[:, k:], ys[:, k]
    pred = ModelPredictor(model, task)
    p_m = pred(xc, yc, xq)[:, 0].double()
    w_gd = gd_weights(xc, yc, eta)
    p_gd = (xq @ w_gd[..., None])[:, 0, 0]
    with torch.enable_grad():
        s_m = sensitivity(pred, xc, yc, xq).double()
    mse, mse_gd = float(((p_m - y) ** 2).mean()), float(((p_gd - y) ** 2).mean())
    return {"k": k, "mse": mse, "mse_gd": mse_gd, "mse_zero": float((y ** 2).mean()),
            "rel_gap": (mse - mse_gd) / mse_gd, "pred_dist": float(((p_m - p_gd) ** 2).mean()),
            "sens_cos": cosine(s_m, w_gd), "eta": eta}


def lsa_gd_curve(run: Path, n: int = 4096) -> list[dict]:
    """:func:`lsa_gd_measure` at every verified checkpoint of an lsa-gd run (step order)."""
    out = []
    for step in Run(run).verified_steps():
        model, task, _, _ = load_regression_model(run, step)
        out.append({"step": step, **lsa_gd_measure(model, task, n)})
    return out


def lsa_gd_figure(curve: list[dict], metrics: list[dict], gd_mse: float):
    plt = pyplot()

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.6))
    steps = [m["step"] for m in metrics if not m.get("skipped")]
    loss = np.array([m["loss"] for m in metrics if not m.get("skipped")])
    a1.plot(steps, loss, lw=0.6, alpha=0.5, color="#3056d3", label="training loss (batch)")
    a1.plot([c["step"] for c in curve], [c["mse"] for c in curve], "o-", ms=3, color="#3056d3",
            label="LSA, held-out")
    a1.axhline(gd_mse, color="#b3261e", ls="--", lw=1.2, label="one GD step, optimal eta")
    a1.set_ylim(0, None)
    a1.set_xlabel("step")
    a1.set_ylabel("squared error at the query")
    a1.legend(fontsize=8, frameon=False)
    a2.plot([c["step"] for c in curve], [c["sens_cos"] for c in curve], "o-", ms=3,
            color="#1b7f3b", label="cosine of sensitivities (LSA vs GD)")
    a2.axhline(0.99, color="#999", ls=":", lw=1, label="target 0.99")
    a2.set_ylim(min(0.0, min(c["sens_cos"] for c in curve) - 0.05), 1.02)
    a2.set_xlabel("step")
    a2.legend(fontsize=8, frameon=False, loc="lower right")
    for ax in (a1, a2):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def lsa_gd_experiment(out: Path, steps: int = 5000, progress: bool = True) -> dict:
    """Train the lsa-gd run into ``out/lsa-gd`` and measure every checkpoint against GD."""
    run = out / "lsa-gd"
    res, measured, _ = train_fresh(lsa_gd_config(steps), run, progress)
    curve = lsa_gd_curve(run) if res.status == "completed" else []
    return {**measured, "status": res.status, "message": res.message, "curve": curve}


@register("lsa-gd", "one linear self-attention layer trained on in-context regression "
                    "matches one optimal step of gradient descent (von Oswald et al. 2023)")
def replicate_lsa_gd(out: Path, progress: bool = True, steps: int = 5000) -> Replication:
    exp = lsa_gd_experiment(out, steps, progress)
    short: list[str] = []
    measured: dict = {"run": exp["run"], "steps": exp["steps"],
                      "train_seconds": round(exp["train_seconds"], 1)}
    if exp["status"] != "completed" or not exp["curve"]:
        short.append(f"training ended {exp['status']}: {exp['message']}")
    else:
        last = exp["curve"][-1]
        task = ICLRegressionTask(lsa_gd_config(steps).data, 0)
        measured.update({k: last[k] for k in ("mse", "mse_gd", "mse_zero", "rel_gap",
                                              "sens_cos", "pred_dist", "eta")})
        measured["eta_line_search"] = gd_step_size(task, last["k"])  # cross-check of eta
        if abs(last["rel_gap"]) > 0.02:
            short.append(f"LSA loss {last['mse']:.4f} is {100 * last['rel_gap']:+.2f}% from optimal "
                         f"one-step GD ({last['mse_gd']:.4f}); target within 2%")
        if not last["sens_cos"] > 0.99:
            short.append(f"sensitivity cosine {last['sens_cos']:.4f} <= 0.99")
    targets = (f"after {steps} steps, held-out loss within 2% of one GD step with the optimal "
               "step size, and cosine of input sensitivities above 0.99")
    page = Page("Replication: linear self-attention learns gradient descent",
                "von Oswald et al. 2023, on this CPU: one LSA layer, d = N = 10, x uniform in "
                "[-1, 1], w ~ N(0, I), Adam 1e-3, batch 512.")
    page.add("Result", verdict_html(not short, short, targets), "result")
    if exp["curve"]:
        page.add("Curves", figure_block(figure_to_svg(lsa_gd_figure(
            exp["curve"], Run(exp["run"]).metrics(), exp["curve"][-1]["mse_gd"])),
            "Left: loss of the LSA layer and of one optimal GD step. Right: cosine between the "
            "LSA's and GD's gradients with respect to the query input.")
            + table_html([{k: c[k] for k in ("step", "mse", "mse_gd", "rel_gap", "sens_cos",
                                             "pred_dist")} for c in exp["curve"]], digits=4),
            "curves")
    page.add("Measured", json_block(measured)
             + f"<p class='caption'>Command: <code>lenslab replicate lsa-gd --out "
               f"{escape(out)}</code></p>", "measured")
    return finish("lsa-gd", out, page, measured, short)

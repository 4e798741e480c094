"""Which algorithm runs in context? In-context linear regression against known learners.

A model trained on in-context regression (:mod:`lenslab.data.regression`) sees ``k`` pairs
``(x_i, y_i)`` of a fresh problem and predicts ``y`` for a new ``x``. Here its predictions are
put next to those of classical learners fitted on the same ``k`` pairs:

* ``least_squares``: minimum-norm least squares, ``w = X^+ y``;
* ``ridge``: ``w = (X^T X + lambda I)^-1 X^T y`` (lambda defaults to ``noise^2``, the Bayes
  optimum for ``w ~ N(0, I)``, or 0.1 without noise);
* ``knn``: mean label of the 3 nearest context inputs (Garg et al. 2022's 3-NN);
* ``averaging``: ``w = 1/k sum_i y_i x_i`` (Garg et al. 2022);
* ``gd``: one step of gradient descent from ``w = 0`` on ``1/(2k) sum_i (w.x_i - y_i)^2``, i.e.
  ``w = eta_k / k sum_i y_i x_i``, with ``eta_k`` found by exact line search over held-out
  problems (the error is quadratic in eta, so the minimiser is a ratio of two sums).

Per number of in-context examples ``k`` it reports (all errors normalized by ``Var(y)``, so the
zero predictor scores 1):

* the normalized squared error of the model and of every algorithm;
* **prediction distance** (Akyurek et al. 2022, "SPD"): mean squared difference between the
  model's and the algorithm's predictions on the same query;
* **implicit weight distance** (Akyurek et al. 2022, "ILWD"): both predictors are probed at
  ``4 d`` random inputs with the same context, a linear function (with intercept) is fitted to
  each one's answers, and the squared distance of the two weight vectors is divided by
  ``E||w||^2 = d``;
* **sensitivity cosine** (von Oswald et al. 2023): cosine between the gradients of the two
  predictions with respect to the query input (undefined, shown as "-", for k-NN, whose output
  is locally constant).

The **verdict** per k names the algorithm closest by prediction distance, the runner-up and the
margin between them; the closest by weights and by sensitivity are shown beside it.

The module also holds the replications ``lsa-gd``, ``icl-regression`` and ``grokking`` and the
tour's regression section (:func:`regression_chapter`).
"""

from __future__ import annotations

import json
import math
import shlex
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from lenslab._io import atomic_write_json
from lenslab.config import RunConfig, config_from_dict
from lenslab.data import rng_for
from lenslab.data.regression import ICLRegressionTask, RegressionProblems
from lenslab.errors import DataError
from lenslab.icl.replicate import Replication, register
from lenslab.html import pyplot, Page, badge, escape, figure_block, figure_to_svg, table_html
from lenslab.run import Run

# predict(xc [B, k, d], yc [B, k], xq [B, m, d]) -> predictions [B, m]
Predictor = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]

_PROBE_STREAM = 3  # rng stream of the probe inputs (apart from the task's streams 0, 1, 2)
_CALIBRATION_STREAM = 4  # problems for the GD line search (never used for measuring)


# ============================================================================ baselines


def least_squares_weights(xc: torch.Tensor, yc: torch.Tensor) -> torch.Tensor:
    """Minimum-norm least squares ``w = X^+ y``: ``xc [B, k, d]``, ``yc [B, k]`` -> ``[B, d]``.

    With ``k >= d`` examples in general position and no noise this recovers the true ``w``;
    with fewer it is the smallest-norm ``w`` that fits every example exactly.
    """
    B, k, d = xc.shape
    if k == 0:
        return xc.new_zeros(B, d)
    return (torch.linalg.pinv(xc) @ yc[..., None]).squeeze(-1)


def ridge_weights(xc: torch.Tensor, yc: torch.Tensor, lam: float) -> torch.Tensor:
    """Ridge regression ``w = (X^T X + lam I)^-1 X^T y``: ``[B, k, d], [B, k] -> [B, d]``."""
    B, k, d = xc.shape
    if k == 0:
        return xc.new_zeros(B, d)
    gram = xc.transpose(1, 2) @ xc + lam * torch.eye(d, dtype=xc.dtype, device=xc.device)
    return torch.linalg.solve(gram, (xc.transpose(1, 2) @ yc[..., None])).squeeze(-1)


def gd_weights(xc: torch.Tensor, yc: torch.Tensor, eta: float) -> torch.Tensor:
    """One gradient step from ``w = 0`` on ``1/(2k) sum (w.x_i - y_i)^2``: ``w = eta/k X^T y``.

    ``[B, k, d], [B, k] -> [B, d]``. ``eta = 1`` is Garg et al.'s "averaging" estimator.
    """
    B, k, d = xc.shape
    if k == 0:
        return xc.new_zeros(B, d)
    return eta * (xc.transpose(1, 2) @ yc[..., None]).squeeze(-1) / k


def knn_predict(xc: torch.Tensor, yc: torch.Tensor, xq: torch.Tensor,
                n_neighbors: int = 3) -> torch.Tensor:
    """Mean label of the ``n_neighbors`` context inputs nearest to each query (all of them when
    there are fewer): ``xc [B, k, d], yc [B, k], xq [B, m, d] -> [B, m]``; 0 without context."""
    B, k, _ = xc.shape
    m = xq.shape[1]
    if k == 0:
        return xq.new_zeros(B, m)
    dist = torch.cdist(xq.detach(), xc)  # [B, m, k]
    nn_idx = dist.topk(min(n_neighbors, k), dim=2, largest=False).indices  # [B, m, n]
    ys = yc[:, None, :].expand(B, m, k)
    return ys.gather(2, nn_idx).mean(2).to(xq.dtype)


def _linear(weights: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> Predictor:
    def predict(xc, yc, xq):
        w = weights(xc.to(xq.dtype), yc.to(xq.dtype))  # [B, d]
        return (xq @ w[..., None]).squeeze(-1)  # [B, m]

    return predict


def gd_step_size_closed_form(d: int, k: int, x_var: float = 1.0, x_m4: float = 3.0,
                             noise: float = 0.0) -> float:
    """The optimal one-step GD step size for i.i.d. x coordinates and ``w ~ N(0, I_d)``.

    With ``a = x_q . (1/k) sum_i y_i x_i`` the prediction is ``eta * a`` and the expected error is
    minimised by ``eta* = E[a y] / E[a^2] = k s / ((k + d - 2) s^2 + m4 + noise^2 s)`` where
    ``s = E[x_j^2]`` and ``m4 = E[x_j^4]``. Normal x (s = 1, m4 = 3) gives ``k / (k + d + 1)``.
    """
    if k <= 0:
        return 0.0
    s = x_var
    return k * s / ((k + d - 2) * s * s + x_m4 + noise ** 2 * s)


def gd_step_size(task: ICLRegressionTask, k: int, n: int = 65536) -> float:
    """Exact line search for one GD step with ``k`` examples, over ``n`` held-out problems.

    The error ``sum_b (eta a_b - y_b)^2`` is a quadratic in eta with ``a_b = x_q . (1/k)
    sum_i y_i x_i``, so the line search is solved exactly: ``eta = sum a y / sum a^2``. The
    problems come from a calibration stream that measurements never use.
    """
    if k <= 0:
        return 0.0
    pr = _calibration_problems(task, n, k)
    xs = torch.from_numpy(pr.xs)
    ys = torch.from_numpy(pr.ys)
    a = (xs[:, k:k + 1] @ gd_weights(xs[:, :k], ys[:, :k], 1.0)[..., None]).reshape(-1)
    y = ys[:, k]
    return float((a * y).sum() / (a * a).sum())


def _calibration_problems(task: ICLRegressionTask, n: int, k: int) -> RegressionProblems:
    """``n`` problems of ``k + 1`` points from the task's distribution, drawn from a stream of
    their own (never a training batch, never a problem that a comparison measures on)."""
    rng = rng_for(task.seed, _CALIBRATION_STREAM, k)
    ws = rng.standard_normal((n, task.d))
    xs = task.sample_x(rng, (n, k + 1))
    ys = np.einsum("npd,nd->np", xs, ws) + task.cfg.noise * rng.standard_normal((n, k + 1))
    return RegressionProblems(xs, ys, ws)


@dataclass
class Algorithm:
    """A learner that answers queries from a context: ``predict(xc, yc, xq) -> [B, m]``.

    ``weights(xc, yc) -> [B, d]`` for linear learners; ``params`` holds what was tuned (GD's
    step size per k).
    """

    name: str
    label: str
    predict: Predictor
    weights: Optional[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = None
    params: dict = field(default_factory=dict)


def baselines(task: ICLRegressionTask, ks: Sequence[int], ridge_lambda: Optional[float] = None,
              n_neighbors: int = 3, n_search: int = 65536) -> list[Algorithm]:
    """The five reference learners for ``task``; GD's step size is line-searched for each k."""
    lam = ridge_lambda if ridge_lambda is not None else (
        task.cfg.noise ** 2 if task.cfg.noise > 0 else 0.1)
    etas = {int(k): gd_step_size(task, int(k), n_search) for k in ks}

    def gd_w(xc, yc):
        k = xc.shape[1]
        eta = etas[k] if k in etas else gd_step_size(task, k, n_search)
        return gd_weights(xc, yc, eta)

    def ridge_w(xc, yc):
        return ridge_weights(xc, yc, lam)

    def avg_w(xc, yc):
        return gd_weights(xc, yc, 1.0)

    gd = Algorithm("gd", "one GD step (line search)", _linear(gd_w), gd_w, {"step_size": etas})
    return [
        Algorithm("least_squares", "least squares (min-norm)", _linear(least_squares_weights),
                  least_squares_weights),
        Algorithm("ridge", f"ridge (lambda {lam:g})", _linear(ridge_w), ridge_w),
        Algorithm("knn", f"{n_neighbors}-NN",
                  lambda xc, yc, xq: knn_predict(xc.to(xq.dtype), yc.to(xq.dtype), xq,
                                                 n_neighbors)),
        Algorithm("averaging", "averaging", _linear(avg_w), avg_w),
        gd,
    ]


# ============================================================================ models


class ModelPredictor:
    """A trained in-context regression model as a :data:`Predictor`.

    For each query it builds the sequence ``context + query`` in the task's layout
    (:meth:`ICLRegressionTask.query_inputs`) and reads the model's output at the last token.
    Gradients flow to ``xq`` when it requires them (input sensitivities).
    """

    def __init__(self, model: torch.nn.Module, task: ICLRegressionTask,
                 device: torch.device | str = "cpu", chunk_rows: int = 4096):
        self.model = model.eval()
        self.task = task
        self.device = torch.device(device)
        self.chunk_rows = chunk_rows

    def __call__(self, xc: torch.Tensor, yc: torch.Tensor, xq: torch.Tensor) -> torch.Tensor:
        B, m = xq.shape[:2]
        grad = xq.requires_grad
        with torch.set_grad_enabled(grad):
            seqs = self.task.query_inputs(xc.float(), yc.float(), xq.float())  # [B*m, T, D]
            outs = []
            for chunk in torch.split(seqs, self.chunk_rows):
                outs.append(self.model(chunk.to(self.device))[:, -1, 0].cpu())
            return torch.cat(outs).reshape(B, m).to(xq.dtype)


def load_regression_model(run_dir: str | Path, step: Optional[int] = None):
    """``(model, task, step, cfg)`` from an in-context regression run folder.

    Raises a one-line :class:`~lenslab.errors.LensError` for folders that are not runs, have no
    verified checkpoint, or hold a token-level run.
    """
    run = Run.open(run_dir)
    if getattr(run.config.data, "task", None) != "icl_regression":
        raise DataError(
            f"{run.path} is a token-level run (data.task = {run.config.data.task!r}); `lenslab "
            "algorithms` needs an in-context regression run (data.task = \"icl_regression\")")
    ck = run.checkpoint(step)
    return run.load_model(ck), run.task, ck.step, run.resolved


# ============================================================================ comparison


@dataclass
class AlgorithmComparison:
    """Per-k errors and distances of a model to the reference algorithms, and the verdicts.

    Lists run over :attr:`ks`; ``algorithms[name]`` holds ``error``, ``pred_dist``,
    ``weight_dist`` and ``sens_cos`` lists (NaN where undefined).
    """

    model_name: str
    ks: list[int]
    model_error: list[float]
    algorithms: dict[str, dict]
    gd_step_size: dict[int, float]
    verdicts: list[dict]
    task: dict
    n_problems: int
    step: Optional[int] = None
    command: str = ""
    trained_k: list[int] = field(default_factory=list)

    # ------------------------------------------------------------------ data
    def to_dict(self) -> dict:
        def clean(v):
            if isinstance(v, float):
                return v if math.isfinite(v) else None
            if isinstance(v, dict):
                return {str(k): clean(x) for k, x in v.items()}
            if isinstance(v, (list, tuple)):
                return [clean(x) for x in v]
            return v

        return clean({
            "kind": "algorithms", "model": self.model_name, "step": self.step,
            "command": self.command, "task": self.task, "n_problems": self.n_problems,
            "ks": self.ks, "trained_k": self.trained_k, "model_error": self.model_error,
            "algorithms": self.algorithms, "gd_step_size": self.gd_step_size,
            "verdicts": self.verdicts,
        })

    def error_at(self, k: int, name: Optional[str] = None) -> float:
        """Normalized error at ``k`` of the model (``name=None``) or of an algorithm."""
        i = self.ks.index(k)
        return self.model_error[i] if name is None else self.algorithms[name]["error"][i]

    def verdict_at(self, k: int) -> Optional[dict]:
        return next((v for v in self.verdicts if v["k"] == k), None)

    # ------------------------------------------------------------------ figures
    def error_figure(self):
        """Normalized squared error against k: the model and every baseline."""
        plt = pyplot()

        fig, ax = plt.subplots(figsize=(7.6, 3.8))
        for name, a in self.algorithms.items():
            ax.plot(self.ks, a["error"], marker="o", ms=3, lw=1.2, label=a["label"],
                    color=_COLORS.get(name))
        ax.plot(self.ks, self.model_error, marker="s", ms=4, lw=2.4, color="black",
                label=self.model_name)
        ax.axhline(1.0, color="#999", lw=0.8, ls=":")
        if len(self.trained_k) == 1:  # paired layout: trained with exactly this many examples
            ax.axvline(self.trained_k[0], color="#999", lw=0.8, ls="--", label="trained k")
        ax.set_xlabel("in-context examples k")
        ax.set_ylabel("normalized squared error")
        top = max(1.25, min(3.0, max(self.model_error + [1.0]) * 1.05))
        ax.set_ylim(0, top)
        ax.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        ax.grid(alpha=0.3)
        fig.tight_layout()
        return fig

    def distance_figure(self):
        """Prediction distance (left) and sensitivity cosine (right) to each algorithm."""
        plt = pyplot()

        fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.6))
        for name, a in self.algorithms.items():
            c = _COLORS.get(name)
            a1.plot(self.ks, np.maximum(a["pred_dist"], 1e-6), marker="o", ms=3, label=a["label"],
                    color=c)
            a2.plot(self.ks, a["sens_cos"], marker="o", ms=3, label=a["label"], color=c)
        a1.set_yscale("log")
        a1.set_xlabel("in-context examples k")
        a1.set_ylabel("prediction distance to the model")
        a2.set_xlabel("in-context examples k")
        a2.set_ylabel("cosine of input sensitivities")
        a2.set_ylim(-0.05, 1.05)
        for ax in (a1, a2):
            ax.grid(alpha=0.3)
        a1.legend(fontsize=8, frameon=False)
        fig.tight_layout()
        return fig

    # ------------------------------------------------------------------ html
    def verdict_rows(self) -> list[dict]:
        rows = []
        for v in self.verdicts:
            rows.append({
                "k": v["k"], "model error": v["model_error"],
                "closest": self.algorithms[v["closest"]]["label"], "distance": v["distance"],
                "runner-up": self.algorithms[v["runner_up"]]["label"], "margin": v["margin"],
                "closest by weights": self.algorithms[v["closest_by_weights"]]["label"],
                "closest by sensitivity": (self.algorithms[v["closest_by_sensitivity"]]["label"]
                                           if v["closest_by_sensitivity"] else "-"),
            })
        return rows

    def error_rows(self) -> list[dict]:
        rows = []
        for i, k in enumerate(self.ks):
            r = {"k": k, self.model_name: self.model_error[i]}
            for a in self.algorithms.values():
                r[a["label"]] = a["error"][i]
            rows.append(r)
        return rows

    def to_html(self) -> str:
        """The verdict table and the error figure (embedded in the tour and the page)."""
        t = self.task
        head = (f"<p class='caption'>{escape(self.model_name)}"
                + (f" at step {self.step}" if self.step is not None else "")
                + f": in-context regression, d = {t['d']}, {t['n_points']} points, noise "
                f"{t['noise']:g}, x {escape(t['x_dist'])}, {escape(t['layout'])} layout; "
                f"{self.n_problems} held-out problems per k. Errors are normalized by Var(y) "
                "(predicting 0 scores 1); distances by Var(y) (predictions) and E||w||^2 "
                "(weights).</p>")
        return (head + figure_block(figure_to_svg(self.error_figure()),
                                    "Normalized squared error per number of in-context examples.")
                + "<h3>Verdict per k</h3>" + table_html(self.verdict_rows(), digits=3))

    def page(self) -> Page:
        p = Page("Which algorithm runs in context?",
                 f"{self.model_name}: distances to least squares, ridge, k-NN, averaging and one "
                 "step of gradient descent (Akyurek et al. 2022; von Oswald et al. 2023).")
        p.add("Verdict", self.to_html(), "verdict")
        p.add("Distances", figure_block(
            figure_to_svg(self.distance_figure()),
            "Left: mean squared difference of predictions (normalized by Var(y)). Right: cosine "
            "between the gradients of the predictions with respect to the query input.")
            + "<h3>Implicit weight distance</h3>" + table_html(
                [{"k": k, **{a["label"]: a["weight_dist"][i] for a in self.algorithms.values()}}
                 for i, k in enumerate(self.ks)], digits=3), "distances")
        p.add("Errors", table_html(self.error_rows(), digits=3)
              + "<p class='caption'>One GD step uses the line-searched step size per k: "
              + escape(", ".join(f"k={k}: {e:.3f}" for k, e in self.gd_step_size.items()))
              + "</p>", "errors")
        if self.command:
            p.add("Command", f"<pre>{escape(self.command)}</pre>", "command")
        return p

    def _repr_html_(self) -> str:
        return self.to_html()

    def write(self, out_dir: str | Path) -> Path:
        """``out_dir/algorithms.json`` and ``out_dir/algorithms.html`` (atomic); returns the json."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / "algorithms.json", self.to_dict())
        self.page().write(out / "algorithms.html")
        return out / "algorithms.json"


_COLORS = {"least_squares": "#3056d3", "ridge": "#7aa2f7", "knn": "#b36b00",
           "averaging": "#1b7f3b", "gd": "#b3261e"}


def _sensitivity(pred: Predictor, xc: torch.Tensor, yc: torch.Tensor,
                 xq: torch.Tensor) -> torch.Tensor:
    """``d y_hat / d x_q`` at each problem's query: ``xq [B, 1, d] -> [B, d]`` (0 if constant)."""
    q = xq.detach().clone().requires_grad_(True)
    out = pred(xc, yc, q)  # [B, 1]
    if not out.requires_grad:
        return torch.zeros_like(xq[:, 0])
    (g,) = torch.autograd.grad(out.sum(), q, allow_unused=True)
    return torch.zeros_like(xq[:, 0]) if g is None else g[:, 0].detach()


def _implicit_weights(probes: torch.Tensor, answers: torch.Tensor) -> torch.Tensor:
    """Least-squares fit ``answers ~ probes . w + b`` per problem: ``[B, m, d], [B, m] -> [B, d]``."""
    A = torch.cat([probes, torch.ones_like(probes[..., :1])], dim=2)  # [B, m, d+1]
    sol = torch.linalg.lstsq(A, answers[..., None]).solution  # [B, d+1, 1]
    return sol[:, :-1, 0]


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean cosine over rows where both vectors are non-zero; NaN if there are none."""
    na, nb = a.norm(dim=1), b.norm(dim=1)
    ok = (na > 1e-9) & (nb > 1e-9)
    if not bool(ok.any()):
        return float("nan")
    return float(((a[ok] * b[ok]).sum(1) / (na[ok] * nb[ok])).mean())


@torch.no_grad()
def _answers(pred: Predictor, xc, yc, xq) -> torch.Tensor:
    return pred(xc, yc, xq)


def compare_algorithms(
    model: Predictor | torch.nn.Module,
    task: ICLRegressionTask,
    ks: Optional[Sequence[int]] = None,
    n_problems: int = 500,
    n_probes: Optional[int] = None,
    algorithms: Optional[list[Algorithm]] = None,
    model_name: str = "model",
    device: torch.device | str = "cpu",
    index: int = 0,
) -> AlgorithmComparison:
    """Compare ``model`` with the reference algorithms at every ``k`` in ``ks``.

    ``model`` is an in-context regression model (``nn.Module``, wrapped in
    :class:`ModelPredictor`) or any :data:`Predictor`. ``ks`` defaults to every k the task's
    sequences hold (``0 .. n_points - 1`` interleaved and query_pair, ``1 .. n_points - 1``
    paired).
    ``n_problems`` held-out problems (index ``index``, never a training batch) are used for
    every k; each problem's point ``k`` is the query. ``n_probes`` (default ``4 d``) inputs per
    problem probe the implicit weights.
    """
    pred_m: Predictor = ModelPredictor(model, task, device) if isinstance(
        model, torch.nn.Module) else model
    if ks is None:
        ks = list(range(0 if task.two_tokens else 1, task.n_points))
    ks = [int(k) for k in ks]
    bad = [k for k in ks if not 0 <= k < task.n_points or (k == 0 and task.layout == "paired")]
    if bad:
        lo = 0 if task.two_tokens else 1
        raise DataError(f"k = {bad[0]} is outside what the task's sequences hold "
                        f"({lo} .. {task.n_points - 1} in-context examples)")
    algs = algorithms if algorithms is not None else baselines(task, ks)
    n_probes = n_probes or 4 * task.d
    pr = task.problems(n_problems, index)
    xs = torch.from_numpy(pr.xs)  # [n, P, d] float64
    ys = torch.from_numpy(pr.ys)  # [n, P]
    probes = torch.from_numpy(task.sample_x(rng_for(task.seed, _PROBE_STREAM, index),
                                            (n_problems, n_probes)))  # [n, m, d]
    y_var, w_norm = task.y_var, float(task.d)

    model_err: list[float] = []
    res = {a.name: {"label": a.label, "error": [], "pred_dist": [], "weight_dist": [],
                    "sens_cos": []} for a in algs}
    verdicts = []
    for k in ks:
        xc, yc = xs[:, :k], ys[:, :k]
        xq, y = xs[:, k:k + 1], ys[:, k]
        queries = torch.cat([xq, probes], dim=1)  # [n, 1 + m, d]: the real query, then probes
        out_m = _answers(pred_m, xc, yc, queries).double()
        p_m, w_m = out_m[:, 0], _implicit_weights(probes, out_m[:, 1:])
        s_m = _sensitivity(pred_m, xc, yc, xq).double()
        model_err.append(float(((p_m - y) ** 2).mean() / y_var))
        for a in algs:
            out_a = _answers(a.predict, xc, yc, queries).double()
            p_a, w_a = out_a[:, 0], _implicit_weights(probes, out_a[:, 1:])
            r = res[a.name]
            r["error"].append(float(((p_a - y) ** 2).mean() / y_var))
            r["pred_dist"].append(float(((p_m - p_a) ** 2).mean() / y_var))
            r["weight_dist"].append(float(((w_m - w_a) ** 2).sum(1).mean() / w_norm))
            r["sens_cos"].append(_cosine(s_m, _sensitivity(a.predict, xc, yc, xq).double()))
        if k >= 1:
            verdicts.append(_verdict(k, model_err[-1], res, len(model_err) - 1))
    gd = next((a for a in algs if a.name == "gd"), None)
    etas = gd.params.get("step_size", {}) if gd is not None else {}
    c = task.cfg
    return AlgorithmComparison(
        model_name=model_name, ks=ks, model_error=model_err, algorithms=res,
        gd_step_size={k: etas[k] for k in ks if k in etas}, verdicts=verdicts,
        task={"d": c.d, "n_points": c.n_points, "noise": c.noise, "x_dist": c.x_dist,
              "layout": c.layout, "seed": task.seed},
        n_problems=n_problems, trained_k=list(task.ks),
    )


def _verdict(k: int, model_error: float, res: dict, i: int) -> dict:
    """Closest algorithm at list position ``i`` by prediction distance, with the margin."""
    by_pred = sorted(res, key=lambda n: res[n]["pred_dist"][i])
    best, second = by_pred[0], by_pred[1] if len(by_pred) > 1 else by_pred[0]
    by_w = min(res, key=lambda n: res[n]["weight_dist"][i])
    cos = {n: res[n]["sens_cos"][i] for n in res if math.isfinite(res[n]["sens_cos"][i])}
    return {
        "k": k, "model_error": model_error, "closest": best,
        "distance": res[best]["pred_dist"][i], "runner_up": second,
        "runner_up_distance": res[second]["pred_dist"][i],
        "margin": res[second]["pred_dist"][i] - res[best]["pred_dist"][i],
        "closest_by_weights": by_w,
        "closest_by_sensitivity": max(cos, key=cos.get) if cos else None,
    }


def run_algorithms(run_dir: str | Path, out_dir: Optional[str | Path] = None,
                   n_problems: int = 500, step: Optional[int] = None,
                   command: str = "") -> AlgorithmComparison:
    """Compare a run folder's model with the baselines; writes ``algorithms.json`` and
    ``algorithms.html`` into ``out_dir`` (default ``RUN_DIR/analysis``)."""
    run_dir = Path(run_dir)
    model, task, ck_step, cfg = load_regression_model(run_dir, step)
    cmp_ = compare_algorithms(model, task, n_problems=n_problems, model_name=cfg.name)
    cmp_.step = ck_step
    cmp_.command = command or (f"lenslab algorithms {shlex.quote(str(run_dir))}"
                               + (f" --out {shlex.quote(str(out_dir))}" if out_dir else ""))
    cmp_.write(out_dir if out_dir is not None else run_dir / "analysis")
    return cmp_


# ============================================================================ replications


def _fresh(run: Path) -> None:
    """Replications start from scratch: an earlier run folder of the same name is replaced."""
    if run.exists():
        shutil.rmtree(run)


def _train_fresh(cfg: RunConfig, run: Path, progress: bool):
    """Train ``cfg`` into ``run`` from scratch: (result, what was measured, shortfalls so far)."""
    import lenslab

    _fresh(run)
    t0 = time.perf_counter()
    res = lenslab.train(cfg, run, progress=progress)
    measured: dict = {"run": str(run), "steps": res.step,
                      "train_seconds": round(time.perf_counter() - t0, 1)}
    short = [] if res.status == "completed" else [f"training ended {res.status}: {res.message}"]
    return res, measured, short


def _metrics(run: Path) -> list[dict]:
    return Run(run).metrics()


def _checkpoints(run: Path) -> list[int]:
    return Run(run).verified_steps()


def _json_block(d: dict) -> str:
    from lenslab._io import dumps

    return f"<pre>{escape(json.dumps(json.loads(dumps(d)), indent=2))}</pre>"


def _verdict_html(passed: bool, shortfalls: list[str], targets: str) -> str:
    head = badge("PASS", "ok") if passed else badge("FAIL", "bad")
    body = ("<p>All targets met.</p>" if passed else
            "<ul>" + "".join(f"<li>{escape(s)}</li>" for s in shortfalls) + "</ul>")
    return f"<p>{head} Targets: {escape(targets)}</p>{body}"


def _finish(name: str, out: Path, page: Page, measured: dict, short: list[str]) -> Replication:
    page.write(out / f"{name}.html")
    atomic_write_json(out / f"{name}.json", {"measured": measured, "shortfalls": short,
                                             "passed": not short})
    return Replication(name, not short, measured, short, out / f"{name}.html")


# ---------------------------------------------------------------------------- lsa-gd


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
        s_m = _sensitivity(pred, xc, yc, xq).double()
    mse, mse_gd = float(((p_m - y) ** 2).mean()), float(((p_gd - y) ** 2).mean())
    return {"k": k, "mse": mse, "mse_gd": mse_gd, "mse_zero": float((y ** 2).mean()),
            "rel_gap": (mse - mse_gd) / mse_gd, "pred_dist": float(((p_m - p_gd) ** 2).mean()),
            "sens_cos": _cosine(s_m, w_gd), "eta": eta}


def lsa_gd_curve(run: Path, n: int = 4096) -> list[dict]:
    """:func:`lsa_gd_measure` at every verified checkpoint of an lsa-gd run (step order)."""
    out = []
    for step in _checkpoints(run):
        model, task, _, _ = load_regression_model(run, step)
        out.append({"step": step, **lsa_gd_measure(model, task, n)})
    return out


def _lsa_gd_figure(curve: list[dict], metrics: list[dict], gd_mse: float):
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
    res, measured, _ = _train_fresh(lsa_gd_config(steps), run, progress)
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
    page.add("Result", _verdict_html(not short, short, targets), "result")
    if exp["curve"]:
        page.add("Curves", figure_block(figure_to_svg(_lsa_gd_figure(
            exp["curve"], _metrics(Path(exp["run"])), exp["curve"][-1]["mse_gd"])),
            "Left: loss of the LSA layer and of one optimal GD step. Right: cosine between the "
            "LSA's and GD's gradients with respect to the query input.")
            + table_html([{k: c[k] for k in ("step", "mse", "mse_gd", "rel_gap", "sens_cos",
                                             "pred_dist")} for c in exp["curve"]], digits=4),
            "curves")
    page.add("Measured", _json_block(measured)
             + f"<p class='caption'>Command: <code>lenslab replicate lsa-gd --out "
               f"{escape(out)}</code></p>", "measured")
    return _finish("lsa-gd", out, page, measured, short)


# ---------------------------------------------------------------------------- icl-regression


def icl_regression_config(steps: int = 10_000, seed: int = 0) -> RunConfig:
    """Garg et al. 2022's in-context regression, small: d = 5, 11 points, x ~ N(0, I), no noise;
    a 3-layer GPT (width 64, 2 heads) with linear read-in and read-out.

    The layout is ``query_pair`` (each answer token repeats its x). With Garg's ``interleaved``
    layout this model sat on the zero-predictor plateau (normalized error 1.05) for all of a
    3000-step trial on this machine; with ``query_pair`` it reached 0.04 at k = 10 by step 2000.
    """
    return config_from_dict({
        "name": "icl-regression", "seed": seed,
        "model": {"kind": "gpt", "n_layer": 3, "n_head": 2, "d_model": 64, "n_ctx": 22,
                  "dropout": 0.0},
        "data": {"task": "icl_regression", "d": 5, "n_points": 11, "noise": 0.0,
                 "x_dist": "normal", "layout": "query_pair"},
        "optim": {"lr": 1e-3, "schedule": "cosine", "warmup_steps": 200, "betas": [0.9, 0.999],
                  "weight_decay": 0.0, "grad_clip": 1.0, "batch_size": 64},
        "train": {"max_steps": steps, "eval_every": max(steps // 20, 1),
                  "checkpoint_every": max(steps // 10, 1), "keep_checkpoints": 1000,
                  "threads": 1},
    }, "icl-regression")


def _training_figure(metrics: list[dict], key: str, ylabel: str, marks: Sequence[float] = ()):
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    ok = [m for m in metrics if not m.get("skipped")]
    ax.plot([m["step"] for m in ok], [m["loss"] for m in ok], lw=0.5, alpha=0.4,
            color="#3056d3", label="training loss (batch)")
    ev = [m for m in metrics if key in m]
    ax.plot([m["step"] for m in ev], [m[key] for m in ev], "o-", ms=3, color="black",
            label=ylabel)
    for y in marks:
        ax.axhline(y, color="#b3261e", ls=":", lw=1)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.legend(fontsize=8, frameon=False)
    ax.grid(alpha=0.3)
    return fig


@register("icl-regression", "a 3-layer GPT learns in-context linear regression as well as least "
                            "squares (Garg et al. 2022; Akyurek et al. 2022)")
def replicate_icl_regression(out: Path, progress: bool = True, steps: int = 10_000,
                             n_problems: int = 1000) -> Replication:
    run = out / "icl-regression"
    res, measured, short = _train_fresh(icl_regression_config(steps), run, progress)
    cmp_: Optional[AlgorithmComparison] = None
    if res.status == "completed":
        model, task, step, cfg = load_regression_model(run)
        cmp_ = compare_algorithms(model, task, n_problems=n_problems, model_name="GPT (3 layers)")
        cmp_.step, cmp_.command = step, f"lenslab algorithms {run}"
        cmp_.write(run / "analysis")
        e10, ls = cmp_.error_at(10), {k: cmp_.error_at(k, "least_squares") for k in (1, 2)}
        measured.update({
            "error_k10": e10, "knn_k10": cmp_.error_at(10, "knn"),
            "averaging_k10": cmp_.error_at(10, "averaging"),
            **{f"error_k{k}": cmp_.error_at(k) for k in (1, 2)},
            **{f"least_squares_k{k}": v for k, v in ls.items()},
            "verdicts": {v["k"]: v["closest"] for v in cmp_.verdicts},
        })
        if not e10 <= 0.10:
            short.append(f"normalized error at k = 10 is {e10:.3f} > 0.10")
        for k in (1, 2):
            gap = abs(cmp_.error_at(k) - ls[k])
            if not gap <= 0.03:
                short.append(f"at k = {k} the error {cmp_.error_at(k):.3f} is {gap:.3f} from "
                             f"least squares ({ls[k]:.3f}); target within 0.03")
        for name, label in (("knn", "3-NN"), ("averaging", "averaging")):
            e = cmp_.error_at(10, name)
            if not abs(e - 0.6) <= 0.1:
                short.append(f"{label} baseline at k = 10 is {e:.3f}, not around 0.6 (+-0.1)")
    targets = (f"after {steps} steps, normalized error at k = 10 at most 0.10; within 0.03 of "
               "least squares at k = 1 and 2; 3-NN and averaging baselines around 0.6 "
               "(+-0.1) at k = 10")
    page = Page("Replication: in-context linear regression",
                "Garg et al. 2022 on this CPU: d = 5, 11 points, x ~ N(0, I), w ~ N(0, I); GPT "
                "with 3 layers, width 64, 2 heads, linear read-in and read-out; tokens "
                "(x1, 0), (x1, y1), (x2, 0), (x2, y2), ... (layout query_pair).")
    page.add("Result", _verdict_html(not short, short, targets), "result")
    if cmp_ is not None:
        page.add("Against the baselines", cmp_.to_html(), "baselines")
    mets = _metrics(run)
    if mets:
        page.add("Training", figure_block(figure_to_svg(_training_figure(
            mets, "nmse_last", "held-out normalized error at k = 10", (0.10,))),
            "Training loss (squared error averaged over k) and the held-out error at k = 10."),
            "training")
    page.add("Measured", _json_block(measured)
             + f"<p class='caption'>Command: <code>lenslab replicate icl-regression --out "
               f"{escape(out)}</code>; the full comparison is in "
               f"<code>{escape(run / 'analysis' / 'algorithms.html')}</code>.</p>", "measured")
    return _finish("icl-regression", out, page, measured, short)


# ---------------------------------------------------------------------------- grokking


def grokking_config(steps: int = 8000, seed: int = 0) -> RunConfig:
    """The ``modular_addition`` example (Nanda et al. 2023's 1-layer transformer, p = 59, 30%
    of the pairs for training, full-batch AdamW, lr 1e-3, weight decay 1).

    Spikes are logged, not acted on (``guard.on_spike = "log"``, as in the example; non-finite
    losses are still caught). With full-batch training every step sees the same batch, so a
    skipped step recurs identically, three skips force a rollback and each rollback halves the
    learning rate; and the sudden loss spikes of this training (Adam "slingshots") belong to the
    phenomenon being replicated. With the default guard, a spike at step 422 rolled the run
    back to step 0 at half the learning rate, and another at step 1420 halved it again.
    """
    from lenslab.examples import example_config

    cfg = example_config("modular_addition")
    return cfg.model_copy(update={
        "name": "grokking", "seed": seed,
        "train": cfg.train.model_copy(update={"max_steps": steps, "eval_every": 100,
                                              "keep_checkpoints": 1000}),
        "guard": cfg.guard.model_copy(update={"on_spike": "log"}),
    })


@torch.no_grad()
def commutative_split(run: Path) -> list[dict]:
    """Test accuracy at every checkpoint of a modular-addition run, split into the test pairs
    ``(a, b)`` whose swap ``(b, a)`` is a training pair and the rest.

    A model that treats ``a + b`` and ``b + a`` alike answers the first group correctly as soon
    as it has memorised the training pairs; only the second group measures generalisation.
    """
    from lenslab.icl.score import load_run_model

    out = []
    for step in _checkpoints(run):
        rm = load_run_model(run, step)
        t = rm.task
        train = {(int(a), int(b)) for a, b in t.train_pairs}
        swap = torch.tensor([(int(b), int(a)) in train for a, b in t.test_pairs])
        x, y = t._xy(t.test_pairs)
        ok = (rm.model(x)[:, 2].argmax(-1) == y[:, 2]).float()
        out.append({"step": step, "swap_in_train": float(ok[swap].mean()),
                    "rest": float(ok[~swap].mean()), "share_swap": float(swap.float().mean())})
    return out


def grokking_checks(metrics: list[dict]) -> tuple[dict, list[str]]:
    """The grokking targets, read from a run's ``metrics.jsonl``.

    Steps count optimizer updates done (a record with ``step = s`` is after ``s + 1`` updates):
    the training loss gets under 1e-3 by update 1000; the test accuracy stays under 0.15 at every
    evaluation up to update 3500 and reaches 0.9 by update 8000.
    """
    ok = [m for m in metrics if not m.get("skipped")]
    first_low = next((m["step"] + 1 for m in ok if m["loss"] < 1e-3), None)
    ev = [m for m in ok if "test_acc" in m]
    early = [m["test_acc"] for m in ev if m["step"] + 1 <= 3500]
    max_early = max(early) if early else float("nan")
    first_gen = next((m["step"] + 1 for m in ev if m["test_acc"] >= 0.9), None)
    at = {m["step"] + 1: m for m in ev}
    measured = {
        "first_step_train_loss_below_1e-3": first_low,
        "train_loss_at_1000": next((m["loss"] for m in ok if m["step"] + 1 == 1000), None),
        "max_test_acc_until_3500": max_early,
        "first_step_test_acc_0.9": first_gen,
        "test_acc_at": {s: at[s]["test_acc"] for s in (1000, 2000, 3500, 5000, 8000) if s in at},
        "final_test_acc": ev[-1]["test_acc"] if ev else None,
    }
    short = []
    if first_low is None or first_low > 1000:
        short.append("training loss did not get under 1e-3 by step 1000"
                     + (f" (first at step {first_low})" if first_low else ""))
    if not early or not max_early < 0.15:
        worst = max((m for m in ev if m["step"] + 1 <= 3500), key=lambda m: m["test_acc"],
                    default=None)
        short.append(f"test accuracy reached {max_early:.3f} >= 0.15 before step 3500"
                     + (f" (at step {worst['step'] + 1})" if worst else ""))
    if first_gen is None or first_gen > 8000:
        last = ev[-1]["test_acc"] if ev else float("nan")
        short.append(f"test accuracy did not reach 0.9 by step 8000 (final {last:.3f})")
    return measured, short


def _grokking_figure(metrics: list[dict], split: Sequence[dict] = ()):
    plt = pyplot()

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.6))
    ev = [m for m in metrics if "test_acc" in m]
    steps = [m["step"] + 1 for m in ev]
    a1.plot(steps, [m["train_loss"] for m in ev], color="#3056d3", label="train loss")
    a1.plot(steps, [m["test_loss"] for m in ev], color="#b3261e", label="test loss")
    a1.axhline(1e-3, color="#999", ls=":", lw=1)
    a1.axvline(1000, color="#999", ls=":", lw=1)
    a1.set_yscale("log")
    a1.set_ylabel("cross-entropy")
    a2.plot(steps, [m["train_acc"] for m in ev], color="#3056d3", label="train accuracy")
    a2.plot(steps, [m["test_acc"] for m in ev], color="#b3261e", label="test accuracy")
    if split:
        a2.plot([c["step"] for c in split], [c["swap_in_train"] for c in split], "o--", ms=3,
                color="#b36b00", lw=1, label="test pairs whose swap is trained")
        a2.plot([c["step"] for c in split], [c["rest"] for c in split], "o--", ms=3,
                color="#1b7f3b", lw=1, label="the other test pairs")
    a2.axhline(0.15, color="#999", ls=":", lw=1)
    a2.axhline(0.9, color="#999", ls=":", lw=1)
    a2.axvline(3500, color="#999", ls=":", lw=1)
    a2.axvline(8000, color="#999", ls=":", lw=1)
    a2.set_ylim(-0.02, 1.02)
    for ax in (a1, a2):
        ax.set_xlabel("step")
        ax.legend(fontsize=8, frameon=False)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


@register("grokking", "modular addition: memorise by step 1000, generalise late, after weight "
                      "decay has worked (Power et al. 2022; Nanda et al. 2023)")
def replicate_grokking(out: Path, progress: bool = True, steps: int = 8000) -> Replication:
    run = out / "grokking"
    res, measured, short = _train_fresh(grokking_config(steps), run, progress)
    mets = _metrics(run)
    m, s = grokking_checks(mets)
    measured.update(m)
    short += s
    split = commutative_split(run) if res.status == "completed" else []
    if split:
        early = [c for c in split if c["step"] <= 3500]
        measured["commutative_split"] = {
            "share_of_test_pairs_whose_swap_is_trained": split[0]["share_swap"],
            "max_acc_until_3500_swap_in_train": max(c["swap_in_train"] for c in early),
            "max_acc_until_3500_other_pairs": max(c["rest"] for c in early),
            "by_checkpoint": {c["step"]: [round(c["swap_in_train"], 4), round(c["rest"], 4)]
                              for c in split},
        }
    targets = ("training loss under 1e-3 by step 1000; test accuracy under 0.15 until step 3500 "
               "and at least 0.9 by step 8000")
    page = Page("Replication: grokking modular addition",
                "p = 59, 30% of the pairs for training, the 1-layer transformer of the "
                "modular_addition example, full-batch AdamW (lr 1e-3, weight decay 1).")
    page.add("Result", _verdict_html(not short, short, targets), "result")
    if any("test_acc" in x for x in mets):
        page.add("Curves", figure_block(
            figure_to_svg(_grokking_figure(mets, split)),
            "Loss and accuracy on the training and test pairs; dashed, at each checkpoint, the "
            "test accuracy on pairs (a, b) whose swap (b, a) is a training pair and on the "
            "others. a + b = b + a: a model that treats both orders alike gets the first group "
            "right while it memorises, so the whole test set's accuracy starts near that "
            "group's share of it; the second group measures generalisation."), "curves")
    page.add("Measured", _json_block(measured)
             + f"<p class='caption'>Command: <code>lenslab replicate grokking --out "
               f"{escape(out)}</code>.</p>", "measured")
    return _finish("grokking", out, page, measured, short)


# ============================================================================ tour


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


def regression_chapter(out_dir: Path, quick: bool) -> str:
    """The tour's in-context regression section (HTML): a linear self-attention layer against
    one step of gradient descent, and a small GPT against all the baselines, per k.

    Trains two runs under ``out_dir`` (``icl-lsa`` and ``icl-regression``), each replaced when
    it exists. About 10-20 s with ``quick``, 70-90 s without, on 2 shared cores.
    """
    import lenslab

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
            + figure_block(figure_to_svg(_lsa_gd_figure(exp["curve"], _metrics(Path(exp["run"])),
                                                        last["mse_gd"])),
                           "Left: loss of the LSA layer and of one optimal GD step. Right: cosine "
                           "of their input sensitivities."))
    else:
        parts.append(f"<p class='note'>The LSA run ended {escape(exp['status'])}: "
                     f"{escape(exp['message'])}</p>")

    run = out_dir / "icl-regression"
    _fresh(run)
    res = lenslab.train(_chapter_gpt_config(gpt_steps), run, progress=True)
    if res.status == "completed":
        model, task, step, cfg = load_regression_model(run)
        cmp_ = compare_algorithms(model, task, n_problems=300, model_name="GPT (2 layers)")
        cmp_.step, cmp_.command = step, f"lenslab algorithms {run}"
        cmp_.write(run / "analysis")
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
            "replication is <code>lenslab replicate icl-regression</code>.</p>" + cmp_.to_html()
            + f"<p class='caption'>Command: <code>lenslab algorithms {escape(run)}</code> "
              f"(written to <code>{escape(run / 'analysis')}</code>).</p>")
    else:
        parts.append(f"<p class='note'>The GPT run ended {escape(res.status)}: "
                     f"{escape(res.message)}</p>")
    parts.append(f"<p class='caption'>In-context regression computed in "
                 f"{time.perf_counter() - t0:.0f} s.</p>")
    return "".join(parts)

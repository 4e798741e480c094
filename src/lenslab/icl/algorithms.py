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

The replications that use it (``lsa-gd``, ``icl-regression``) live in
:mod:`lenslab.replications`; the tour's regression section in :mod:`lenslab.tour.icl`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from lenslab._io import finite_or_none, num
from lenslab.data import rng_for
from lenslab.data.regression import ICLRegressionTask, RegressionProblems
from lenslab.errors import DataError
from lenslab.html import (
    escape,
    figure_block,
    figure_to_svg,
    fmt,
    label,
    pyplot,
    table_html,
)
from lenslab.result import Result, write_result
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
class AlgorithmComparison(Result):
    """Per-k errors and distances of a model to the reference algorithms, and the verdicts.

    Lists run over :attr:`ks`; ``algorithms[name]`` holds ``error``, ``pred_dist``,
    ``weight_dist`` and ``sens_cos`` lists (NaN where undefined).
    """

    kind = "algorithms"
    title = "Which algorithm runs in context?"

    model_name: str
    ks: list[int]
    model_error: list[float]
    algorithms: dict[str, dict]
    gd_step_size: dict[int, float]
    verdicts: list[dict]
    task: dict
    n_problems: int
    step: Optional[int] = None
    trained_k: list[int] = field(default_factory=list)

    # ------------------------------------------------------------------ data
    def to_dict(self) -> dict:  # NaN is written as null (undefined distances)
        def clean(v):
            if isinstance(v, float):
                return finite_or_none(v)
            if isinstance(v, dict):
                return {str(k): clean(x) for k, x in v.items()}
            if isinstance(v, (list, tuple)):
                return [clean(x) for x in v]
            return v

        return clean({
            "model": self.model_name, "step": self.step, "task": self.task,
            "n_problems": self.n_problems, "ks": self.ks, "trained_k": self.trained_k,
            "model_error": self.model_error, "algorithms": self.algorithms,
            "gd_step_size": self.gd_step_size, "verdicts": self.verdicts,
        })

    @classmethod
    def from_dict(cls, d: dict) -> "AlgorithmComparison":
        def nums(v: list) -> list[float]:
            return [num(x) for x in v]

        algos = {name: {k: (nums(v) if isinstance(v, list) else v) for k, v in a.items()}
                 for name, a in d["algorithms"].items()}
        return cls(str(d["model"]), [int(k) for k in d["ks"]], nums(d["model_error"]), algos,
                   {int(k): num(v) for k, v in d["gd_step_size"].items()}, list(d["verdicts"]),
                   dict(d["task"]), int(d["n_problems"]), d.get("step"),
                   [int(k) for k in d.get("trained_k", [])])

    def heading(self) -> str:
        return f"Which algorithm runs in context? {self.model_name}"

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
                label=label(self.model_name))
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

    def figure(self):
        return self.error_figure()

    def summary_html(self) -> str:
        """The verdict table and the error figure (what the tour shows)."""
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

    def to_html(self) -> str:
        """Distances to least squares, ridge, k-NN, averaging and one step of gradient descent
        (Akyurek et al. 2022; von Oswald et al. 2023): verdicts, distances, errors."""
        weights = [{"k": k, **{a["label"]: a["weight_dist"][i] for a in self.algorithms.values()}}
                   for i, k in enumerate(self.ks)]
        return (self.summary_html()
                + "<h3>Distances</h3>" + figure_block(
                    figure_to_svg(self.distance_figure()),
                    "Left: mean squared difference of predictions (normalized by Var(y)). Right: "
                    "cosine between the gradients of the predictions with respect to the query "
                    "input.")
                + "<h3>Implicit weight distance</h3>" + table_html(weights, digits=3)
                + "<h3>Errors</h3>" + table_html(self.error_rows(), digits=3)
                + "<p class='caption'>One GD step uses the line-searched step size per k: "
                + escape(", ".join(f"k={k}: {fmt(e, 3)}" for k, e in self.gd_step_size.items()))
                + "</p>")


_COLORS = {"least_squares": "#3056d3", "ridge": "#7aa2f7", "knn": "#b36b00",
           "averaging": "#1b7f3b", "gd": "#b3261e"}


def sensitivity(pred: Predictor, xc: torch.Tensor, yc: torch.Tensor,
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


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
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
        s_m = sensitivity(pred_m, xc, yc, xq).double()
        model_err.append(float(((p_m - y) ** 2).mean() / y_var))
        for a in algs:
            out_a = _answers(a.predict, xc, yc, queries).double()
            p_a, w_a = out_a[:, 0], _implicit_weights(probes, out_a[:, 1:])
            r = res[a.name]
            r["error"].append(float(((p_a - y) ** 2).mean() / y_var))
            r["pred_dist"].append(float(((p_m - p_a) ** 2).mean() / y_var))
            r["weight_dist"].append(float(((w_m - w_a) ** 2).sum(1).mean() / w_norm))
            r["sens_cos"].append(cosine(s_m, sensitivity(a.predict, xc, yc, xq).double()))
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
                   command: Optional[str] = None) -> AlgorithmComparison:
    """Compare a run folder's model with the baselines; writes ``algorithms.json``, ``.html``
    and ``.png`` into ``out_dir`` (default the run's ``analysis/``)."""
    model, task, ck_step, cfg = load_regression_model(run_dir, step)
    cmp_ = compare_algorithms(model, task, n_problems=n_problems, model_name=cfg.name)
    cmp_.step = ck_step
    write_result(cmp_, out_dir if out_dir is not None else Run(run_dir), command)
    return cmp_

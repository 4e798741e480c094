"""In-context linear regression (Garg et al. 2022; von Oswald et al. 2023).

Every sequence is a new regression problem: ``w ~ N(0, I_d)``, inputs ``x_i`` i.i.d. normal or
uniform in ``[-1, 1]^d``, labels ``y_i = w.x_i + eps_i`` with ``eps_i ~ N(0, noise^2)``. The
model never sees ``w``; it has to infer it from the pairs in its context.

Three layouts (``ICLRegressionData.layout``), all with tokens of width ``D = d + 1``:

* ``interleaved`` (Garg et al.): ``(x_1, 0), (0, y_1), (x_2, 0), (0, y_2), ...``, ``T = 2 P``
  tokens for ``P = n_points`` pairs. At the token of ``x_i`` (position ``2 i``, 0-based) the
  model predicts ``y_i`` from the ``k = i`` pairs before it, so one sequence scores every
  ``k = 0 .. P - 1``.
* ``query_pair``: ``(x_1, 0), (x_1, y_1), (x_2, 0), (x_2, y_2), ...``: like ``interleaved``, but
  the answer token repeats its x, so ``y_i`` and ``x_i`` meet in one token (one attention layer
  can compute ``sum_i (x_i . x_q) y_i``; with Garg's layout x_i must first be moved next to y_i).
* ``paired`` (von Oswald et al.): ``(x_1, y_1), ..., (x_N, y_N), (x_q, 0)`` with
  ``N = n_points - 1`` context pairs; only the query (last token) is scored.

Targets are float tensors ``[B, T]`` holding ``y`` where a prediction is scored and NaN
elsewhere; the model's output is ``[B, T, 1]``. The loss is the squared error summed over scored
targets (:meth:`ICLRegressionTask.loss_sum`), which the trainer divides by
:meth:`ICLRegressionTask.scored_count`: a mean squared error.

Errors are reported *normalized* by ``Var(y) = d * Var(x_j) + noise^2``, so predicting 0 scores 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from lenslab.config import ICLRegressionData
from lenslab.data.base import rng_for

_TRAIN, _EVAL, _METRICS = 0, 1, 2  # stream ids: train, held-out, and the trainer's metrics


@dataclass
class RegressionProblems:
    """A batch of regression problems, as numbers (float64).

    ``xs [n, P, d]`` inputs, ``ys [n, P]`` labels, ``ws [n, d]`` the true weights.
    """

    xs: np.ndarray
    ys: np.ndarray
    ws: np.ndarray

    def __len__(self) -> int:
        return self.xs.shape[0]


class ICLRegressionTask:
    """The in-context regression task: ``batch(index, B) -> (inputs [B, T, d+1], targets [B, T])``."""

    name = "icl_regression"
    continuous = True  # vectors in, vectors out: no token vocabulary
    vocab_size = 0

    def __init__(self, cfg: ICLRegressionData, seed: int):
        self.cfg = cfg
        self.seed = seed
        self.d = cfg.d
        self.n_points = cfg.n_points
        self.layout = cfg.layout
        self.token_dim = cfg.d + 1  # width of every token (read-in d_in)
        self.out_dim = 1  # one prediction per token (read-out d_out)
        self.two_tokens = cfg.layout in ("interleaved", "query_pair")  # a token per x and per y
        self.seq_len = 2 * cfg.n_points if self.two_tokens else cfg.n_points
        self.x_var = 1.0 if cfg.x_dist == "normal" else 1.0 / 3.0  # Var of one coordinate of x
        self.x_m4 = 3.0 if cfg.x_dist == "normal" else 1.0 / 5.0  # E[x_j^4]
        self.y_var = cfg.d * self.x_var + cfg.noise ** 2  # Var(y): the zero predictor's error
        # the numbers of in-context examples that the layout scores
        self.ks = list(range(cfg.n_points)) if self.two_tokens else [cfg.n_points - 1]

    def position(self, k: int) -> int:
        """The token where the prediction with ``k`` in-context examples is read (full sequence)."""
        return 2 * k if self.two_tokens else self.seq_len - 1

    # ------------------------------------------------------------------ sampling
    def sample_x(self, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        """Inputs ``[*shape, d]`` from the task's x distribution (float64)."""
        if self.cfg.x_dist == "normal":
            return rng.standard_normal((*shape, self.d))
        return rng.uniform(-1.0, 1.0, (*shape, self.d))

    def sample(self, rng: np.random.Generator, n: int) -> RegressionProblems:
        """``n`` problems of ``n_points`` pairs each."""
        ws = rng.standard_normal((n, self.d))
        xs = self.sample_x(rng, (n, self.n_points))
        ys = np.einsum("npd,nd->np", xs, ws)
        if self.cfg.noise > 0:
            ys = ys + self.cfg.noise * rng.standard_normal(ys.shape)
        return RegressionProblems(xs, ys, ws)

    def problems(self, n: int, index: int = 0) -> RegressionProblems:
        """Held-out problems for analyses (never the trainer's batches), a pure function of
        ``(seed, index)``."""
        return self.sample(rng_for(self.seed, _EVAL, 10_000 + index), n)

    # ------------------------------------------------------------------ encoding
    def encode(self, pr: RegressionProblems) -> tuple[torch.Tensor, torch.Tensor]:
        """Model inputs ``[n, T, d+1]`` and targets ``[n, T]`` (NaN = not scored), float32."""
        n, P, d = pr.xs.shape
        if self.two_tokens:
            e = np.zeros((n, 2 * P, d + 1))
            e[:, 0::2, :d] = pr.xs
            if self.layout == "query_pair":
                e[:, 1::2, :d] = pr.xs
            e[:, 1::2, d] = pr.ys
            t = np.full((n, 2 * P), np.nan)
            t[:, 0::2] = pr.ys
        else:
            e = np.concatenate([pr.xs, pr.ys[..., None]], axis=2)
            e[:, -1, d] = 0.0  # the query's label is hidden
            t = np.full((n, P), np.nan)
            t[:, -1] = pr.ys[:, -1]
        return (torch.from_numpy(e.astype(np.float32)), torch.from_numpy(t.astype(np.float32)))

    def query_inputs(self, xc: torch.Tensor, yc: torch.Tensor, xq: torch.Tensor) -> torch.Tensor:
        """Sequences that ask for ``y`` at each query given a context.

        ``xc [B, k, d]`` and ``yc [B, k]`` are the context pairs, ``xq [B, m, d]`` the queries.
        Returns inputs ``[B * m, T_k, d+1]`` (row ``b * m + j`` asks for query j of problem b);
        the prediction is the model's output at the last token. ``T_k = 2k + 1`` (interleaved,
        query_pair) or ``k + 1`` (paired). Differentiable in ``xq`` (for input sensitivities).
        """
        B, k, d = xc.shape
        m = xq.shape[1]
        dt = xq.dtype
        ctx_x = torch.cat([xc.to(dt), torch.zeros(B, k, 1, dtype=dt, device=xq.device)], dim=2)
        ctx_y = torch.cat([torch.zeros(B, k, d, dtype=dt, device=xq.device),
                           yc.to(dt)[..., None]], dim=2)
        if self.two_tokens:
            answers = ctx_x + ctx_y if self.layout == "query_pair" else ctx_y
            ctx = torch.stack([ctx_x, answers], dim=2).reshape(B, 2 * k, d + 1)
        else:
            ctx = ctx_x + ctx_y  # (x_i, y_i)
        q = torch.cat([xq, torch.zeros(B, m, 1, dtype=dt, device=xq.device)], dim=2)  # [B, m, D]
        ctx = ctx[:, None].expand(B, m, ctx.shape[1], d + 1)
        seqs = torch.cat([ctx, q[:, :, None]], dim=2)  # [B, m, T_k, D]
        return seqs.reshape(B * m, seqs.shape[2], d + 1)

    # ------------------------------------------------------------------ task protocol
    def batch(self, index: int, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encode(self.sample(rng_for(self.seed, _TRAIN, index), batch_size))

    def eval_batches(self, n: int, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for i in range(n):
            yield self.encode(self.sample(rng_for(self.seed, _EVAL, i), batch_size))

    def token_str(self, ids: list[int]) -> list[str]:
        """Names of the token *positions* ``ids`` (``x3``, ``y3``, ``query``): the tokens are
        vectors, so there are no token strings."""
        out = []
        for i in map(int, ids):
            if self.two_tokens:
                out.append(f"{'x' if i % 2 == 0 else 'y'}{i // 2}")
            else:
                out.append("query" if i == self.n_points - 1 else f"(x,y){i}")
        return out

    def loss_sum(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Squared error summed over the scored targets: ``out [B, T, 1]``, ``y [B, T]``."""
        pred = out.float().reshape(y.shape)
        scored = ~torch.isnan(y)
        diff = pred - torch.where(scored, y, torch.zeros_like(y))  # no NaN reaches the graph
        return torch.where(scored, diff * diff, torch.zeros_like(diff)).sum()

    def scored_count(self, y: torch.Tensor) -> int:
        return int((~torch.isnan(y)).sum())

    @torch.no_grad()
    def per_k_error(self, model: torch.nn.Module, device: torch.device, n: int = 512,
                    index: int = 0) -> dict[int, float]:
        """Normalized squared error of ``model`` for each scored k, on ``n`` held-out problems."""
        x, t = self.encode(self.problems(n, index))
        pred = model(x.to(device)).float().cpu().reshape(t.shape)
        err = (pred - t) ** 2 / self.y_var
        return {k: err[:, self.position(k)].mean().item() for k in self.ks}

    @torch.no_grad()
    def metrics(self, model: torch.nn.Module, device: torch.device) -> dict[str, float]:
        """``nmse``: normalized squared error averaged over every scored k; ``nmse_last``: at the
        largest k (``n_points - 1`` examples)."""
        x, t = self.encode(self.sample(rng_for(self.seed, _METRICS, 0), 512))
        pred = model(x.to(device)).float().cpu().reshape(t.shape)
        err = (pred - t) ** 2 / self.y_var
        scored = ~torch.isnan(t)
        last = err[:, self.position(self.ks[-1])]
        return {"nmse": err[scored].mean().item(), "nmse_last": last.mean().item()}

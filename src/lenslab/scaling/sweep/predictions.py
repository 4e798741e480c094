"""An addition sweep's answers, per model and problem: ``predictions.csv``.

A sweep of GPTs of increasing size learns ``a + b`` (see :class:`lenslab.data.AdditionTask`).
Every model answers the *same* problems, drawn apart from training; each answer is scored as a
whole (exact match) and digit by digit (per-digit accuracy, edit distance) and, from the
teacher-forced probabilities, by the log-likelihood of the correct answer. ``lenslab emergence``
then asks Schaeffer et al.'s question of this file: does exact match jump with scale while a
continuous metric of the same answers moves smoothly (a metric artifact), or do both break?

``predictions.csv`` has one row per (model, problem): ``scale`` (the model's non-embedding
parameters N), ``example`` (``"a+b"``, zero-padded), ``target`` and ``prediction`` (the sum,
most significant digit first, zero-padded to ``digits + 1``; a model trained on the reversed
format is read back into this order), ``logprob`` (natural log of p(target), teacher-forced)
and ``loss`` (the model's final validation loss, for the analysis against loss of Du et al.
2024). It is exactly the input of ``lenslab emergence PREDICTIONS.csv``.

One model per scale: when the sweep holds several runs with the same N (seeds, training
lengths), the one trained longest is used, and among those the smallest seed.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from lenslab._io import atomic_write_text
from lenslab.data import IGNORE
from lenslab.errors import DataError
from lenslab.run import Run
from lenslab.scaling.sweep.results import read_results

#: Seed of the evaluation problems (shared by every model of a sweep; not a training seed).
PROBLEM_SEED = 20230428


def select_runs(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One completed run per N (longest training, then smallest seed), ordered by N."""
    best: dict[int, dict[str, Any]] = {}
    for r in rows:
        if r.get("status") != "completed":
            continue
        n = int(r["N"])
        cur = best.get(n)
        if cur is None or (r["D"], -r["seed"]) > (cur["D"], -cur["seed"]):
            best[n] = r
    return [best[n] for n in sorted(best)]


def problems(task: Any, n_examples: int, seed: int = PROBLEM_SEED) -> tuple[np.ndarray, np.ndarray]:
    """``n_examples`` distinct problems ``(a [n], b [n])`` of the task, drawn with ``seed``.

    All of them when the task has fewer distinct problems than asked for. (Training draws
    problems at random from the whole space, so for small digit counts these are not unseen
    problems; for 3 digits and a few thousand training batches most are.)
    """
    hi = task.base ** task.cfg.digits
    space = hi * hi
    rng = np.random.default_rng(seed)
    n = min(n_examples, space)
    flat = rng.choice(space, size=n, replace=False) if space <= 10 ** 7 else _distinct(rng, space, n)
    return flat // hi, flat % hi


def _distinct(rng: np.random.Generator, space: int, n: int) -> np.ndarray:
    seen: dict[int, None] = {}
    while len(seen) < n:
        for v in rng.integers(0, space, n):
            seen.setdefault(int(v), None)
            if len(seen) == n:
                break
    return np.fromiter(seen, dtype=np.int64, count=n)


def _digits_str(task: Any, digits: Any) -> list[str]:
    """Rows of digit ids in plain order -> strings (base-36 characters)."""
    return ["".join(np.base_repr(int(d), 36) for d in row) for row in digits]


def answer(model: Any, task: Any, a: np.ndarray, b: np.ndarray, batch_size: int = 512):
    """Greedy answers and teacher-forced log p(correct answer) for problems ``a + b``.

    Returns (targets, predictions, logprobs): answer strings most significant digit first,
    and ``logprobs [n]`` in nats.
    """
    targets, preds, lps = [], [], []
    rev = task.cfg.format == "reversed"
    with torch.no_grad():
        for s in range(0, len(a), batch_size):
            aa, bb = a[s:s + batch_size], b[s:s + batch_size]
            x, y = task.encode(aa, bb)
            logits = model(x).float()
            logp = torch.log_softmax(logits, dim=-1)
            mask = y != IGNORE
            tok = logp.gather(-1, y.clamp(min=0).unsqueeze(-1)).squeeze(-1)
            lps.append((tok * mask).sum(1).double().numpy())
            t, p = task.answers(model, torch.device("cpu"), aa, bb)  # as written
            if rev:
                t, p = [r[::-1] for r in t], [r[::-1] for r in p]
            targets += _digits_str(task, t)
            preds += _digits_str(task, p)
    return targets, preds, np.concatenate(lps) if lps else np.zeros(0)


def write_predictions(sweep_dir: str | Path, n_examples: int = 512, out: Optional[Path] = None,
                      seed: int = PROBLEM_SEED) -> Path:
    """Every selected model of an addition sweep answers the same problems; write the CSV.

    Reads ``sweep_dir/results.json`` and writes ``sweep_dir/predictions.csv`` (or ``out``).
    """
    sweep_dir = Path(sweep_dir)
    rows = select_runs(read_results(sweep_dir))
    if not rows:
        raise DataError(f"{sweep_dir} has no completed runs to evaluate")
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["scale", "example", "target", "prediction", "logprob", "loss", "run"])
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)  # tiny batches: threads cost more than they give
        for r in rows:
            run = Run.open(r["run"])
            run_dir, task = run.path, run.task
            if getattr(task, "name", "") != "addition":
                raise DataError(f"{run_dir} trained on {getattr(task, 'name', '?')}, not addition")
            model = run.load_model()
            a, b = problems(task, n_examples, seed)
            targets, preds, lps = answer(model, task, a, b)
            n = task.cfg.digits
            val = r.get("val_loss", math.nan)
            for ai, bi, t, p, lp in zip(a, b, targets, preds, lps):
                ex = f"{np.base_repr(int(ai), task.base).zfill(n)}+{np.base_repr(int(bi), task.base).zfill(n)}"
                w.writerow([r["N"], ex, t, p, repr(float(lp)), "" if not math.isfinite(val) else repr(val),
                            run_dir.name])
    finally:
        torch.set_num_threads(threads)
    path = Path(out) if out is not None else sweep_dir / "predictions.csv"
    atomic_write_text(path, buf.getvalue())
    return path

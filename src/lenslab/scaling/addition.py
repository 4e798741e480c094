"""The live emergence case: small GPTs on multi-digit addition, judged per example.

A sweep of GPTs of increasing size learns ``a + b`` (see :class:`lenslab.data.AdditionTask`).
Every model answers the *same* problems, drawn apart from training; each answer is scored as a
whole (exact match) and digit by digit (per-digit accuracy, edit distance) and, from the
teacher-forced probabilities, by the log-likelihood of the correct answer. :mod:`lenslab.emergence` then
asks Schaeffer et al.'s question: does exact match jump with scale while a continuous metric
of the same answers moves smoothly (a metric artifact), or do both break (emergent)?

    from lenslab.scaling.addition import addition_case
    case = addition_case("runs/addition-sweep")
    case.emergence.verdict, case.predictions        # verdict and the CSV lenslab emergence reads

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from lenslab._io import atomic_write_json, atomic_write_text
from lenslab.errors import DataError
from lenslab.run import Run

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


def _digits_str(task: Any, digits: np.ndarray) -> list[str]:
    """Rows of digit ids ``[n, k]`` in plain order -> strings (base-36 characters)."""
    return ["".join(np.base_repr(int(d), 36) for d in row) for row in digits]


def answer(model: Any, task: Any, a: np.ndarray, b: np.ndarray, batch_size: int = 512):
    """Greedy answers and teacher-forced log p(correct answer) for problems ``a + b``.

    Returns (targets, predictions, logprobs): answer strings most significant digit first,
    and ``logprobs [n]`` in nats.
    """
    import torch

    from lenslab.data import IGNORE

    targets, preds, lps = [], [], []
    k = task.answer_len
    rev = task.cfg.format == "reversed"
    with torch.no_grad():
        for s in range(0, len(a), batch_size):
            x, y = task.encode(a[s:s + batch_size], b[s:s + batch_size])
            p = task.predict(model, torch.device("cpu"), x)  # [n, k] in the task's order
            logits = model(x).float()
            logp = torch.log_softmax(logits, dim=-1)
            mask = y != IGNORE
            tok = logp.gather(-1, y.clamp(min=0).unsqueeze(-1)).squeeze(-1)
            lps.append((tok * mask).sum(1).double().numpy())
            t = y[:, -k:]
            if rev:
                t, p = t.flip(1), p.flip(1)
            targets += _digits_str(task, t.numpy())
            preds += _digits_str(task, p.numpy())
    return targets, preds, np.concatenate(lps) if lps else np.zeros(0)


def write_predictions(sweep_dir: str | Path, n_examples: int = 512, out: Optional[Path] = None,
                      seed: int = PROBLEM_SEED) -> Path:
    """Every selected model of an addition sweep answers the same problems; write the CSV.

    Reads ``sweep_dir/results.json`` and writes ``sweep_dir/predictions.csv`` (or ``out``).
    """
    import torch

    from lenslab.scaling.sweep import read_results

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


@dataclass
class AdditionCase:
    """The live case: the sweep, its predictions CSV and the emergence verdict."""

    sweep: Any  # SweepResult
    predictions: Path
    emergence: Any  # EmergenceResult

    def _repr_html_(self) -> str:
        return self.emergence.html()


def addition_emergence(sweep_dir: str | Path, n_boot: int = 1000, seed: int = 0,
                       n_examples: int = 512) -> tuple[Path, Any]:
    """The verdict for an addition sweep that has finished: ``(predictions.csv, EmergenceResult)``.

    Writes ``predictions.csv`` when it is missing, then ``emergence/emergence.json`` and
    ``emergence/emergence.html`` in the sweep folder.
    """
    from lenslab.emergence import analyze_csv

    sweep_dir = Path(sweep_dir)
    pred = sweep_dir / "predictions.csv"
    if not pred.is_file():
        pred = write_predictions(sweep_dir, n_examples)
    res = analyze_csv(pred, n_boot=n_boot, seed=seed)
    d = res.to_dict()
    d["source"] = str(pred)
    d["command"] = f"lenslab emergence {pred} --bootstrap {n_boot} --seed {seed} --out {sweep_dir / 'emergence'}"
    atomic_write_json(sweep_dir / "emergence" / "emergence.json", d)
    res.page(f"Emergent or metric artifact? {sweep_dir.name}").write(sweep_dir / "emergence" / "emergence.html")
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
    from lenslab.scaling.sweep import run_sweep

    shapes = shapes or [(1, 16), (1, 24), (2, 32), (2, 48), (2, 64), (2, 96)]
    sweep_cfg = addition_sweep_config(shapes, steps, workers=workers, threads=threads, **config)
    result = run_sweep(sweep_cfg, out, progress=progress)
    if result.exit_code != 0:
        from lenslab.errors import LensError

        msg = "; ".join(f"{k}: {v}" for k, v in result.messages.items()) or "interrupted"
        raise LensError(f"the addition sweep in {out} did not finish ({msg}); rerun to resume it")
    pred, res = addition_emergence(out, n_boot=n_boot, n_examples=sweep_cfg["predictions"])
    return AdditionCase(result, pred, res)

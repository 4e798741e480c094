"""The results table of a sweep: one row per grid point (see :mod:`lenslab.scaling.sweep` for
every column), written as ``results.csv`` and ``results.json``."""

from __future__ import annotations

import csv
import io
import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import torch

from lenslab._io import atomic_write_json, atomic_write_text, num
from lenslab.data import task_loss, task_scored
from lenslab.errors import RunDirError
from lenslab.run import Run
from lenslab.scaling.sweep.plan import GridPoint

#: Columns of the results table, before and after the task's own metrics.
HEAD_COLUMNS = ("name", "status", "n_layer", "d_model", "n_head", "seed", "steps", "N", "D", "C",
                "tokens_per_param", "loss", "train_loss", "val_loss", "train_loss_logged")
TAIL_COLUMNS = ("epochs", "unique_tokens", "lr", "warmup", "batch_size", "guard_events",
                "guard_nonfinite", "guard_spike", "guard_rollback", "resumes", "run")
#: Keys of a metrics.jsonl record that are not task metrics.
_STEP_KEYS = {"step", "seq", "data_index", "loss", "lr", "grad_norm", "tokens", "skipped",
              "elapsed_s", "tok_per_s", "loss_scale", "val_loss"}


def final_train_loss(run_dir: Path) -> float:
    """The final model's loss on training data (see the module docstring), cached per checkpoint.

    Reads ``RUN/analysis/train_loss.json`` when it was measured on the newest verified
    checkpoint; otherwise loads that checkpoint, measures and writes the file.
    """
    run = Run(run_dir)
    ck = run.latest_checkpoint(warn=lambda m: None)
    if ck is None:
        return math.nan
    cache = run_dir / "analysis" / "train_loss.json"
    try:
        old = json.loads(cache.read_text())
        if old.get("checkpoint") == ck.path.name:
            return num(old.get("train_loss"))
    except (OSError, ValueError):
        pass
    task, full = run.task, run.resolved
    dev = torch.device("cuda" if full.train.device.startswith("cuda") and torch.cuda.is_available() else "cpu")
    model = run.load_model(ck, device=dev)
    k, steps = full.train.eval_batches, full.train.max_steps
    indices = sorted({int((j + 0.5) * steps / k) for j in range(k)})
    tot = cnt = 0.0
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # workers may still be running on the other cores
    try:
        with torch.no_grad():
            for i in indices:
                x, y = task.batch(i, full.optim.batch_size)
                x, y = x.to(dev), y.to(dev)
                tot += task_loss(task, model(x), y).item()
                cnt += task_scored(task, y)
    finally:
        torch.set_num_threads(threads)
    value = tot / max(cnt, 1)
    atomic_write_json(cache, {"train_loss": value, "checkpoint": ck.path.name, "data_indices": indices,
                              "batch_size": full.optim.batch_size,
                              "definition": "loss of the final model on training batches spread over the "
                                            "run, eval mode (written by lenslab sweep)"})
    return value


def run_row(point: GridPoint, run_dir: Path, loss_window: float = 0.1) -> dict[str, Any]:
    """The results-table row of one grid point (see the module docstring for every column)."""
    row: dict[str, Any] = {"name": point.name}
    for k in ("n_layer", "d_model", "n_head"):
        row[k] = point.axes.get(k)
    row["seed"] = point.axes["seed"]
    row.update({k: v for k, v in point.axes.items() if "." in k})  # grid.set axes
    row["steps"] = point.steps
    row["N"] = point.N
    row["D"] = point.D
    row["C"] = 6 * point.N * point.D
    row["tokens_per_param"] = point.D / point.N if point.N else math.nan
    metrics: list[dict] = []
    events: Counter = Counter()
    status = "pending"
    if Run.is_run(run_dir):
        run = Run(run_dir)
        status = run.status
        metrics = run.metrics()
        events = Counter(run.events)
    loss = logged = val = math.nan
    task_metrics: dict[str, float] = {}
    if status == "completed" and metrics:
        first = point.steps - max(1, int(math.ceil(loss_window * point.steps)))
        window = [num(m.get("loss")) for m in metrics if m.get("step", -1) >= first and not m.get("skipped")]
        window = [v for v in window if math.isfinite(v)]
        logged = sum(window) / len(window) if window else math.nan
        last_eval = next((m for m in reversed(metrics) if "val_loss" in m), None)
        if last_eval is not None:
            val = num(last_eval["val_loss"])
            task_metrics = {k: num(v) for k, v in last_eval.items()
                            if k not in _STEP_KEYS and isinstance(v, (int, float)) and not isinstance(v, bool)}
        loss = final_train_loss(run_dir)
    row["status"] = status
    row["loss"] = loss
    row["train_loss"] = loss
    row["val_loss"] = val
    row["train_loss_logged"] = logged
    row.update(task_metrics)
    u = point.unique_tokens
    if u is None:
        row["epochs"], row["unique_tokens"] = 0.0, math.nan
    else:
        row["epochs"] = point.D / u if u and math.isfinite(u) else math.nan
        row["unique_tokens"] = u
    row["lr"] = point.config.optim.lr
    row["warmup"] = point.config.optim.warmup_steps
    row["batch_size"] = point.config.optim.batch_size
    row["guard_nonfinite"] = events.get("nonfinite", 0)
    row["guard_spike"] = events.get("spike", 0)
    row["guard_rollback"] = events.get("rollback", 0)
    row["guard_events"] = row["guard_nonfinite"] + row["guard_spike"] + row["guard_rollback"]
    row["resumes"] = events.get("resume", 0)
    row["run"] = str(run_dir)
    return row


def table_columns(rows: list[dict[str, Any]]) -> list[str]:
    """Head columns, the task metrics found in any row (sorted), then the tail columns."""
    known = set(HEAD_COLUMNS) | set(TAIL_COLUMNS)
    extra = sorted({k for r in rows for k in r if k not in known})
    set_axes = [k for k in extra if "." in k]  # grid.set axes go with the other axes
    head = list(HEAD_COLUMNS)
    at = head.index("steps")
    return (head[:at] + set_axes + head[at:] + [k for k in extra if "." not in k]
            + list(TAIL_COLUMNS))


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        if not math.isfinite(v):
            return ""
        return repr(v)
    return str(v)


DEFINITIONS = {
    "N": "non-embedding parameters (model.num_params(non_embedding=True))",
    "D": "training tokens: steps * batch_size * seq_len (all input positions)",
    "C": "6 N D",
    "loss": "the final model's loss on eval_batches training batches spread over the run (eval mode); "
            "completed runs only",
    "train_loss": "same as loss",
    "train_loss_logged": "mean logged training loss over the last loss_window share of steps "
                         "(skipped steps excluded)",
    "val_loss": "validation loss at the final evaluation",
    "epochs": "D / unique_tokens: passes over the distinct training data; 0 for tasks that draw "
              "fresh sequences every step (induction, icl_regression)",
    "unique_tokens": "text: training-split tokens; addition: base^(2 digits) * seq_len; "
                     "modular addition: training pairs * 3; empty when unbounded",
    "guard_events": "guard_nonfinite + guard_spike + guard_rollback",
    "resumes": "resumes after a kill or preemption",
}


def write_results(rows: list[dict[str, Any]], out: Path, meta: dict[str, Any]) -> None:
    """``out/results.csv`` and ``out/results.json`` (atomic); NaN is an empty cell / null."""
    cols = table_columns(rows)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for r in rows:
        w.writerow([_cell(r.get(c)) for c in cols])
    atomic_write_text(out / "results.csv", buf.getvalue())

    def clean(v: Any) -> Any:
        return None if isinstance(v, float) and not math.isfinite(v) else v

    atomic_write_json(out / "results.json", {
        **meta, "columns": cols, "definitions": DEFINITIONS,
        "rows": [{c: clean(r.get(c)) for c in cols} for r in rows]})


def read_results(out: str | Path) -> list[dict[str, Any]]:
    """The rows of ``out/results.json`` (NaN for empty cells)."""
    p = Path(out) / "results.json"
    if not p.is_file():
        raise RunDirError(f"{out} has no results.json; run `lenslab sweep SWEEP.toml --out {out}` first")
    data = json.loads(p.read_text())
    return [{k: (math.nan if v is None else v) for k, v in r.items()} for r in data["rows"]]

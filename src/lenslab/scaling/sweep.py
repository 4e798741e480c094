"""Sweeps: a grid of guarded runs over model shape, training length and seed, and their table.

``lenslab sweep SWEEP.toml --out DIR`` trains every grid point as a normal run folder
``DIR/runs/<name>`` (each one a ``python -m lenslab train`` subprocess, several at once), then
writes ``DIR/results.csv`` and ``DIR/results.json``: one row per grid point with the columns
that :mod:`lenslab.scaling.fit` and :mod:`lenslab.scaling.diagnose` read.

The sweep file::

    name = "addition-width"
    workers = 2                  # runs trained at the same time (subprocesses)
    threads = 1                  # torch threads per run: workers * threads <= cores
    base = "addition.toml"       # a run config (path relative to this file) or an inline [base]
    max_retries = 1              # resumes of a worker killed by a signal, within one invocation
    loss_window = 0.1            # share of the last steps averaged for train_loss_logged
    predictions = 512            # addition sweeps: problems each model answers (0: no CSV)

    [grid]
    n_layer = [2]                # model shape: every combination of n_layer x d_model x n_head
    d_model = [32, 64, 128]      # (or d_head = [16]: n_head = d_model / d_head)
    n_head = [4]                 # (or shapes = [{n_layer = 2, d_model = 64, n_head = 4}, ...])
    steps = [500, 1000]          # training length in optimizer steps, or tokens = [...]
    seeds = [0, 1]
    # lr = [1e-3, 3e-3]          # optional: the peak learning rate as one more axis

    [grid.set]                   # optional: any other config key as an axis
    "data.disambiguating" = [0.0, 0.25, 1.0]
    "model.position" = ["learned", "rope"]

Axes left out keep the base config's value. Every grid point is validated (and its model
built on the ``meta`` device to count N) before anything is written, so a bad point is a
one-line :class:`~lenslab.errors.ConfigError` that names it.

Run names
    ``L{n_layer}-d{d_model}-h{n_head}-s{steps}-seed{seed}`` (``-t{tokens}`` when the length is
    given in tokens; ``-lr{lr}`` when ``grid.lr`` is given; ``-{key}{value}`` for each
    ``grid.set`` axis, e.g. ``-disambiguating0.25-positionrope``, before the seed; the results
    table has a column per ``grid.set`` key, named as in the file). Names do not depend on which axes
    have one value, so adding a seed or a width later keeps the existing runs.
Width and the MLP
    A base ``d_mlp`` is scaled with ``d_model`` (its ratio is kept); without one the model's
    default ``4 * d_model`` applies.
GPUs
    With several workers and more than one visible GPU, each worker slot is pinned to one GPU
    (``CUDA_VISIBLE_DEVICES``, round-robin over the visible ones) for runs whose device is
    ``auto`` or ``cuda``; a run that names its device keeps it.
Resuming
    Running the same sweep again skips completed runs and runs the guard gave up on (a rerun
    would give up again at the same step), resumes killed or preempted ones with
    ``lenslab resume``, and restarts runs killed before their first checkpoint. A grid point
    whose config no longer matches its run folder is an error that names the point and the
    changed keys (``train.threads`` is ignored: it changes speed, not the experiment, and a
    resumed run keeps the value it was started with). Within one invocation a worker killed by a
    signal is resumed up to ``max_retries`` times. One sweep at a time may work on a folder
    (``DIR/sweep.lock``).
Interrupting
    Ctrl-C or SIGTERM stops starting runs and forwards SIGTERM to the workers, which finish
    their step, write a checkpoint and exit; the sweep writes the table of what is done and
    exits with 75. Run the same command again to continue.
Scheduling
    The largest runs (by 6 N D) start first, so the last worker to finish is a short run.

The results table (one row per grid point, in grid order)
    ``name, status, n_layer, d_model, n_head, seed, steps, N, D, C, tokens_per_param, loss,
    train_loss, val_loss, <task metrics>, epochs, unique_tokens, lr, warmup, batch_size,
    guard_events, guard_nonfinite, guard_spike, guard_rollback, resumes, run``

    * ``N``: non-embedding parameters (``model.num_params(non_embedding=True)``, Kaplan's N).
    * ``D``: training tokens, ``steps * batch_size * seq_len`` (every input position of every
      sequence, as the trainer's ``tokens`` counter; for the arithmetic tasks only the answer
      positions are scored). ``C = 6 N D``.
    * ``loss`` and ``train_loss``: the final model's loss on training data: ``eval_batches``
      training batches spread evenly over the run (data indices ``(j + 1/2) * steps /
      eval_batches``), in eval mode (no dropout), with the task's loss. It is measured once by
      the sweep and kept in ``RUN/analysis/train_loss.json``. ``val_loss`` and the task metrics
      (``exact_match``, ``digit_acc`` for addition; ``repeat_loss`` for induction, ...) come
      from the run's final evaluation, so ``val_loss - train_loss`` compares one model on the
      same number of batches of the two splits. ``train_loss_logged`` is the mean logged
      training loss over the last ``loss_window`` share of steps (default 10%, skipped steps
      excluded): what the optimizer saw, with dropout, and lagging behind the final model while
      the loss still falls. Only completed runs have losses; the others' cells are empty, so
      ``lenslab fit`` and ``lenslab diagnose`` drop them with a warning that names them.
    * ``epochs``: passes over the distinct training data, ``D / unique_tokens``. Text:
      ``unique_tokens`` is the training split's token count. Multi-digit addition: all
      ``base^(2 digits)`` problems times ``seq_len`` (problems are drawn with replacement, so
      this is the expected number of times each was seen). Modular addition: the training pairs
      times 3. Tasks that draw fresh random sequences every step (induction, in-context
      regression) have no finite set to repeat: ``epochs = 0`` and ``unique_tokens`` is empty.
    * ``lr`` (peak) and ``warmup`` (steps) from the run's config; ``guard_events`` counts
      non-finite and spike anomalies and rollbacks (``guard_nonfinite + guard_spike +
      guard_rollback``); ``resumes`` counts resumes after a kill or preemption.

Addition sweeps also write ``DIR/predictions.csv`` (see :mod:`lenslab.scaling.addition`): each
model's answers to the same evaluation problems, the input of ``lenslab emergence``.
"""

from __future__ import annotations

import csv
import io
import itertools
import math
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from lenslab._io import atomic_write_json, atomic_write_text, num
from lenslab.config import RunConfig, config_from_dict, load_config, read_toml
from lenslab.errors import ConfigError, LensError, RunDirError
from lenslab.run import Run, pid_alive

#: Columns of the results table, before and after the task's own metrics.
HEAD_COLUMNS = ("name", "status", "n_layer", "d_model", "n_head", "seed", "steps", "N", "D", "C",
                "tokens_per_param", "loss", "train_loss", "val_loss", "train_loss_logged")
TAIL_COLUMNS = ("epochs", "unique_tokens", "lr", "warmup", "batch_size", "guard_events",
                "guard_nonfinite", "guard_spike", "guard_rollback", "resumes", "run")
#: Keys of a metrics.jsonl record that are not task metrics.
_STEP_KEYS = {"step", "seq", "data_index", "loss", "lr", "grad_norm", "tokens", "skipped",
              "elapsed_s", "tok_per_s", "loss_scale", "val_loss"}
#: Tasks whose every batch is freshly drawn from an unbounded space (no epochs).
FRESH_TASKS = ("induction", "icl_regression", "repeat", "sequence")
#: Exit codes of ``lenslab train`` / ``resume`` (see the README).
_RC_OK, _RC_BAD_INPUT, _RC_GAVE_UP, _RC_PREEMPTED = 0, 2, 3, 75
#: Exit code of a sweep that was interrupted (like a preempted run) or left runs unfinished.
EXIT_INTERRUPTED, EXIT_UNFINISHED = 75, 1


# ----------------------------------------------------------------------------------------------
# The sweep file
# ----------------------------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


PosInt = Annotated[int, Field(gt=0)]
NonNegInt = Annotated[int, Field(ge=0)]
PosFloat = Annotated[float, Field(gt=0)]


#: Sections of a run config that ``grid.set`` may vary, and the keys that have their own axis.
SET_SECTIONS = ("model", "data", "optim", "train", "guard")
OWN_AXES = {"model.n_layer": "n_layer", "model.d_model": "d_model", "model.n_head": "n_head",
            "train.max_steps": "steps", "optim.lr": "lr"}


def set_part(key: str, value: Any) -> str:
    """A ``grid.set`` axis in a run name: ``data.disambiguating = 0.5`` -> ``disambiguating0.5``."""
    text = _g(value) if isinstance(value, float) else str(value).lower()
    return key.split(".", 1)[1] + re.sub(r"[^A-Za-z0-9._]+", "_", text)


class Shape(_Strict):
    """One explicit model shape (``grid.shapes``)."""

    n_layer: int = Field(..., gt=0)
    d_model: int = Field(..., gt=0)
    n_head: Optional[int] = Field(None, gt=0)


class Grid(_Strict):
    """The axes of the sweep; the grid is their product. See the module docstring."""

    n_layer: Optional[list[PosInt]] = None
    d_model: Optional[list[PosInt]] = None
    n_head: Optional[list[PosInt]] = None
    d_head: Optional[list[PosInt]] = None
    shapes: Optional[list[Shape]] = None
    steps: Optional[list[PosInt]] = None
    tokens: Optional[list[PosInt]] = None
    seeds: Optional[list[NonNegInt]] = None
    lr: Optional[list[PosFloat]] = None
    set: Optional[dict[str, list[Any]]] = Field(
        None, description="any other config keys as axes: {\"data.disambiguating\" = [0, 0.5]}")

    @model_validator(mode="after")
    def _exclusive(self) -> "Grid":
        if self.n_head is not None and self.d_head is not None:
            raise ValueError("give n_head or d_head, not both")
        if self.steps is not None and self.tokens is not None:
            raise ValueError("give steps or tokens, not both")
        if self.shapes is not None and any(
                getattr(self, k) is not None for k in ("n_layer", "d_model", "n_head", "d_head")):
            raise ValueError("give shapes, or the n_layer/d_model/n_head axes, not both")
        for name in ("n_layer", "d_model", "n_head", "d_head", "steps", "tokens", "seeds", "lr"):
            vals = getattr(self, name)
            if vals is None:
                continue
            if len(vals) == 0:
                raise ValueError(f"{name} is an empty list; leave it out to keep the base value")
            dupes = sorted({v for v in vals if vals.count(v) > 1})
            if dupes:
                raise ValueError(f"{name} repeats {', '.join(map(str, dupes))}")
        if self.shapes is not None and len(self.shapes) == 0:
            raise ValueError("shapes is an empty list")
        for key, vals in (self.set or {}).items():
            path = key.split(".")
            if len(path) != 2 or path[0] not in SET_SECTIONS or not path[1]:
                raise ValueError(f"set: {key!r} is not SECTION.KEY with SECTION one of "
                                 f"{', '.join(SET_SECTIONS)}")
            if key in OWN_AXES:
                raise ValueError(f"set: {key} has its own axis: use grid.{OWN_AXES[key]}")
            if not isinstance(vals, list) or not vals:
                raise ValueError(f"set: {key} needs a non-empty list of values")
            dupes = sorted({str(v) for v in vals if vals.count(v) > 1})
            if dupes:
                raise ValueError(f"set: {key} repeats {', '.join(dupes)}")
        return self


class SweepConfig(_Strict):
    """A validated sweep file. ``base`` is a run config: a path or an inline table."""

    name: str = "sweep"
    base: Union[str, dict[str, Any]]
    grid: Grid = Field(default_factory=Grid)
    workers: int = Field(1, gt=0, description="runs trained at the same time")
    threads: int = Field(0, ge=0, description="torch threads per run; 0: cores / workers")
    max_retries: int = Field(1, ge=0, description="resumes of a killed worker within one sweep")
    loss_window: float = Field(0.1, gt=0, le=1, description="share of the last steps averaged for loss")
    predictions: int = Field(512, ge=0, description="addition sweeps: problems each model answers "
                                                    "for predictions.csv (0: none)")

    def resolved_threads(self) -> int:
        return self.threads or max(1, (os.cpu_count() or 1) // self.workers)


def _format_validation(err: ValidationError, source: str) -> str:
    from lenslab.config import format_validation_error

    return format_validation_error(err, source)


def sweep_from_dict(data: dict[str, Any], source: str = "sweep") -> SweepConfig:
    """Validate a sweep given as a dict; every failure is a one-line :class:`ConfigError`."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a sweep is a table of keys, not {type(data).__name__}")
    if "base" not in data:
        raise ConfigError(f"{source}: base: missing (a run config path, or an inline [base] table)")
    try:
        return SweepConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_format_validation(e, source)) from None


@dataclass
class SweepSpec:
    """A sweep file read from disk: the config, the base run config, where it came from."""

    config: SweepConfig
    base: RunConfig
    source: str


def load_sweep(path: str | Path) -> SweepSpec:
    """Read and validate ``SWEEP.toml`` and its base run config (a path is relative to it)."""
    p = Path(path)
    return make_spec(read_toml(p, "sweep file"), str(p), p.parent)


def make_spec(data: dict[str, Any] | SweepConfig, source: str = "sweep", root: Path = Path(".")) -> SweepSpec:
    """A :class:`SweepSpec` from a dict or :class:`SweepConfig`; a ``base`` path is relative to ``root``."""
    sc = data if isinstance(data, SweepConfig) else sweep_from_dict(data, source)
    if isinstance(sc.base, str):
        bp = Path(sc.base).expanduser()
        if not bp.is_absolute():
            bp = root / bp
        if not bp.is_file():
            raise ConfigError(f"{source}: base: run config not found: {bp}")
        base = load_config(bp)
    else:
        base = config_from_dict(sc.base, f"{source} [base]")
    return SweepSpec(sc, base, source)


# ----------------------------------------------------------------------------------------------
# The grid
# ----------------------------------------------------------------------------------------------


@dataclass
class GridPoint:
    """One run of the sweep: its name, exact config and the sizes known before training."""

    name: str
    config: RunConfig
    axes: dict[str, Any]  # n_layer, d_model, n_head, seed, steps (tokens, lr, "section.key" when given)
    N: int
    tokens_per_step: int
    unique_tokens: Optional[float]  # None: fresh data every step (no epochs)

    @property
    def steps(self) -> int:
        return self.config.train.max_steps

    @property
    def D(self) -> int:
        return self.steps * self.tokens_per_step

    @property
    def cost(self) -> float:
        return 6.0 * self.N * self.D


def _g(v: float) -> str:
    return f"{v:g}"


def point_name(axes: dict[str, Any]) -> str:
    """The run folder name of a grid point (see the module docstring)."""
    parts = [f"L{axes['n_layer']}" if axes.get("n_layer") is not None else None,
             f"d{axes['d_model']}" if axes.get("d_model") is not None else None,
             f"h{axes['n_head']}" if axes.get("n_head") is not None else None,
             f"t{axes['tokens']}" if axes.get("tokens") is not None else f"s{axes['steps']}",
             f"lr{_g(axes['lr'])}" if axes.get("lr") is not None else None,
             *(set_part(k, v) for k, v in axes.items() if "." in k),
             f"seed{axes['seed']}"]
    return "-".join(p for p in parts if p)


def _unique_tokens(task: Any, seq_len: int) -> Optional[float]:
    """Tokens in one pass over the task's distinct training sequences (None: unbounded)."""
    name = getattr(task, "name", "")
    if name == "text":
        return float(task.n_train_tokens)
    if name == "addition":
        return float(task.base ** (2 * task.cfg.digits)) * seq_len
    if name == "modular_addition":
        return float(len(task.train_pairs)) * seq_len
    if name in FRESH_TASKS:
        return None
    return math.nan  # a task this module does not know: epochs cannot be told


def _model_n(cfg: RunConfig) -> int:
    """Non-embedding parameters, counted on the meta device (no memory, no initialisation cost)."""
    import torch

    from lenslab.models import build_model

    with torch.device("meta"):
        model = build_model(cfg.model)
    if hasattr(model, "num_params"):
        return int(model.num_params(non_embedding=True))
    return int(sum(p.numel() for p in model.parameters()))


def plan(spec: SweepSpec) -> list[GridPoint]:
    """Every grid point, validated, in grid order (shapes, then length, then lr, then seed)."""
    from lenslab.data import build_task, resolve_config

    sc, base, src = spec.config, spec.base, spec.source
    g = sc.grid
    model = base.model
    shape_keys = [k for k in ("n_layer", "d_model", "n_head") if k in type(model).model_fields]
    if g.shapes is not None:
        shapes = [{k: v for k, v in s.model_dump().items() if v is not None} for s in g.shapes]
    else:
        axes = {}
        for k in ("n_layer", "d_model", "n_head", "d_head"):
            vals = getattr(g, k)
            if vals is not None:
                axes[k] = vals
        keys = list(axes)
        shapes = [dict(zip(keys, combo)) for combo in itertools.product(*axes.values())] or [{}]
    for s in shapes:
        asked = [k for k in s if k not in shape_keys and k != "d_head"]
        if asked or ("d_head" in s and "n_head" not in shape_keys):
            kind = getattr(model, "kind", type(model).__name__)
            what = ", ".join(asked or ["d_head"])
            raise ConfigError(f"{src}: grid: a {kind} model has no {what} to vary "
                              f"(it has {', '.join(shape_keys) or 'no shape keys'})")
    try:
        task = build_task(base, None)
    except LensError as e:
        raise ConfigError(f"{src}: base: {e}") from None
    x, _ = task.batch(0, base.optim.batch_size)
    tokens_per_step = int(x.shape[0] * x.shape[1])
    unique = _unique_tokens(task, int(x.shape[1]))

    if g.tokens is not None:
        lengths = [("tokens", t, max(1, math.ceil(t / tokens_per_step))) for t in g.tokens]
    elif g.steps is not None:
        lengths = [("steps", s, s) for s in g.steps]
    else:
        lengths = [("steps", base.train.max_steps, base.train.max_steps)]
    lrs = g.lr if g.lr is not None else [None]
    seeds = g.seeds if g.seeds is not None else [base.seed]
    sets = [dict(zip(g.set, combo)) for combo in itertools.product(*g.set.values())] if g.set else [{}]

    base_d = base.model_dump(mode="json", exclude_none=True)
    ratio = None
    if getattr(model, "d_mlp", None) is not None:
        ratio = model.d_mlp / model.d_model
    points, seen = [], {}
    for shape, (kind, length, steps), lr, extra, seed in itertools.product(
            shapes, lengths, lrs, sets, seeds):
        d = {k: (dict(v) if isinstance(v, dict) else v) for k, v in base_d.items()}
        for key, value in extra.items():
            section, name = key.split(".")
            d[section] = {**d[section], name: value}
        m = dict(d["model"])
        for k in ("n_layer", "d_model", "n_head"):
            if k in shape:
                m[k] = shape[k]
        if "d_head" in shape:
            if m["d_model"] % shape["d_head"]:
                raise ConfigError(f"{src}: grid: d_head {shape['d_head']} does not divide "
                                  f"d_model {m['d_model']}")
            m["n_head"] = m["d_model"] // shape["d_head"]
        if ratio is not None and "d_model" in shape:
            m["d_mlp"] = max(1, round(ratio * m["d_model"]))
        d["model"] = m
        d["train"] = {**d["train"], "max_steps": steps, "threads": sc.resolved_threads()}
        if lr is not None:
            d["optim"] = {**d["optim"], "lr": lr}
        d["seed"] = seed
        axes = {k: m.get(k) for k in ("n_layer", "d_model", "n_head")}
        axes.update({"seed": seed, "steps": steps})
        if kind == "tokens":
            axes["tokens"] = length
        if lr is not None:
            axes["lr"] = lr
        axes.update(extra)  # "section.key": value
        name = point_name(axes)
        d["name"] = name
        if name in seen:
            raise ConfigError(f"{src}: grid points {seen[name]} and {name} are the same run")
        seen[name] = name
        try:
            cfg = config_from_dict(d, f"{src}: grid point {name}")
            full = resolve_config(cfg, task)
        except ConfigError as e:
            msg = str(e)
            if not msg.startswith(src):
                msg = f"{src}: grid point {name}: {msg}"
            raise ConfigError(msg) from None
        try:
            n = _model_n(full)
        except LensError as e:
            raise ConfigError(f"{src}: grid point {name}: {e}") from None
        points.append(GridPoint(name, cfg, axes, n, tokens_per_step, unique))
    return points


# ----------------------------------------------------------------------------------------------
# Run folders: what each grid point needs
# ----------------------------------------------------------------------------------------------

#: Config keys that change how fast a run goes, not its numbers' meaning (ignored when a rerun
#: compares a grid point with its run folder).
EXECUTION_KEYS = (("train", "threads"),)


def _comparable(cfg: RunConfig) -> dict:
    d = cfg.model_dump(mode="json")
    for section, key in EXECUTION_KEYS:
        d.get(section, {}).pop(key, None)
    return d


def _diff(a: dict, b: dict, prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _diff(va, vb, f"{prefix}{k}.")
        elif va != vb:
            out.append(f"{prefix}{k}: {va!r} -> {vb!r}")
    return out


def run_state(point: GridPoint, run_dir: Path) -> str:
    """What a grid point needs: ``new``, ``resume``, ``restart``, ``completed`` or ``gave_up``.

    Raises :class:`RunDirError` when the folder is not this grid point's run (a changed grid
    point, a foreign folder) or when another process is still training it.
    """
    if not run_dir.exists():
        return "new"
    if not run_dir.is_dir():
        raise RunDirError(f"{run_dir} exists and is not a folder; remove it or use another --out")
    if not (run_dir / "config.toml").is_file():
        if any(run_dir.iterdir()):
            raise RunDirError(f"{run_dir} is not a lenslab run (no config.toml); remove it or use another --out")
        return "new"
    try:
        old = load_config(run_dir / "config.toml")
    except LensError as e:
        raise RunDirError(f"grid point {point.name}: {run_dir}/config.toml is unreadable ({e}); "
                          "remove the folder to train it again") from None
    diffs = _diff(_comparable(old), _comparable(point.config))
    if diffs:
        shown = "; ".join(diffs[:4]) + ("; ..." if len(diffs) > 4 else "")
        raise RunDirError(f"grid point {point.name} changed since {run_dir} was trained ({shown}); "
                          "restore the sweep and base config, or use another --out")
    run = Run(run_dir)
    meta = run.meta()
    status = meta.get("status", "created")
    if status == "completed":
        return "completed"
    if status == "gave_up":
        return "gave_up"
    if status in ("running", "created") and meta.get("host") == socket.gethostname() \
            and meta.get("pid") != os.getpid() and pid_alive(meta.get("pid")):
        raise RunDirError(f"grid point {point.name} is still being trained by process {meta['pid']} "
                          f"(an earlier sweep's worker?); wait for it to finish or stop it, then rerun")
    if run.latest_checkpoint(warn=lambda m: None) is None:
        return "restart"  # killed before its first checkpoint: nothing to lose
    return "resume"


# ----------------------------------------------------------------------------------------------
# Results
# ----------------------------------------------------------------------------------------------



def final_train_loss(run_dir: Path) -> float:
    """The final model's loss on training data (see the module docstring), cached per checkpoint.

    Reads ``RUN/analysis/train_loss.json`` when it was measured on the newest verified
    checkpoint; otherwise loads that checkpoint, measures and writes the file.
    """
    import json

    import torch

    from lenslab.data import task_loss, task_scored

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
    import json

    p = Path(out) / "results.json"
    if not p.is_file():
        raise RunDirError(f"{out} has no results.json; run `lenslab sweep SWEEP.toml --out {out}` first")
    data = json.loads(p.read_text())
    return [{k: (math.nan if v is None else v) for k, v in r.items()} for r in data["rows"]]


# ----------------------------------------------------------------------------------------------
# Running
# ----------------------------------------------------------------------------------------------


@dataclass
class SweepResult:
    """How a sweep ended: the rows of its table and what happened to each run."""

    out: Path
    rows: list[dict[str, Any]]
    outcome: dict[str, str]  # run name -> trained | resumed | skipped | gave_up | killed | failed ...
    messages: dict[str, str] = field(default_factory=dict)
    interrupted: bool = False
    predictions: Optional[Path] = None
    elapsed_s: float = 0.0

    @property
    def unfinished(self) -> list[str]:
        return [r["name"] for r in self.rows if r["status"] not in ("completed", "gave_up")]

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return EXIT_INTERRUPTED
        return EXIT_UNFINISHED if self.unfinished else 0

    def _repr_html_(self) -> str:
        from lenslab.html import table_html

        cols = [c for c in ("name", "status", "N", "D", "loss", "val_loss", "exact_match", "digit_acc",
                            "epochs", "guard_events") if any(c in r for r in self.rows)]
        return table_html(self.rows, cols)


class _Lock:
    """``DIR/sweep.lock``: one sweep per folder (a stale lock of a dead process is taken over)."""

    def __init__(self, out: Path):
        self.path = out / "sweep.lock"
        self.held = False

    def __enter__(self) -> "_Lock":
        me = f"{os.getpid()} {socket.gethostname()}\n"
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                try:
                    pid_s, host = (self.path.read_text().split() + ["", ""])[:2]
                    pid = int(pid_s)
                except (OSError, ValueError):
                    pid, host = -1, ""
                if host == socket.gethostname() and pid_alive(pid):
                    raise RunDirError(f"another lenslab sweep (process {pid}) is working on "
                                      f"{self.path.parent}; wait for it or stop it") from None
                if host and host != socket.gethostname():
                    raise RunDirError(f"{self.path} says a sweep on host {host} (process {pid}) is working "
                                      f"on this folder; if it is gone, delete the lock file") from None
                self.path.unlink(missing_ok=True)  # stale: its process is gone
                continue
            with os.fdopen(fd, "w") as f:
                f.write(me)
            self.held = True
            return self
        raise RunDirError(f"cannot take {self.path}; delete it if no sweep is running")

    def __exit__(self, *exc: Any) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)


class _Tail:
    """The newest record of a run's metrics.jsonl, read incrementally (survives a rewrite)."""

    def __init__(self, path: Path):
        self.path = path
        self.key: Optional[tuple[int, int]] = None
        self.offset = 0
        self.buf = b""
        self.last: Optional[dict] = None

    def poll(self) -> Optional[dict]:
        import json

        try:
            st = self.path.stat()
        except OSError:
            return self.last
        key = (st.st_ino, st.st_dev)
        if key != self.key or st.st_size < self.offset:
            self.key, self.offset, self.buf = key, 0, b""
        if st.st_size > self.offset:
            try:
                with open(self.path, "rb") as f:
                    f.seek(self.offset)
                    chunk = f.read(st.st_size - self.offset)
            except OSError:
                return self.last
            self.offset += len(chunk)
            lines = (self.buf + chunk).split(b"\n")
            self.buf = lines.pop()
            for line in reversed(lines):
                if line.strip():
                    try:
                        self.last = json.loads(line)
                        break
                    except ValueError:
                        continue
        return self.last


@dataclass
class _Job:
    point: GridPoint
    run_dir: Path
    action: str  # new | resume | restart
    attempts: int = 0
    proc: Optional[subprocess.Popen] = None
    tail: Optional[_Tail] = None
    task_id: Any = None
    started: float = 0.0
    slot: int = 0


def visible_gpus(environ: Optional[dict[str, str]] = None) -> list[str]:
    """The GPUs a worker may be given: ``CUDA_VISIBLE_DEVICES`` if set, else every device
    torch counts (without initialising CUDA in the sweep process)."""
    env = os.environ if environ is None else environ
    if "CUDA_VISIBLE_DEVICES" in env:
        return [d.strip() for d in env["CUDA_VISIBLE_DEVICES"].split(",") if d.strip() and d.strip() != "-1"]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


def worker_gpu_env(device: str, slot: int, gpus: list[str]) -> dict[str, str]:
    """Environment that pins the worker in ``slot`` to one GPU, round-robin over ``gpus``.

    Only runs that may use CUDA (``device`` "auto" or "cuda") are pinned, and only when more
    than one GPU is visible; a run that names its device (``cuda:1``, ``cpu``) is left alone.
    """
    if device not in ("auto", "cuda") or len(gpus) < 2:
        return {}
    return {"CUDA_VISIBLE_DEVICES": gpus[slot % len(gpus)]}


def _parse_inject(inject: Union[None, str, dict[str, str]], names: list[str]) -> dict[str, str]:
    """``"kill@20"`` (every run started fresh now), ``"NAME=kill@20;NAME2=nan@5"``, or a dict."""
    if not inject:
        return {}
    if isinstance(inject, dict):
        pairs = dict(inject)
    else:
        pairs = {}
        for part in inject.split(";"):
            part = part.strip()
            if not part:
                continue
            if "=" in part:
                name, spec = part.split("=", 1)
                pairs[name.strip()] = spec.strip()
            else:
                pairs["*"] = part
    from lenslab.run.inject import Injections

    for name, spec in pairs.items():
        if name != "*" and name not in names:
            raise ConfigError(f"--inject names run {name!r}, which is not in the grid "
                              f"(runs: {', '.join(names[:6])}{', ...' if len(names) > 6 else ''})")
        Injections.parse(spec)  # a bad spec fails here, before anything runs
    return pairs


class _Display:
    """Rich progress over runs: the sweep's bar plus one bar per running worker."""

    def __init__(self, enabled: bool, total: int, done: int, title: str):
        from rich.console import Console

        self.console = Console(stderr=True, soft_wrap=True)
        self.enabled = enabled
        self.live = enabled and self.console.is_terminal
        self.bar = None
        if self.live:
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                       TimeElapsedColumn, TimeRemainingColumn)

            self.bar = Progress(TextColumn("[bold]{task.description}", justify="left"), BarColumn(),
                                MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                                TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                                console=self.console)
            self.overall = self.bar.add_task(f"{title}: runs", total=total, completed=done, info="")

    def __enter__(self) -> "_Display":
        if self.bar is not None:
            self.bar.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)

    def print(self, msg: str) -> None:
        if self.enabled:
            self.console.print(msg, highlight=False)

    def start(self, job: _Job) -> None:
        if self.bar is not None:
            job.task_id = self.bar.add_task(f"  {job.point.name}", total=job.point.steps, info=job.action)
        else:  # the live display shows the run's own bar instead
            self.print(f"[cyan]{job.action}[/] {job.point.name} (N={job.point.N:,}, D={job.point.D:,})")

    def update(self, job: _Job, rec: Optional[dict]) -> None:
        if self.bar is None or rec is None or job.task_id is None:
            return
        loss = num(rec.get("loss"))
        info = f"loss {loss:.4f}" if math.isfinite(loss) else f"loss {rec.get('loss')}"
        if "tok_per_s" in rec:
            info += f"  {num(rec['tok_per_s']):,.0f} tok/s"
        self.bar.update(job.task_id, completed=int(rec.get("step", 0)) + 1, info=info)

    def finish(self, job: _Job, outcome: str, detail: str) -> None:
        if self.bar is not None and job.task_id is not None:
            self.bar.remove_task(job.task_id)
            job.task_id = None
        colour = {"completed": "green", "gave_up": "yellow"}.get(outcome, "red")
        self.print(f"[{colour}]{outcome}[/] {job.point.name}" + (f": {detail}" if detail else ""))

    def advance(self, n_done: int, info: str = "") -> None:
        if self.bar is not None:
            self.bar.update(self.overall, completed=n_done, info=info)


def _log_tail(path: Path, n: int = 3) -> str:
    try:
        lines = [x.strip() for x in path.read_text(errors="replace").splitlines() if x.strip()]
    except OSError:
        return ""
    return " | ".join(lines[-n:])[-400:]


class _Runner:
    """Launches, watches and retries the workers of one sweep invocation."""

    POLL_S = 0.2

    def __init__(self, spec: SweepSpec, out: Path, jobs: list[_Job], inject: dict[str, str],
                 display: _Display, on_done):
        self.spec = spec
        self.out = out
        self.queue = sorted(jobs, key=lambda j: -j.point.cost)
        self.inject = inject
        self.display = display
        self.on_done = on_done
        self.active: list[_Job] = []
        self.stopping = False
        self.outcome: dict[str, str] = {}
        self.messages: dict[str, str] = {}
        self.gpus = visible_gpus() if spec.config.workers > 1 else []

    # -- signals ---------------------------------------------------------------------------
    def _handler(self, signum, frame):
        if self.stopping and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.stopping = True
        self.display.print(f"[bold]{signal.Signals(signum).name}[/]: no new runs; the running ones write a "
                           "checkpoint and stop. Rerun the same command to continue.")
        for job in self.active:
            if job.proc is not None and job.proc.poll() is None:
                try:
                    job.proc.send_signal(signal.SIGTERM)
                except ProcessLookupError:
                    pass

    # -- workers ---------------------------------------------------------------------------
    def _launch(self, job: _Job) -> None:
        import shutil

        p = job.point
        log = self.out / "logs" / f"{p.name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        if job.action == "restart":
            shutil.rmtree(job.run_dir)
            job.action = "new"
        if job.action == "new":
            cfg_path = self.out / "configs" / f"{p.name}.toml"
            atomic_write_text(cfg_path, p.config.to_toml())
            cmd = [sys.executable, "-m", "lenslab", "train", str(cfg_path), "--out", str(job.run_dir), "--quiet"]
        else:
            cmd = [sys.executable, "-m", "lenslab", "resume", str(job.run_dir), "--quiet"]
        spec = self.inject.get(p.name) or (self.inject.get("*") if job.action == "new" else None)
        if spec and job.attempts == 0:
            cmd += ["--inject", spec]
        threads = str(p.config.train.threads or self.spec.config.resolved_threads())
        busy = {j.slot for j in self.active}
        job.slot = next(i for i in range(len(self.active) + 1) if i not in busy)
        env = dict(os.environ, OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads, PYTHONUNBUFFERED="1",
                   **worker_gpu_env(p.config.train.device, job.slot, self.gpus))
        env.pop("WORLD_SIZE", None)
        env.pop("RANK", None)
        env.pop("LOCAL_RANK", None)
        with open(log, "a", encoding="utf-8") as f:
            f.write(f"\n# {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(cmd)}\n")
            f.flush()
            # A new session: a Ctrl-C at the terminal reaches only the sweep, which forwards one
            # SIGTERM per worker (a second signal would make a worker stop without a checkpoint).
            job.proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env,
                                        start_new_session=True)
        job.tail = _Tail(job.run_dir / "metrics.jsonl")
        job.started = time.monotonic()
        job.attempts += 1
        self.active.append(job)
        self.display.start(job)

    def _reap(self, job: _Job, rc: int) -> None:
        self.active.remove(job)
        log = self.out / "logs" / f"{job.point.name}.log"
        resumed = job.action == "resume" or job.attempts > 1
        if rc == _RC_OK:
            self.outcome[job.point.name] = "resumed" if resumed else "trained"
            self.display.finish(job, "completed", f"{time.monotonic() - job.started:.0f} s")
        elif rc == _RC_GAVE_UP:
            self.outcome[job.point.name] = "gave_up"
            self.messages[job.point.name] = _log_tail(log, 1)
            self.display.finish(job, "gave_up", self.messages[job.point.name])
        elif (rc < 0 or rc == _RC_PREEMPTED) and not self.stopping and job.attempts <= self.spec.config.max_retries:
            why = f"killed by {signal.Signals(-rc).name}" if rc < 0 else "preempted"
            self.display.finish(job, "resuming", f"{why}; resuming (try {job.attempts})")
            job.action = "resume"
            self.queue.insert(0, job)
        elif rc == _RC_PREEMPTED:
            self.outcome[job.point.name] = "preempted"
            self.display.finish(job, "preempted", "checkpoint written")
        elif rc < 0:
            self.outcome[job.point.name] = "killed"
            self.messages[job.point.name] = f"killed by {signal.Signals(-rc).name}"
            self.display.finish(job, "killed", self.messages[job.point.name])
        else:
            self.outcome[job.point.name] = "failed"
            self.messages[job.point.name] = f"exit code {rc}: {_log_tail(log)} (log: {log})"
            self.display.finish(job, "failed", self.messages[job.point.name])
        self.on_done(job)

    def run(self) -> None:
        workers = self.spec.config.workers
        installed = {}
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                installed[s] = signal.signal(s, self._handler)
        try:
            while self.queue or self.active:
                while self.queue and len(self.active) < workers and not self.stopping:
                    self._launch(self.queue.pop(0))
                if self.stopping and not self.active:
                    break
                for job in list(self.active):
                    rc = job.proc.poll()
                    self.display.update(job, job.tail.poll())
                    if rc is not None:
                        self._reap(job, rc)
                time.sleep(self.POLL_S)
        except BaseException:
            for job in self.active:  # a hard stop: every run resumes from its last checkpoint
                if job.proc is not None and job.proc.poll() is None:
                    job.proc.kill()
            for job in self.active:
                if job.proc is not None:
                    job.proc.wait()
            raise
        finally:
            for s, h in installed.items():
                signal.signal(s, h)


def run_sweep(sweep: Union[str, Path, SweepSpec, dict[str, Any]], out: str | Path, *,
              inject: Union[None, str, dict[str, str]] = None, progress: bool = True,
              workers: Optional[int] = None, threads: Optional[int] = None) -> SweepResult:
    """Train every grid point of ``sweep`` into ``out/runs`` and write the results table.

    ``sweep`` is a path to a sweep TOML, a dict with its keys, or a :class:`SweepSpec`.
    ``workers`` and ``threads`` override the file's values. ``inject`` passes fault injection to
    the workers (tests and demos): ``"kill@20"`` for every run started fresh in this call, or
    ``"NAME=kill@20;NAME2=nan@5"`` per run. Returns a :class:`SweepResult`; its ``exit_code``
    is 0 when every run completed (or the guard gave up on it), 75 when interrupted, 1 when
    runs are left unfinished (rerun to resume them).
    """
    t0 = time.perf_counter()
    if isinstance(sweep, SweepSpec):
        spec = sweep
    elif isinstance(sweep, dict):
        spec = make_spec(sweep)
    else:
        spec = load_sweep(sweep)
    upd = {}
    if workers is not None:
        if workers < 1:
            raise ConfigError(f"--workers must be at least 1, not {workers}")
        upd["workers"] = workers
    if threads is not None:
        if threads < 0:
            raise ConfigError(f"--threads must be >= 0, not {threads}")
        upd["threads"] = threads
    if upd:
        spec = SweepSpec(spec.config.model_copy(update=upd), spec.base, spec.source)
    points = plan(spec)
    inj = _parse_inject(inject, [p.name for p in points])
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a folder")
    runs_root = out / "runs"
    # Check every existing run folder before writing anything: a changed grid point fails here.
    states = {p.name: run_state(p, runs_root / p.name) for p in points}
    out.mkdir(parents=True, exist_ok=True)
    sc = spec.config
    with _Lock(out):
        states = {p.name: run_state(p, runs_root / p.name) for p in points}  # again, under the lock
        Run.clean_staging(runs_root)
        resolved = sc.model_dump(mode="json", exclude_none=True)
        resolved["base"] = spec.base.model_dump(mode="json", exclude_none=True)
        import tomli_w

        atomic_write_text(out / "sweep.toml", "# the sweep as run (base inlined)\n" + tomli_w.dumps(resolved))
        meta = {"sweep": sc.name, "source": spec.source, "workers": sc.workers,
                "threads": sc.resolved_threads(), "loss_window": sc.loss_window,
                "command": f"lenslab sweep {spec.source} --out {out}"}
        outcome = {p.name: "skipped" for p in points if states[p.name] in ("completed", "gave_up")}
        done = {p.name for p in points if states[p.name] in ("completed", "gave_up")}

        def refresh(_job: Optional[_Job] = None) -> list[dict[str, Any]]:
            if _job is not None and _job.proc is not None and _job.proc.returncode in (_RC_OK, _RC_GAVE_UP):
                done.add(_job.point.name)
            rows = [run_row(p, runs_root / p.name, sc.loss_window) for p in points]
            write_results(rows, out, meta)
            display.advance(len(done))
            return rows

        jobs = [_Job(p, runs_root / p.name, states[p.name]) for p in points
                if states[p.name] in ("new", "resume", "restart")]
        cores = os.cpu_count() or 1
        display = _Display(progress, len(points), len(done), sc.name)
        with display:
            if sc.workers * sc.resolved_threads() > cores:
                display.print(f"[yellow]warning[/] {sc.workers} workers x {sc.resolved_threads()} threads "
                              f"> {cores} cores: runs will compete for them")
            skipped = len(points) - len(jobs)
            display.print(f"sweep {sc.name}: {len(points)} runs, {skipped} already done, {len(jobs)} to run "
                          f"({sc.workers} workers x {sc.resolved_threads()} threads) into {out}")
            runner = _Runner(spec, out, jobs, inj, display, refresh)
            runner.run()
        outcome.update(runner.outcome)
        rows = refresh()
        result = SweepResult(out, rows, outcome, runner.messages, runner.stopping)
        data = getattr(spec.base.data, "task", "")
        if data == "addition" and sc.predictions and not runner.stopping:
            from lenslab.scaling.addition import write_predictions

            if any(r["status"] == "completed" for r in rows):
                result.predictions = write_predictions(out, n_examples=sc.predictions)
    result.elapsed_s = time.perf_counter() - t0
    return result


"""Sweeps: a grid of guarded runs over model shape, training length and seed, and their table.

``lenslab sweep SWEEP.toml --out DIR`` trains every grid point as a normal run folder
``DIR/runs/<name>`` (each one a ``lenslab train`` process, several at once), then
writes ``DIR/results.csv`` and ``DIR/results.json``: one row per grid point with the columns
that :mod:`lenslab.scaling.fit` and :mod:`lenslab.scaling.diagnose` read.

The sweep file::

    name = "addition-width"
    workers = 2                  # runs trained at the same time (processes)
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

Addition sweeps also write ``DIR/predictions.csv`` (see :mod:`~lenslab.scaling.sweep.predictions`):
each model's answers to the same evaluation problems, the input of ``lenslab emergence``.

The package, one room each: :mod:`~.spec` (the file), :mod:`~.plan` (the grid),
:mod:`~.state` (what each point needs), :mod:`~.executor` (how points are run: the interface and
the local pool), :mod:`~.results` (the table), :mod:`~.predictions`, :mod:`~.lock`,
:mod:`~.display`; :func:`run_sweep` here ties them together.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import tomli_w
from rich.markup import escape

from lenslab._io import atomic_write_text
from lenslab.errors import ConfigError
from lenslab.html import table_html
from lenslab.run import Lock, Run
from lenslab.run.inject import Injections
from lenslab.run.tensorboard import write_hparams
from lenslab.scaling.sweep.display import Display
from lenslab.scaling.sweep.executor import FINISHED, Context, Executor, Job, LocalPool
from lenslab.scaling.sweep.plan import GridPoint, plan, point_name
from lenslab.scaling.sweep.predictions import write_predictions
from lenslab.scaling.sweep.results import (
    read_results,
    run_row,
    table_columns,
    write_results,
)
from lenslab.scaling.sweep.spec import (
    ExecutorConfig,
    SweepConfig,
    SweepSpec,
    load_sweep,
    make_spec,
    sweep_from_dict,
)
from lenslab.scaling.sweep.state import run_state

#: Exit code of a sweep that was interrupted (like a preempted run) or left runs unfinished.
EXIT_INTERRUPTED, EXIT_UNFINISHED = 75, 1

__all__ = ["run_sweep", "sweep_status", "make_executor", "SweepResult", "SweepConfig", "SweepSpec", "GridPoint", "Executor",
           "LocalPool", "Job", "Context", "load_sweep", "make_spec", "sweep_from_dict", "plan",
           "point_name", "run_state", "run_row", "read_results", "write_results",
           "table_columns", "write_predictions", "EXIT_INTERRUPTED", "EXIT_UNFINISHED"]


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
    def submitted(self) -> list[str]:
        """Runs handed to a scheduler that were not waited for (``wait=False``)."""
        return [n for n, o in self.outcome.items() if o == "submitted"]

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return EXIT_INTERRUPTED
        return EXIT_UNFINISHED if set(self.unfinished) - set(self.submitted) else 0

    def _repr_html_(self) -> str:
        cols = [c for c in ("name", "status", "N", "D", "loss", "val_loss", "exact_match", "digit_acc",
                            "epochs", "guard_events") if any(c in r for r in self.rows)]
        return table_html(self.rows, cols)


def parse_inject(inject: Union[None, str, dict[str, str]], names: list[str]) -> dict[str, str]:
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
    for name, spec in pairs.items():
        if name != "*" and name not in names:
            raise ConfigError(f"--inject names run {name!r}, which is not in the grid "
                              f"(runs: {', '.join(names[:6])}{', ...' if len(names) > 6 else ''})")
        Injections.parse(spec)  # a bad spec fails here, before anything runs
    return pairs


def sweep_status(sweep: Union[str, Path, dict, SweepSpec], out: str | Path) -> list[dict[str, Any]]:
    """Each grid point's state, last step and Slurm job (with squeue's word for it, where
    ``squeue`` is on the path), from the run folders and the scheduler; starts nothing."""
    spec = sweep if isinstance(sweep, SweepSpec) else (
        make_spec(sweep) if isinstance(sweep, dict) else load_sweep(sweep))
    out = Path(out)
    try:
        known = json.loads((out / "slurm" / "jobs.json").read_text())
    except (OSError, ValueError):
        known = {}
    queue: dict[str, str] = {}
    if shutil.which("squeue"):
        from lenslab.scaling.sweep.slurm import squeue

        try:
            queue = squeue()
        except ConfigError:
            queue = {}
    rows = []
    for p in plan(spec):
        run_dir = out / "runs" / p.name
        row: dict[str, Any] = {"name": p.name, "status": "pending", "step": 0,
                               "steps": p.steps, "job": known.get(p.name, "")}
        if Run.is_run(run_dir):
            meta = Run(run_dir).meta()
            row.update(status=meta.get("status", "created"), step=meta.get("step", 0))
            row["job"] = meta.get("slurm_job") or row["job"]
        row["queue"] = queue.get(row["job"], "").lower() if row["job"] else ""
        rows.append(row)
    return rows


def make_executor(settings: ExecutorConfig, executor: Union[None, str, Executor] = None,
                  wait: bool = True) -> Executor:
    """The executor a sweep runs on: ``executor`` when it is one, else the kind it names (or
    the file's ``[executor] kind``) with the file's settings."""
    if isinstance(executor, Executor):
        return executor
    kind = executor or settings.kind
    if kind not in ("local", "slurm"):
        raise ConfigError(f"--executor must be local or slurm, not {kind!r}")
    if kind == "slurm":
        from lenslab.scaling.sweep.slurm import SlurmPool

        return SlurmPool(settings, wait)
    return LocalPool()


def log_hparams(point: GridPoint, row: dict[str, Any], run_dir: Path) -> None:
    """A completed run that logs to TensorBoard gets its grid values as hyperparameters, with
    its final losses, so TensorBoard's HParams table lists the sweep."""
    if not point.config.train.tensorboard or row.get("status") != "completed":
        return
    write_hparams(Run(run_dir).tensorboard_dir, point.axes,
                  {k: row[k] for k in ("loss", "val_loss") if k in row})


def run_sweep(sweep: Union[str, Path, SweepSpec, dict[str, Any]], out: str | Path, *,
              inject: Union[None, str, dict[str, str]] = None, progress: bool = True,
              workers: Optional[int] = None, threads: Optional[int] = None,
              executor: Union[None, str, Executor] = None, wait: bool = True) -> SweepResult:
    """Train every grid point of ``sweep`` into ``out/runs`` and write the results table.

    ``sweep`` is a path to a sweep TOML, a dict with its keys, or a :class:`SweepSpec`.
    ``workers`` and ``threads`` override the file's values. ``inject`` passes fault injection to
    the workers (tests and demos): ``"kill@20"`` for every run started fresh in this call, or
    ``"NAME=kill@20;NAME2=nan@5"`` per run. Returns a :class:`SweepResult`; its ``exit_code``
    is 0 when every run completed (or the guard gave up on it), 75 when interrupted, 1 when
    runs are left unfinished (rerun to resume them).

    ``executor``: ``"local"`` or ``"slurm"`` overrides the file's ``[executor] kind``; an
    :class:`Executor` object is used as given. ``wait=False`` (Slurm) returns once the array is
    submitted; running the sweep again collects the results and resubmits what was lost.
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
    inj = parse_inject(inject, [p.name for p in points])
    runner = make_executor(spec.config.executor, executor, wait)
    runner.check()  # bad executor settings: a one-line error before anything is written
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a folder")
    runs_root = out / "runs"
    # Check every existing run folder before writing anything: a changed grid point fails here.
    states = {p.name: run_state(p, runs_root / p.name) for p in points}
    out.mkdir(parents=True, exist_ok=True)
    sc = spec.config
    with Lock(out, "sweep", out / "sweep.lock"):
        states = {p.name: run_state(p, runs_root / p.name) for p in points}  # again, under the lock
        Run.clean_staging(runs_root)
        resolved = sc.model_dump(mode="json", exclude_none=True)
        resolved["base"] = spec.base.model_dump(mode="json", exclude_none=True)
        atomic_write_text(out / "sweep.toml", "# the sweep as run (base inlined)\n" + tomli_w.dumps(resolved))
        meta = {"sweep": sc.name, "source": spec.source, "workers": sc.workers,
                "threads": sc.resolved_threads(), "loss_window": sc.loss_window,
                "command": f"lenslab sweep {spec.source} --out {out}"}
        outcome = {p.name: "skipped" for p in points if states[p.name] in ("completed", "gave_up")}
        done = {p.name for p in points if states[p.name] in ("completed", "gave_up")}

        def refresh(job: Optional[Job] = None) -> list[dict[str, Any]]:
            if job is not None and job.outcome in FINISHED:
                done.add(job.point.name)
            rows = [run_row(p, runs_root / p.name, sc.loss_window) for p in points]
            write_results(rows, out, meta)
            if job is not None and job.outcome in FINISHED:
                log_hparams(job.point, next(r for r in rows if r["name"] == job.point.name),
                            runs_root / job.point.name)
            display.advance(len(done))
            return rows

        jobs = [Job(p, runs_root / p.name, states[p.name]) for p in points
                if states[p.name] in ("new", "resume", "restart")]
        cores = os.cpu_count() or 1
        display = Display(progress, len(points), len(done), sc.name)
        with display:
            if sc.workers * sc.resolved_threads() > cores:
                display.print(f"[yellow]warning[/] {sc.workers} workers x {sc.resolved_threads()} threads "
                              f"> {cores} cores: runs will compete for them")
            skipped = len(points) - len(jobs)
            display.print(f"sweep {escape(sc.name)}: {len(points)} runs, {skipped} already done, {len(jobs)} to run "
                          f"({sc.workers} workers x {sc.resolved_threads()} threads) into "
                          f"{escape(str(out))}")
            runner.run(jobs, Context(out, spec, inj, display, refresh))
        outcome.update(runner.outcome)
        rows = refresh()
        result = SweepResult(out, rows, outcome, runner.messages, runner.stopping)
        data = getattr(spec.base.data, "task", "")
        if data == "addition" and sc.predictions and not runner.stopping:
            if any(r["status"] == "completed" for r in rows):
                result.predictions = write_predictions(out, n_examples=sc.predictions)
    result.elapsed_s = time.perf_counter() - t0
    return result

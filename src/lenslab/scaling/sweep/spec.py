"""The sweep file: its schema (pydantic, one-line errors) and reading it with its base config.

See :mod:`lenslab.scaling.sweep` for the file's format.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from lenslab.config import (
    RunConfig,
    config_from_dict,
    format_validation_error,
    load_config,
    read_toml,
)
from lenslab.errors import ConfigError


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
    text = f"{value:g}" if isinstance(value, float) else str(value).lower()
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


class ExecutorConfig(_Strict):
    """The ``[executor]`` table: where the grid points run. ``kind = "local"`` (subprocesses of
    this machine, ``workers`` at a time) or ``"slurm"`` (one job array through submitit, one
    array task per grid point still to do; the run folders must be on a file system every
    node sees)."""

    kind: Literal["local", "slurm"] = "local"
    partition: Optional[str] = Field(None, description="Slurm partition (default: the cluster's)")
    time_min: PosInt = Field(60, description="time limit of each array task, minutes")
    cpus_per_run: PosInt = Field(1, description="CPUs per task (the run's torch threads)")
    gpus_per_node: int = Field(0, ge=0, description="GPUs per node of a run (torchrun per node)")
    nodes: PosInt = Field(1, description="nodes per run (> 1: a multi-node torchrun)")
    mem_gb: Optional[float] = Field(None, gt=0, description="memory per node, GiB")
    array_parallelism: PosInt = Field(64, description="array tasks running at once")
    signal_delay_s: int = Field(90, ge=10, description="SIGUSR2 this long before the time limit: "
                                                       "the run checkpoints and requeues")
    sbatch: dict[str, Union[str, int, bool]] = Field(
        default_factory=dict, description="extra sbatch options, e.g. {account = \"lab\"}")
    poll_s: float = Field(5.0, gt=0, description="seconds between squeue polls while waiting")

    @model_validator(mode="after")
    def _warning_leaves_time(self) -> "ExecutorConfig":
        too_early = self.warning_too_early() if self.kind == "slurm" else ""
        if too_early:
            raise ValueError(too_early)
        return self

    def warning_too_early(self) -> str:
        """Why Slurm's warning would come too early for a task to use it ("" when it would not).

        Slurm may send the warning up to 60 s before it is due (``sbatch --signal``: "due to
        the resolution of event handling"; slurmctld checks time limits every 30 s). It must not
        come while the task's Python still starts (the signal would kill it before it can
        requeue), nor leave every attempt no time to work."""
        earliest = self.time_min * 60 - self.signal_delay_s - 60
        if earliest >= 10:
            return ""
        return (f"signal_delay_s = {self.signal_delay_s} may leave a {self.time_min}-minute task "
                f"{max(earliest, 0)} s before Slurm's warning (it may come 60 s early); "
                f"use at most {self.time_min * 60 - 70} or a longer time_min")


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
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig)

    def resolved_threads(self) -> int:
        return self.threads or max(1, (os.cpu_count() or 1) // self.workers)


def sweep_from_dict(data: dict[str, Any], source: str = "sweep") -> SweepConfig:
    """Validate a sweep given as a dict; every failure is a one-line :class:`ConfigError`."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a sweep is a table of keys, not {type(data).__name__}")
    if "base" not in data:
        raise ConfigError(f"{source}: base: missing (a run config path, or an inline [base] table)")
    try:
        return SweepConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, source)) from None


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

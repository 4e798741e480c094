"""Guarded training: the trainer, its guard and schedule, DDP through torchrun.

Checkpoints and fault injection belong to the run folder (:mod:`lenslab.run`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

from lenslab.config import RunConfig, apply_overrides, load_config
from lenslab.run.inject import Injections
from lenslab.training.outcome import EXIT_GAVE_UP, EXIT_OK, EXIT_PREEMPTED, TrainResult
from lenslab.training.stop import Stop
from lenslab.training.trainer import Trainer

__all__ = ["Trainer", "TrainResult", "Injections", "train", "resume",
           "EXIT_OK", "EXIT_GAVE_UP", "EXIT_PREEMPTED"]


def train(
    config: RunConfig | str | Path,
    out: str | Path,
    max_steps: Optional[int] = None,
    inject: Optional[str] = None,
    progress: bool = True,
    overrides: Sequence[str] = (),
    **kw: Any,
) -> TrainResult:
    """Train a new run into the folder ``out`` and return how it ended.

    ``config`` is a :class:`RunConfig` or a path to a TOML file; ``overrides`` are
    ``SECTION.KEY=VALUE`` changes to it (the CLI's ``--set``). ``inject`` takes the fault
    injection syntax of the CLI (``"nan@30,spike@40-45"``). ``memory_check=False`` skips the
    refusal of a model or batch that clearly does not fit in memory. SIGTERM and Ctrl-C are
    caught from the start: the run ends with a checkpoint (exit 75) or leaves no folder.
    """
    with Stop() as stop:
        cfg = config if isinstance(config, RunConfig) else load_config(config)
        if overrides:
            cfg = apply_overrides(cfg, overrides)
        if max_steps is not None:
            cfg = cfg.model_copy(update={"train": cfg.train.model_copy(
                update={"max_steps": max_steps})})
        trainer = Trainer.create(cfg, out, Injections.parse(inject), progress=progress,
                                 stop=stop, **kw)
        return trainer.fit()


def resume(run_dir: str | Path, inject: Optional[str] = None, progress: bool = True,
           **kw: Any) -> TrainResult:
    """Continue a run from its newest checkpoint that verifies and loads (from step 0 when it
    has none). Nothing in the folder changes when it cannot continue."""
    with Stop() as stop:
        trainer = Trainer.open(run_dir, Injections.parse(inject) if inject else None,
                               progress=progress, stop=stop, **kw)
        return trainer.fit()

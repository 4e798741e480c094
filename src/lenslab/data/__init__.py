"""Tasks and data: seeded synthetic generators and local text corpora."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from lenslab.config import AdditionData, InductionData, ModularAdditionData, RunConfig, TextData
from lenslab.data.base import IGNORE, DataCursor, Task, mean_loss, rng_for
from lenslab.data.synthetic import AdditionTask, InductionTask, ModularAdditionTask
from lenslab.data.text import TextTask
from lenslab.errors import ConfigError

__all__ = [
    "IGNORE", "DataCursor", "Task", "mean_loss", "rng_for", "build_task", "resolve_config",
    "InductionTask", "ModularAdditionTask", "AdditionTask", "TextTask",
]


def build_task(cfg: RunConfig, run_dir: Optional[Path] = None) -> Task:
    d = cfg.data
    if isinstance(d, InductionData):
        return InductionTask(d, cfg.seed)
    if isinstance(d, ModularAdditionData):
        return ModularAdditionTask(d, cfg.seed)
    if isinstance(d, AdditionData):
        return AdditionTask(d, cfg.seed)
    if isinstance(d, TextData):
        return TextTask(d, cfg.seed, run_dir)
    raise TypeError(type(d).__name__)


def resolve_config(cfg: RunConfig, task: Task) -> RunConfig:
    """Fill what the task determines (vocabulary) and check the model can hold the task."""
    m = cfg.model
    if m.vocab_size is None:
        m = m.model_copy(update={"vocab_size": task.vocab_size})
    elif m.vocab_size < task.vocab_size:
        raise ConfigError(
            f"model.vocab_size ({m.vocab_size}) is smaller than the task's vocabulary "
            f"({task.vocab_size}); remove it to use the task's"
        )
    if task.seq_len > m.n_ctx:
        raise ConfigError(
            f"the task's sequences have {task.seq_len} tokens but model.n_ctx is {m.n_ctx} "
            f"(the positional table); raise n_ctx or shorten the data"
        )
    return cfg.model_copy(update={"model": m})

"""Tasks and data: seeded synthetic generators, local text corpora, in-context regression."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from lenslab.config import (
    AdditionData,
    GPTConfig,
    ICLRegressionData,
    InductionData,
    LSAConfig,
    ModularAdditionData,
    QuestionData,
    RepeatData,
    RunConfig,
    SequenceData,
    TextData,
)
from lenslab.data.base import (
    IGNORE,
    DataCursor,
    Task,
    mean_loss,
    rng_for,
    task_loss,
    task_scored,
)
from lenslab.data.generalization import RepeatTask, SequenceTask
from lenslab.data.grammar import QuestionTask
from lenslab.data.regression import ICLRegressionTask
from lenslab.data.synthetic import AdditionTask, InductionTask, ModularAdditionTask
from lenslab.data.text import TextTask
from lenslab.errors import ConfigError

__all__ = [
    "IGNORE", "DataCursor", "Task", "mean_loss", "rng_for", "task_loss", "task_scored",
    "build_task", "resolve_config",
    "InductionTask", "ModularAdditionTask", "AdditionTask", "TextTask", "ICLRegressionTask",
    "RepeatTask", "SequenceTask", "QuestionTask",
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
    if isinstance(d, ICLRegressionData):
        return ICLRegressionTask(d, cfg.seed)
    if isinstance(d, RepeatData):
        return RepeatTask(d, cfg.seed)
    if isinstance(d, SequenceData):
        return SequenceTask(d, cfg.seed)
    if isinstance(d, QuestionData):
        return QuestionTask(d, cfg.seed)
    raise TypeError(type(d).__name__)


def resolve_config(cfg: RunConfig, task: Task) -> RunConfig:
    """Fill what the task determines (vocabulary) and check the model can hold the task."""
    m = cfg.model
    if getattr(task, "continuous", False) or isinstance(m, LSAConfig):
        return _resolve_continuous(cfg, task)
    if getattr(m, "d_in", None) is not None or getattr(m, "d_out", None) is not None:
        raise ConfigError(
            f"model.d_in/d_out ask for vectors but data.task = {task.name!r} is made of tokens; "
            "remove d_in and d_out (they are for data.task = \"icl_regression\")"
        )
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


def _resolve_continuous(cfg: RunConfig, task: Task) -> RunConfig:
    """Vector tasks (in-context regression): fill the model's read-in and read-out widths."""
    m = cfg.model
    if not getattr(task, "continuous", False):
        raise ConfigError(
            f"model.kind = \"lsa\" reads (x, y) vectors but data.task = {task.name!r} is made of "
            "tokens; use data.task = \"icl_regression\" with layout = \"paired\""
        )
    if not isinstance(m, (GPTConfig, LSAConfig)):
        raise ConfigError(
            f"model.kind = {m.kind!r} reads tokens; data.task = \"icl_regression\" needs "
            "kind = \"gpt\" (linear read-in and read-out) or \"lsa\""
        )
    widths = {"d_in": task.token_dim}
    if isinstance(m, GPTConfig):
        widths["d_out"] = task.out_dim
    update = {}
    for key, want in widths.items():
        have = getattr(m, key)
        if have is None:
            update[key] = want
        elif have != want:
            raise ConfigError(
                f"model.{key} ({have}) does not fit the task's vectors ({want} for d = "
                f"{task.d}); remove it to use the task's"
            )
    if isinstance(m, LSAConfig) and task.layout != "paired":
        raise ConfigError(
            "model.kind = \"lsa\" reads tokens (x_i, y_i) followed by a query: set "
            "data.layout = \"paired\""
        )
    if isinstance(m, GPTConfig) and task.seq_len > m.n_ctx:
        raise ConfigError(
            f"the task's sequences have {task.seq_len} tokens but model.n_ctx is {m.n_ctx} "
            f"(the positional table); raise n_ctx or lower data.n_points"
        )
    return cfg.model_copy(update={"model": m.model_copy(update=update)})

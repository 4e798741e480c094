"""A run's TensorBoard log (``RUN/tensorboard``, written when ``train.tensorboard = true``).

It reads as the run's true history. A resumed run replays the steps after its checkpoint, and a
rollback replays those after the checkpoint it went back to; each time the log is reopened
with ``purge_step`` at the first replayed step, which writes a session-start marker that
TensorBoard's reader uses to drop every value logged at that step or later before it. So a
curve has one value per step, the one the run kept, instead of zig-zagging back over the
discarded ones.

Logged: ``train/loss``, ``train/lr``, ``train/grad_norm`` (every logged step), ``eval/val_loss``
and the task's metrics (``eval/<name>``, at each evaluation), and guard events, both as
``guard/<type>`` scalars (how many of that type so far) and as text (``guard/events``, the JSON
line written to ``events.jsonl``). Each record is flushed as it is written, like the run's
JSON-lines logs, so a killed run's event files hold every step its metrics hold.
:func:`write_hparams` adds a run's hyperparameters and final
metrics for TensorBoard's HParams table (a sweep does this for each run it finishes).

``torch.utils.tensorboard`` needs the ``tensorboard`` package (``pip install
'lenslab[tensorboard]'``); :func:`require` says so in one line.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from pathlib import Path
from typing import Any, Mapping, Optional

from lenslab.errors import ConfigError


def require():
    """``torch.utils.tensorboard.SummaryWriter``, or a one-line :class:`ConfigError`."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError("train.tensorboard = true needs the tensorboard package: "
                          "pip install 'lenslab[tensorboard]'") from None
    return SummaryWriter


def _wait_past_newest_file(folder: Path) -> None:
    """TensorBoard reads a folder's event files in name order, and a name is the creation time
    in whole seconds, then host, pid and a counter: a file opened in the same second as an
    earlier one (a resume right after a kill, a rollback) can sort before it, and then the
    steps its ``purge_step`` discards come back when the earlier file is read after it. So wait
    (under a second) until the clock is past the newest file's second."""
    newest = 0
    for f in Path(folder).glob("events.out.tfevents.*"):
        stamp = f.name.split(".")[3]
        if stamp.isdigit():
            newest = max(newest, int(stamp))
    while time.time() < newest + 1:
        time.sleep(0.02)


class TensorBoardLog:
    """The writer of one training process; :meth:`replay_from` after a rollback."""

    def __init__(self, log_dir: Path, first_step: int, events: Optional[list[dict]] = None):
        """``first_step``: the step the process trains next (values from it on, written by an
        earlier process, are discarded). ``events``: the run's events so far (the guard counts
        go on from theirs)."""
        self.dir = Path(log_dir)
        self.counts: Counter = Counter(e["type"] for e in (events or [])
                                       if e.get("step", 0) < first_step)
        self._logged: list[tuple[dict, int]] = []  # this process's events and their counts
        self._writer = None
        self._open(first_step)

    def _open(self, purge_step: int) -> None:
        _wait_past_newest_file(self.dir)
        self._writer = require()(str(self.dir), purge_step=purge_step)

    def replay_from(self, step: int) -> None:
        """The run goes back to ``step`` (a rollback): the values logged from it on are
        discarded, except the guard events, which are written again (they happened, and say
        why the steps were replayed)."""
        self.close()
        self._open(step)
        for rec, n in self._logged:
            if rec["step"] >= step:
                self._write_event(rec, n)

    def train(self, rec: Mapping[str, Any]) -> None:
        """A metrics record: its training scalars, and its evaluation when it has one."""
        step = int(rec["step"])
        for k in ("loss", "lr", "grad_norm"):
            if _finite(rec.get(k)):
                self._writer.add_scalar(f"train/{k}", rec[k], step)
        for k, v in rec.items():
            if k not in _NOT_EVAL and _finite(v) and not isinstance(v, bool):
                self._writer.add_scalar(f"eval/{k}", v, step)
        self._writer.flush()  # as metrics.jsonl: a killed run's log has every step it logged

    def event(self, rec: Mapping[str, Any]) -> None:
        """A guard event, as the running count of its type and as its JSON line."""
        self.counts[rec["type"]] += 1
        self._logged.append((dict(rec), self.counts[rec["type"]]))
        self._write_event(rec, self.counts[rec["type"]])

    def _write_event(self, rec: Mapping[str, Any], count: int) -> None:
        step = int(rec["step"])
        self._writer.add_scalar(f"guard/{rec['type']}", count, step)
        self._writer.add_text("guard/events", json.dumps(dict(rec), default=str), step)
        self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


#: Keys of a metrics record that are not evaluation results.
_NOT_EVAL = frozenset({"step", "seq", "data_index", "loss", "lr", "grad_norm", "tokens",
                       "skipped", "elapsed_s", "tok_per_s", "loss_scale"})


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def write_hparams(log_dir: Path, hparams: Mapping[str, Any], metrics: Mapping[str, float]) -> None:
    """Record ``hparams`` (numbers, strings, booleans) with the run's final ``metrics`` in the
    run's TensorBoard folder, where the HParams table lists it (written once more replaces
    nothing: TensorBoard shows the newest)."""
    writer = require()(str(log_dir))
    try:
        clean = {k: (v if isinstance(v, (int, float, str, bool)) else str(v))
                 for k, v in hparams.items()}
        writer.add_hparams(clean, {f"hparam/{k}": float(v) for k, v in metrics.items()
                                   if _finite(v)}, run_name=".")
    finally:
        writer.close()

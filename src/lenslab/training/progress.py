"""The trainer's progress display: a rich bar (step, loss, tokens/s, guard events, ETA) on a
terminal, a plain line every ten seconds elsewhere."""

from __future__ import annotations

import math
import time
from typing import Any

from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as RichProgress


class Progress:
    """A rich progress bar (step, loss, tokens/s, ETA, guard events); plain lines off a TTY."""

    def __init__(self, trainer: Any, enabled: bool):
        self.t = trainer
        self.enabled = enabled
        self.bar = None
        self.task_id = None
        self._last_plain = 0.0

    def __enter__(self):
        if not self.enabled:
            return self
        con = self.t.console
        if con.is_terminal:
            self.bar = RichProgress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[tps]} tok/s"),
                TextColumn("guard {task.fields[events]}"), TimeElapsedColumn(),
                TextColumn("eta"), TimeRemainingColumn(), console=con, transient=False,
            )
            self.bar.__enter__()
            self.task_id = self.bar.add_task(
                escape(self.t.cfg.name), total=self.t.cfg.train.max_steps, completed=self.t.step,
                loss="-", tps="-", events=0,
            )
        return self

    def update(self, rec: dict) -> None:
        if not self.enabled:
            return
        c = self.t.guard.counts
        events = c["nonfinite"] + c["spike"] + c["rollback"]
        loss = rec["loss"]
        loss_s = f"{loss:.4f}" if math.isfinite(loss) else str(loss)
        if self.bar is not None:
            self.bar.update(self.task_id, completed=self.t.step, loss=loss_s,
                            tps=f"{rec['tok_per_s']:,.0f}", events=events)
        else:
            now = time.monotonic()
            if now - self._last_plain > 10 or self.t.step == self.t.cfg.train.max_steps:
                self._last_plain = now
                self.t.console.print(
                    f"step {self.t.step}/{self.t.cfg.train.max_steps} loss {loss_s} "
                    f"{rec['tok_per_s']:,.0f} tok/s guard events {events}", highlight=False)

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.__exit__(*exc)
        return False

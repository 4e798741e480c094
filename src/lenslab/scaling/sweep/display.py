"""The sweep's live display: one bar for the sweep and one per running run (plain lines off a
terminal)."""

from __future__ import annotations

import math
from typing import Any, Optional

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from lenslab._io import num
from lenslab.scaling.sweep.executor import Job


class Display:
    """Rich progress over runs: the sweep's bar plus one bar per running worker."""

    def __init__(self, enabled: bool, total: int, done: int, title: str):
        self.console = Console(stderr=True, soft_wrap=True)
        self.enabled = enabled
        self.live = enabled and self.console.is_terminal
        self.bar = None
        if self.live:
            self.bar = Progress(TextColumn("[bold]{task.description}", justify="left"), BarColumn(),
                                MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                                TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                                console=self.console)
            self.overall = self.bar.add_task(f"{title}: runs", total=total, completed=done, info="")

    def __enter__(self) -> "Display":
        if self.bar is not None:
            self.bar.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)

    def print(self, msg: str) -> None:
        """``msg`` is rich markup; escape the data in it (run names, paths)."""
        if self.enabled:
            self.console.print(msg, highlight=False)

    def start(self, job: Job) -> None:
        if self.bar is not None:
            job.task_id = self.bar.add_task(f"  {escape(job.point.name)}", total=job.point.steps,
                                            info=job.action)
        else:  # the live display shows the run's own bar instead
            self.print(f"[cyan]{job.action}[/] {escape(job.point.name)} (N={job.point.N:,}, D={job.point.D:,})")

    def update(self, job: Job, rec: Optional[dict]) -> None:
        if self.bar is None or rec is None or job.task_id is None:
            return
        loss = num(rec.get("loss"))
        info = f"loss {loss:.4f}" if math.isfinite(loss) else f"loss {rec.get('loss')}"
        if "tok_per_s" in rec:
            info += f"  {num(rec['tok_per_s']):,.0f} tok/s"
        self.bar.update(job.task_id, completed=int(rec.get("step", 0)) + 1, info=info)

    def finish(self, job: Job, outcome: str, detail: str) -> None:
        if self.bar is not None and job.task_id is not None:
            self.bar.remove_task(job.task_id)
            job.task_id = None
        colour = {"completed": "green", "gave_up": "yellow"}.get(outcome, "red")
        self.print(f"[{colour}]{outcome}[/] {escape(job.point.name)}"
                   + (f": {escape(detail)}" if detail else ""))

    def advance(self, n_done: int, info: str = "") -> None:
        if self.bar is not None:
            self.bar.update(self.overall, completed=n_done, info=info)

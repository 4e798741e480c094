"""How a run ended: :class:`TrainResult` and the exit codes the CLI gives it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from lenslab.html import escape

EXIT_OK, EXIT_GAVE_UP, EXIT_PREEMPTED = 0, 3, 75


@dataclass
class TrainResult:
    status: str  # "completed" | "preempted" | "gave_up"
    step: int
    run_dir: Path
    message: str = ""
    final_loss: Optional[float] = None
    events: dict[str, int] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return {"completed": EXIT_OK, "preempted": EXIT_PREEMPTED, "gave_up": EXIT_GAVE_UP}[
            self.status
        ]

    def _repr_html_(self) -> str:
        return (
            f"<b>lenslab run</b> <code>{escape(self.run_dir)}</code>: {escape(self.status)} at "
            f"step {self.step}, last loss {escape(self.final_loss)}, events {escape(self.events)}"
        )

"""SIGTERM, SIGUSR2 and SIGINT as a request to stop after the step (see :class:`Stop`)."""

from __future__ import annotations

import signal
import threading
from typing import Any, Optional

_USR2 = (signal.SIGUSR2,) if hasattr(signal, "SIGUSR2") else ()


class Stop:
    """SIGTERM and SIGINT as a request to stop: the step finishes, a checkpoint is written and
    the run exits with 75 (resumable); a second Ctrl-C stops at once. SIGUSR2 is the same
    request: it is what Slurm sends before a time limit (``--signal=USR2@SECONDS``, see the
    sweep's Slurm executor), and its default action would kill the run without a checkpoint.

    ``train()`` and ``resume()`` install it before the run folder exists, so a signal at any
    moment ends in a resumable folder or in none at all (never exit 143 with a folder that
    neither command takes). Re-entrant: ``fit()`` installs it too, for trainers made directly.
    """

    def __init__(self) -> None:
        self.signal: Optional[str] = None
        self._old: dict = {}
        self._depth = 0

    def __enter__(self) -> "Stop":
        self._depth += 1
        if self._depth == 1 and threading.current_thread() is threading.main_thread():
            for s in (signal.SIGTERM, signal.SIGINT, *_USR2):
                self._old[s] = signal.signal(s, self._handler)
        return self

    def __exit__(self, *exc: Any) -> None:
        self._depth -= 1
        if self._depth == 0:
            for s, h in self._old.items():
                signal.signal(s, h)
            self._old = {}

    def _handler(self, signum: int, frame: Any) -> None:
        if self.signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # second Ctrl-C: stop now
        self.signal = signal.Signals(signum).name

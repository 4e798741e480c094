"""``DIR/sweep.lock``: one sweep works on a folder at a time."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

from lenslab.errors import RunDirError
from lenslab.run import pid_alive


class SweepLock:
    """``DIR/sweep.lock``: one sweep per folder (a stale lock of a dead process is taken over)."""

    def __init__(self, out: Path):
        self.path = out / "sweep.lock"
        self.held = False

    def __enter__(self) -> "SweepLock":
        me = f"{os.getpid()} {socket.gethostname()}\n"
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                try:
                    pid_s, host = (self.path.read_text().split() + ["", ""])[:2]
                    pid = int(pid_s)
                except (OSError, ValueError):
                    pid, host = -1, ""
                if host == socket.gethostname() and pid_alive(pid):
                    raise RunDirError(f"another lenslab sweep (process {pid}) is working on "
                                      f"{self.path.parent}; wait for it or stop it") from None
                if host and host != socket.gethostname():
                    raise RunDirError(f"{self.path} says a sweep on host {host} (process {pid}) is working "
                                      f"on this folder; if it is gone, delete the lock file") from None
                self.path.unlink(missing_ok=True)  # stale: its process is gone
                continue
            with os.fdopen(fd, "w") as f:
                f.write(me)
            self.held = True
            return self
        raise RunDirError(f"cannot take {self.path}; delete it if no sweep is running")

    def __exit__(self, *exc: Any) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)

"""One writer at a time: a lock file in the folder, naming the host and process that hold it.

The lock is an advisory ``flock`` on ``FOLDER/.lock``, so the kernel releases it when its
process dies, however it dies: a stale lock of a dead process on this host is simply free, and
two processes can never both take over the same stale lock (no read-check-write race). The file
names the holder (host, pid, command, since) for the message the next writer gets.

Across hosts (a run folder on a shared file system), ``flock`` is only as good as the file
system's locking; so a lock file that names a live holder on *another* host is refused too,
with that host's name, until the holder releases it (it empties the file) or a person deletes it.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any, Optional

from lenslab.errors import RunDirError

LOCK = ".lock"


class Lock:
    """``with Lock(folder, "train"):`` holds the folder's lock, or raises a one-line
    :class:`RunDirError` naming the holder. Re-entrant within one process (an analysis written
    by the trainer's own process does not lock itself out)."""

    _held: dict[Path, int] = {}  # folder -> depth, in this process

    def __init__(self, folder: Path, what: str = "", path: Optional[Path] = None):
        self.folder = Path(folder)
        self.path = path or self.folder / LOCK
        self.what = what
        self.fd: Optional[int] = None

    def __enter__(self) -> "Lock":
        key = self.path.resolve()
        if key in Lock._held:
            Lock._held[key] += 1
            return self
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:
            raise RunDirError(f"{self.folder} does not exist") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            raise RunDirError(self._busy(holder(self.path))) from None
        other = holder_of(fd)
        if other and other.get("host") != socket.gethostname():
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
            raise RunDirError(self._busy(other) + f"; if that process is gone, delete {self.path}")
        me = {"host": socket.gethostname(), "pid": os.getpid(), "what": self.what,
              "command": " ".join([os.path.basename(sys.argv[0]), *sys.argv[1:]]),
              "since": time.time()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(me) + "\n").encode(), 0)
        self.fd = fd
        Lock._held[key] = 1
        return self

    def __exit__(self, *exc: Any) -> None:
        key = self.path.resolve()
        depth = Lock._held.get(key, 0)
        if depth > 1:
            Lock._held[key] = depth - 1
            return
        Lock._held.pop(key, None)
        if self.fd is not None:
            try:
                os.ftruncate(self.fd, 0)  # an empty lock file is a free lock, on every host
            finally:
                fcntl.flock(self.fd, fcntl.LOCK_UN)
                os.close(self.fd)
                self.fd = None

    def _busy(self, h: Optional[dict]) -> str:
        if not h:
            return f"{self.folder} is in use by another lenslab process"
        what = f" ({h['what']})" if h.get("what") else ""
        here = h.get("host") == socket.gethostname()
        where = f"process {h.get('pid')}" + ("" if here else f" on host {h.get('host')}")
        return f"{self.folder} is in use by {where}{what}; wait for it to finish or stop it"


def holder_of(fd: int) -> Optional[dict]:
    """The holder a lock file names (None when empty or unreadable)."""
    try:
        raw = os.pread(fd, 4096, 0)
        d = json.loads(raw.decode("utf-8")) if raw.strip() else None
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return d if isinstance(d, dict) else None


def holder(path: Path) -> Optional[dict]:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        return holder_of(fd)
    finally:
        os.close(fd)

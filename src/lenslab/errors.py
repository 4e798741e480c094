"""Errors a user can cause.

Every error that bad input can trigger is a :class:`LensError` with a message that says what to
do. The CLI prints the message on one line (no traceback) and exits with :attr:`LensError.exit_code`.
"""

from __future__ import annotations


class LensError(Exception):
    """Base class for errors caused by the user's input; the message is shown as-is."""

    exit_code = 2


class ConfigError(LensError):
    """A config file or value is malformed or impossible."""


class DataError(LensError):
    """A data file is missing, unreadable or not in the expected encoding."""


class RunDirError(LensError):
    """A run folder is missing, incomplete, or conflicts with the requested run."""


class CheckpointError(LensError):
    """No verified checkpoint could be loaded."""


class ModelError(LensError):
    """A model cannot be built, loaded or asked for what was requested."""


class RunIOError(LensError):
    """The operating system refused a write (full disk, read-only folder, permissions): the run
    is marked stopped and resumes from its last verified checkpoint once the cause is fixed."""

    exit_code = 74  # EX_IOERR (sysexits.h)

"""The run folder's one owner: :class:`Run`, with its atomic, verified checkpoints.

Nothing else in lenslab knows the folder's layout: the trainer writes through a :class:`Run`,
the labs read through one, the report renders what it holds.
"""

from lenslab.run.checkpoint import Checkpoint
from lenslab.run.folder import Run, check_task, config_diff, list_runs, pid_alive
from lenslab.run.lock import Lock

load_run = Run.open  # lenslab.load_run(path): the run folder at path, or a one-line RunDirError

__all__ = ["Run", "Lock", "Checkpoint", "load_run", "list_runs", "pid_alive", "check_task", "config_diff"]

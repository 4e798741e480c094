"""What one Slurm array task of a sweep runs: :class:`SweepTask`, one run folder brought to
completion (trained, or resumed when it holds a run), one rank per GPU through torchrun.

It lives outside :mod:`lenslab.scaling` on purpose: the array task's own Python (submitit's)
only starts the run's process and waits for it, and importing the scaling lab would load
torch there first (about 3 s and a few hundred MB per task, for nothing). This module needs
only the run folder's API; the run's own process imports what it trains with.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional

from lenslab.run import Run


class SweepTask:
    """What one array task runs on its node: train the run (``train_args``) or, when its folder
    already holds a run, resume it; a completed run is left alone. A submitit callable (it
    pickles): :meth:`checkpoint` is submitit's hook for SIGUSR2, and the requeued task is this
    same object, which finds the checkpoint the run wrote and resumes."""

    #: longest wait, in :meth:`checkpoint`, for the run to write its checkpoint and stop
    stop_wait_s = 600.0

    def __init__(self, train_args: list[str], run_dir: str, nodes: int = 1, gpus_per_node: int = 0):
        self.train_args = list(train_args)
        self.run_dir = run_dir
        self.nodes = nodes
        self.gpus_per_node = gpus_per_node
        self._proc: Optional[subprocess.Popen] = None

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_proc"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._proc = None

    def command(self) -> list[str]:
        """The command line for the folder as it is now (``[]``: nothing left to do)."""
        run = Path(self.run_dir)
        if Run.is_run(run):
            if Run(run).meta().get("status") in ("completed", "gave_up"):
                return []
            args = ["resume", str(run), "--quiet"]
        else:
            args = self.train_args
        if self.nodes > 1 or self.gpus_per_node > 1:
            return [sys.executable, "-m", "torch.distributed.run", *self._torchrun(), "-m",
                    "lenslab", *args]
        return [sys.executable, "-m", "lenslab", *args]

    def _torchrun(self) -> list[str]:
        """One torchrun per node, ranks per GPU; the rendezvous is the allocation's first node."""
        per_node = max(self.gpus_per_node, 1)
        if self.nodes == 1:
            return ["--standalone", "--nnodes", "1", "--nproc_per_node", str(per_node)]
        hosts = subprocess.run(["scontrol", "show", "hostnames", os.environ["SLURM_JOB_NODELIST"]],
                               capture_output=True, text=True, check=True).stdout.split()
        return ["--nnodes", str(self.nodes), "--nproc_per_node", str(per_node),
                "--node_rank", os.environ.get("SLURM_NODEID", "0"), "--rdzv_backend", "c10d",
                "--rdzv_endpoint", f"{hosts[0]}:29500",
                "--rdzv_id", os.environ.get("SLURM_JOB_ID", "lenslab")]

    def __call__(self) -> int:
        cmd = self.command()
        if not cmd:
            return 0
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        if self.nodes > 1 or self.gpus_per_node > 1:
            for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
                env.pop(k, None)
        self._proc = subprocess.Popen(cmd, env=env)
        return self._proc.wait()

    def checkpoint(self, *args: Any, **kwargs: Any):
        """SIGUSR2 (the time limit is near, or a preemption): the run is asked to stop (it
        writes a checkpoint and exits 75), then submitit requeues this task, which resumes.

        This runs in a signal handler while ``__call__`` waits on the run's process, holding
        the ``Popen``'s wait lock: so the run is signalled by pid and watched through its
        folder (the trainer marks it stopped once its checkpoint is written), never through
        ``Popen.wait``, which would deadlock here."""
        import submitit

        proc = self._proc
        if proc is not None and proc.returncode is None:
            try:
                os.kill(proc.pid, signal.SIGUSR2)
            except ProcessLookupError:
                pass
            run = Path(self.run_dir)
            deadline = time.time() + self.stop_wait_s
            while time.time() < deadline and not _exited(proc.pid):
                status = Run(run).meta().get("status") if Run.is_run(run) else None
                if status not in ("running", "created"):
                    break
                time.sleep(0.5)
        return submitit.helpers.DelayedSubmission(SweepTask(self.train_args, self.run_dir,
                                                            self.nodes, self.gpus_per_node))


def _exited(pid: int) -> bool:
    """Whether our child ``pid`` has ended, without reaping it (``Popen.wait`` still will): a
    run signalled before it installed its handler (while Python starts) dies of the signal and
    never marks its folder, so the folder alone cannot say that it is gone. Where there is no
    ``waitid`` (macOS), the folder and the time limit are all there is to go by."""
    if not hasattr(os, "waitid"):
        return False
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True

"""How a sweep's grid points are run: the :class:`Executor` interface and the local pool.

A sweep (:func:`lenslab.scaling.sweep.run_sweep`) plans its grid, decides from the run folders
which points still need work (:mod:`~lenslab.scaling.sweep.state`), and hands those :class:`Job`
objects to an executor. The executor trains or resumes each one as a normal run folder with the
``lenslab train``/``lenslab resume`` command line a job prepares (:meth:`Job.prepare`), and calls
:meth:`Context.done` as each finishes, so the results table is current at every moment. The run
folders are the truth: an executor keeps no state a rerun needs.

:class:`LocalPool` runs worker processes on this machine (forked from a server that imported
torch once, see :class:`Forked`); a cluster executor submits the same
command lines to a scheduler.
"""

from __future__ import annotations

import abc
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from lenslab._io import atomic_write_text
from lenslab.run import pid_alive
from lenslab.scaling.sweep.plan import GridPoint
from lenslab.scaling.sweep.spec import SweepSpec

#: Exit codes of ``lenslab train`` / ``resume`` (see the README).
RC_OK, RC_BAD_INPUT, RC_GAVE_UP, RC_PREEMPTED = 0, 2, 3, 75
#: What an executor says of each run it was given.
FINISHED = ("trained", "resumed", "gave_up")


@dataclass
class Job:
    """One grid point that needs work: ``action`` is ``new``, ``resume`` or ``restart``."""

    point: GridPoint
    run_dir: Path
    action: str
    attempts: int = 0
    outcome: str = ""  # trained | resumed | gave_up | preempted | killed | failed
    message: str = ""
    # the local pool's bookkeeping
    proc: Any = None  # subprocess.Popen, or Forked (its part of Popen's interface)
    tail: Optional["Tail"] = None
    task_id: Any = None
    started: float = 0.0
    slot: int = 0

    def prepare(self, ctx: "Context") -> list[str]:
        """Make the run folder ready for its next attempt and return the ``lenslab`` arguments
        that do the work (``train CONFIG --out RUN`` or ``resume RUN``, with the job's faults on
        its first attempt). A run killed before its first checkpoint starts again."""
        p = self.point
        if self.action == "restart":
            shutil.rmtree(self.run_dir)
            self.action = "new"
        if self.action == "new":
            cfg_path = ctx.out / "configs" / f"{p.name}.toml"
            atomic_write_text(cfg_path, p.config.to_toml())
            args = ["train", str(cfg_path), "--out", str(self.run_dir), "--quiet"]
        else:
            args = ["resume", str(self.run_dir), "--quiet"]
        spec = ctx.inject.get(p.name) or (ctx.inject.get("*") if self.action == "new" else None)
        if spec and self.attempts == 0:
            args += ["--inject", spec]
        return args


@dataclass
class Context:
    """What an executor gets from the sweep: where it writes, the spec, the faults to inject,
    the display, and :meth:`done` to call as each job finishes."""

    out: Path
    spec: SweepSpec
    inject: dict[str, str]
    display: Any  # lenslab.scaling.sweep.display.Display
    on_done: Callable[[Job], None] = lambda job: None

    def done(self, job: Job) -> None:
        self.on_done(job)

    def log_file(self, job: Job) -> Path:
        log = self.out / "logs" / f"{job.point.name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        return log


class Executor(abc.ABC):
    """Runs jobs. After :meth:`run`, ``outcome`` and ``messages`` say what happened to each run
    (by name) and ``stopping`` whether the sweep was interrupted."""

    name: str = ""

    def __init__(self) -> None:
        self.outcome: dict[str, str] = {}
        self.messages: dict[str, str] = {}
        self.stopping = False
        self.ctx: Optional[Context] = None

    def check(self) -> None:
        """Raise a one-line :class:`~lenslab.errors.ConfigError` for settings that cannot work,
        before the sweep writes or submits anything."""

    @abc.abstractmethod
    def run(self, jobs: list[Job], ctx: Context) -> None:
        """Train or resume every job; return when all are finished or the sweep stops."""

    def finish(self, job: Job, outcome: str, message: str = "") -> None:
        """Record how a job ended and tell the sweep (its table is rewritten)."""
        job.outcome, job.message = outcome, message
        self.outcome[job.point.name] = outcome
        if message:
            self.messages[job.point.name] = message
        if self.ctx is not None:
            self.ctx.done(job)


class LocalPool(Executor):
    """Runs on this machine: each grid point a ``lenslab train``/``resume`` process, up to
    ``workers`` at once, the largest first; a worker killed by a signal is resumed up to the
    sweep's ``max_retries`` times. Ctrl-C or SIGTERM stops new starts and forwards one SIGTERM to
    each worker, which writes a checkpoint and exits 75.

    submitit's local executor has no queue, so lenslab keeps this small pool of its own."""

    name = "local"

    POLL_S = 0.2

    def __init__(self) -> None:
        super().__init__()
        self.active: list[Job] = []
        self.queue: list[Job] = []

    # -- signals ---------------------------------------------------------------------------
    def _handler(self, signum, frame):
        if self.stopping and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.stopping = True
        self.ctx.display.print(f"[bold]{signal.Signals(signum).name}[/]: no new runs; the running "
                               "ones write a checkpoint and stop. Rerun the same command to continue.")
        for job in self.active:
            if job.proc is not None and job.proc.poll() is None:
                try:
                    job.proc.send_signal(signal.SIGTERM)
                except ProcessLookupError:
                    pass

    # -- workers ---------------------------------------------------------------------------
    def _launch(self, job: Job) -> None:
        p = job.point
        log = self.ctx.log_file(job)
        cmd = [sys.executable, "-m", "lenslab", *job.prepare(self.ctx)]
        threads = str(p.config.train.threads or self.ctx.spec.config.resolved_threads())
        busy = {j.slot for j in self.active}
        job.slot = next(i for i in range(len(self.active) + 1) if i not in busy)
        env = dict(os.environ, OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads, PYTHONUNBUFFERED="1",
                   **worker_gpu_env(p.config.train.device, job.slot, self.gpus))
        env.pop("WORLD_SIZE", None)
        env.pop("RANK", None)
        env.pop("LOCAL_RANK", None)
        fork = forking()
        how = "  (forked from the sweep's server)" if fork else ""
        with open(log, "a", encoding="utf-8") as f:
            f.write(f"\n# {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(cmd)}{how}\n")
            f.flush()
            # A new session: a Ctrl-C at the terminal reaches only the sweep, which forwards one
            # SIGTERM per worker (a second signal would make a worker stop without a checkpoint).
            job.proc = None
            if fork:
                try:
                    job.proc = Forked(cmd[3:], env, log)
                except (OSError, EOFError) as e:  # no fork server here: start a new process
                    self.ctx.display.print(f"fork server unavailable ({e}); workers start as "
                                           "new processes")
                    f.write(f"# fork server unavailable ({e}); started as a new process\n")
                    f.flush()
                    global _FORK_FAILED
                    _FORK_FAILED = True
            if job.proc is None:
                job.proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env,
                                            start_new_session=True)
        job.tail = Tail(job.run_dir / "metrics.jsonl")
        job.started = time.monotonic()
        job.attempts += 1
        self.active.append(job)
        self.ctx.display.start(job)
        if self.stopping:  # a Ctrl-C while it started (the first fork waits for torch's import)
            job.proc.send_signal(signal.SIGTERM)

    def _reap(self, job: Job, rc: int) -> None:
        self.active.remove(job)
        log = self.ctx.log_file(job)
        resumed = job.action == "resume" or job.attempts > 1
        if rc == RC_OK:
            self.finish(job, "resumed" if resumed else "trained")
            self.ctx.display.finish(job, "completed", f"{time.monotonic() - job.started:.0f} s")
        elif rc == RC_GAVE_UP:
            self.finish(job, "gave_up", log_tail(log, 1))
            self.ctx.display.finish(job, "gave_up", job.message)
        elif (rc < 0 or rc == RC_PREEMPTED) and not self.stopping and job.attempts <= self.ctx.spec.config.max_retries:
            why = f"killed by {signal.Signals(-rc).name}" if rc < 0 else "preempted"
            self.ctx.display.finish(job, "resuming", f"{why}; resuming (try {job.attempts})")
            job.action = "resume"
            self.queue.insert(0, job)
        elif rc == RC_PREEMPTED:
            self.finish(job, "preempted")
            self.ctx.display.finish(job, "preempted", "checkpoint written")
        elif rc < 0:
            self.finish(job, "killed", f"killed by {signal.Signals(-rc).name}")
            self.ctx.display.finish(job, "killed", job.message)
        else:
            self.finish(job, "failed", f"exit code {rc}: {log_tail(log)} (log: {log})")
            self.ctx.display.finish(job, "failed", job.message)

    def run(self, jobs: list[Job], ctx: Context) -> None:
        self.ctx = ctx
        self.queue = sorted(jobs, key=lambda j: -j.point.cost)
        self.gpus = visible_gpus() if ctx.spec.config.workers > 1 else []
        workers = ctx.spec.config.workers
        installed = {}
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                installed[s] = signal.signal(s, self._handler)
        try:
            while self.queue or self.active:
                while self.queue and len(self.active) < workers and not self.stopping:
                    self._launch(self.queue.pop(0))
                if self.stopping and not self.active:
                    break
                for job in list(self.active):
                    rc = job.proc.poll()
                    ctx.display.update(job, job.tail.poll())
                    if rc is not None:
                        self._reap(job, rc)
                time.sleep(self.POLL_S)
        except BaseException:
            for job in self.active:  # a hard stop: every run resumes from its last checkpoint
                if job.proc is not None and job.proc.poll() is None:
                    job.proc.kill()
            for job in self.active:
                if job.proc is not None:
                    job.proc.wait()
            raise
        finally:
            for s, h in installed.items():
                signal.signal(s, h)


#: What the fork server imports once, so that no worker pays for it: lenslab's commands and torch,
#: with torch._dynamo, which torch imports when the first optimizer is made (about 4 s of the
#: 7 s a ``lenslab train`` process spent before its first step on the dev machine).
PRELOAD = ["lenslab.cli", "lenslab.training", "torch._dynamo"]


_SERVED_SOURCE: Optional[int] = None  # lenslab's source (newest mtime) when the server started
_FORK_FAILED = False  # the server could not start here: new processes from then on


def _source_stamp() -> int:
    root = Path(__file__).resolve().parents[2]  # the lenslab package
    return max((p.stat().st_mtime_ns for p in root.rglob("*.py")), default=0)


def forking() -> bool:
    """Whether workers are forked from the fork server (POSIX; ``LENSLAB_FORK=0`` turns it off
    and starts each worker as ``python -m lenslab``). Not once lenslab's own source has changed
    since the server started (an editable install edited between two sweeps of one notebook):
    its workers would run the old code, so new processes start instead."""
    import multiprocessing

    if (os.environ.get("LENSLAB_FORK", "1") == "0" or _FORK_FAILED
            or "forkserver" not in multiprocessing.get_all_start_methods()):
        return False
    return _SERVED_SOURCE is None or _SERVED_SOURCE == _source_stamp()


class Forked:
    """``python -m lenslab ARGS`` as a process forked from multiprocessing's fork server, which
    imported :data:`PRELOAD` once (the first worker waits for that; the server lives as long as
    this process). The worker is still a process of its own, in a session of its own, with the
    environment and working folder given, its output in ``log``: signals, exit codes and kills
    behave as with a subprocess. The part of ``subprocess.Popen`` the pool uses.

    The server never initialises CUDA or starts threads of torch's, so a forked worker is a
    fresh one in every way a run can see (the sweep tests compare its results, byte for byte,
    with runs that Slurm starts as new processes)."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path):
        import multiprocessing

        global _SERVED_SOURCE
        if _SERVED_SOURCE is None:
            _SERVED_SOURCE = _source_stamp()
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(PRELOAD)  # read when the server starts (the first time)
        self._p = ctx.Process(target=_forked_main,
                              args=(list(args), dict(env), os.getcwd(), str(log)), daemon=False)
        with _main_not_rerun():
            self._p.start()
        self.pid = self._p.pid
        self.returncode: Optional[int] = None

    def poll(self) -> Optional[int]:
        if self.returncode is None:
            rc = self._p.exitcode
            if rc == SERVER_GONE and pid_alive(self.pid):
                return None  # the server died (e.g. SIGTERM to the group), not the worker
            self.returncode = rc
        return self.returncode

    def wait(self) -> int:
        self._p.join()
        while self.poll() is None:
            time.sleep(0.2)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:  # ended between the poll and the signal
                pass

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


#: What multiprocessing reports for a worker when the fork server itself is gone.
SERVER_GONE = 255


@contextlib.contextmanager
def _main_not_rerun():
    """Hide which script is ``__main__`` while a worker starts. multiprocessing passes it on so
    that the new process can import it again (as ``__mp_main__``): a worker that is to become
    ``python -m lenslab`` must not, or a sweep started by a script without an
    ``if __name__ == "__main__"`` guard would start itself again in every worker."""
    main = sys.modules.get("__main__")
    if main is None:
        yield
        return
    saved = {k: main.__dict__[k] for k in ("__file__", "__spec__") if k in main.__dict__}
    main.__dict__.pop("__file__", None)
    main.__spec__ = None
    try:
        yield
    finally:
        main.__dict__.pop("__spec__", None)
        main.__dict__.update(saved)


def _forked_main(args: list[str], env: dict[str, str], cwd: str, log: str) -> None:
    """The worker's side of :class:`Forked`: become ``python -m lenslab ARGS``."""
    os.setsid()
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    for stream in (sys.stdout, sys.stderr):
        stream.reconfigure(line_buffering=True)
    threads = env.get("OMP_NUM_THREADS", "")
    if threads.isdigit():
        import torch

        torch.set_num_threads(int(threads))  # what the variable does in a new process
    import runpy

    sys.argv = ["lenslab", *args]
    runpy.run_module("lenslab", run_name="__main__", alter_sys=True)  # exits with its code


class Tail:
    """The newest record of a run's metrics.jsonl, read incrementally (survives a rewrite)."""

    def __init__(self, path: Path):
        self.path = path
        self.key: Optional[tuple[int, int]] = None
        self.offset = 0
        self.buf = b""
        self.last: Optional[dict] = None

    def poll(self) -> Optional[dict]:
        try:
            st = self.path.stat()
        except OSError:
            return self.last
        key = (st.st_ino, st.st_dev)
        if key != self.key or st.st_size < self.offset:
            self.key, self.offset, self.buf = key, 0, b""
        if st.st_size > self.offset:
            try:
                with open(self.path, "rb") as f:
                    f.seek(self.offset)
                    chunk = f.read(st.st_size - self.offset)
            except OSError:
                return self.last
            self.offset += len(chunk)
            lines = (self.buf + chunk).split(b"\n")
            self.buf = lines.pop()
            for line in reversed(lines):
                if line.strip():
                    try:
                        self.last = json.loads(line)
                        break
                    except ValueError:
                        continue
        return self.last


def visible_gpus(environ: Optional[dict[str, str]] = None) -> list[str]:
    """The GPUs a worker may be given: ``CUDA_VISIBLE_DEVICES`` if set, else every device
    torch counts (without initialising CUDA in the sweep process)."""
    env = os.environ if environ is None else environ
    if "CUDA_VISIBLE_DEVICES" in env:
        return [d.strip() for d in env["CUDA_VISIBLE_DEVICES"].split(",") if d.strip() and d.strip() != "-1"]
    import torch  # counting devices; the pool itself never needs torch

    return [str(i) for i in range(torch.cuda.device_count())]


def worker_gpu_env(device: str, slot: int, gpus: list[str]) -> dict[str, str]:
    """Environment that pins the worker in ``slot`` to one GPU, round-robin over ``gpus``.

    Only runs that may use CUDA (``device`` "auto" or "cuda") are pinned, and only when more
    than one GPU is visible; a run that names its device (``cuda:1``, ``cpu``) is left alone.
    """
    if device not in ("auto", "cuda") or len(gpus) < 2:
        return {}
    return {"CUDA_VISIBLE_DEVICES": gpus[slot % len(gpus)]}


def log_tail(path: Path, n: int = 3) -> str:
    try:
        lines = [x.strip() for x in path.read_text(errors="replace").splitlines() if x.strip()]
    except OSError:
        return ""
    return " | ".join(lines[-n:])[-400:]

"""The Slurm executor: a sweep's grid points as one job array, submitted through submitit.

Each array task trains or resumes one run folder (:class:`SweepTask`), on a file system that
every node sees. The run folders stay the truth: a task decides on the node whether to train
or resume from the folder as it finds it, so a task that Slurm requeues (``scontrol requeue``,
a preemption, the time limit) simply continues where the run's last checkpoint left it, and
lenslab never needs ``sacct`` (without ``slurmdbd`` it only says accounting is disabled).

Time limits: the job asks Slurm for SIGUSR2 ``signal_delay_s`` before the limit. The run takes
it as it takes SIGTERM (finish the step, write a checkpoint, exit 75); submitit calls
:meth:`SweepTask.checkpoint` and requeues the task, which resumes.

Not starting anything twice: the array's task ids are kept in ``SWEEP/slurm/jobs.json`` and
each run writes its own into ``run.json`` (``slurm_job``). A later ``lenslab sweep`` on the same
folder, on a login node or a laptop, submits only the grid points whose last job squeue no
longer lists and whose run is not done, and waits for the others.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from lenslab._io import atomic_write_json
from lenslab.errors import ConfigError
from lenslab.run import Run
from lenslab.scaling.sweep.executor import RC_PREEMPTED, Context, Executor, Job
from lenslab.scaling.sweep.spec import ExecutorConfig
from lenslab.slurm_task import SweepTask

#: squeue states of a job that will still run (or runs now).
ALIVE = ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "REQUEUED", "REQUEUE_FED",
         "REQUEUE_HOLD", "RESIZING", "SUSPENDED", "STOPPED", "SIGNALING", "STAGE_OUT")


def squeue() -> dict[str, str]:
    """Every job squeue lists, one per array task: ``{"123_4": "RUNNING", "125": "PENDING"}``."""
    try:
        out = subprocess.run(["squeue", "-h", "-r", "-o", "%i|%T"], capture_output=True,
                             text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ConfigError(f"squeue failed ({e}); is this a Slurm login node?") from None
    if out.returncode != 0:
        raise ConfigError(f"squeue failed: {out.stderr.strip().splitlines()[-1:] or out.returncode}")
    jobs = {}
    for line in out.stdout.splitlines():
        if "|" in line:
            jid, state = line.strip().split("|", 1)
            jobs[jid] = state
    return jobs


def check_settings(ex: ExecutorConfig) -> None:
    """One-line errors, before anything is submitted: no ``sbatch``/``squeue`` on the path, or
    a partition the cluster does not have."""
    too_early = ex.warning_too_early()  # checked again: a file of kind "local" sent to Slurm
    if too_early:
        raise ConfigError(f"executor: {too_early}")
    for tool in ("sbatch", "squeue", "sinfo"):
        if shutil.which(tool) is None:
            raise ConfigError(f"executor slurm: {tool} is not on the PATH; run the sweep on a "
                              "Slurm login node, or use the local executor")
    out = subprocess.run(["sinfo", "-h", "-o", "%R"], capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        msg = (out.stderr.strip().splitlines() or ["no answer"])[-1]
        raise ConfigError(f"executor slurm: sinfo failed ({msg}); is the cluster up?")
    parts = sorted(set(out.stdout.split()))
    if ex.partition is not None and ex.partition not in parts:
        raise ConfigError(f"executor slurm: partition {ex.partition!r} does not exist; this "
                          f"cluster has {', '.join(parts) or 'none'}")


class SlurmPool(Executor):
    """Submit the jobs as one array (``sbatch`` through submitit) and wait for them, reading
    the run folders as tasks leave the queue. ``wait=False`` returns once submitted (a later
    ``lenslab sweep`` collects the results and resubmits what was lost)."""

    name = "slurm"

    def __init__(self, settings: ExecutorConfig, wait: bool = True):
        super().__init__()
        self.settings = settings
        self.wait = wait

    def check(self) -> None:
        check_settings(self.settings)

    # -- bookkeeping -----------------------------------------------------------------------
    @staticmethod
    def _jobs_file(ctx: Context) -> Path:
        return ctx.out / "slurm" / "jobs.json"

    def _known(self, ctx: Context) -> dict[str, str]:
        try:
            d = json.loads(self._jobs_file(ctx).read_text())
            return {str(k): str(v) for k, v in d.items()} if isinstance(d, dict) else {}
        except (OSError, ValueError):
            return {}

    def _record(self, ctx: Context, ids: dict[str, str]) -> None:
        known = self._known(ctx)
        known.update(ids)
        atomic_write_json(self._jobs_file(ctx), known)

    # -- the work --------------------------------------------------------------------------
    def run(self, jobs: list[Job], ctx: Context) -> None:
        self.ctx = ctx
        s = self.settings
        queue = squeue()
        known = self._known(ctx)
        waiting: dict[str, Job] = {}  # job id -> job
        new: list[Job] = []
        for job in jobs:
            jid = Run(job.run_dir).meta().get("slurm_job") if Run.is_run(job.run_dir) else None
            jid = jid if jid in queue else known.get(job.point.name)
            if jid is not None and queue.get(jid) in ALIVE:
                job.task_id = jid  # queued or running already: wait, do not submit twice
                waiting[jid] = job
                ctx.display.print(f"{job.point.name}: Slurm job {jid} is {queue[jid].lower()}; "
                                  "not submitted again")
            else:
                new.append(job)
        if new:
            for job, jid in zip(new, self._submit(new, ctx)):
                job.task_id = jid
                job.started = time.time()
                waiting[jid] = job
            self._record(ctx, {j.point.name: j.task_id for j in new})
            ctx.display.print(f"submitted {len(new)} array task(s) to Slurm"
                              + (f" (partition {s.partition})" if s.partition else ""))
        if not self.wait:
            for job in waiting.values():
                self.outcome[job.point.name] = "submitted"
            return
        while waiting:
            time.sleep(s.poll_s)
            queue = squeue()
            for jid in [j for j in waiting if queue.get(j) not in ALIVE]:
                job = waiting.pop(jid)
                self.finish(job, *self._outcome(job))

    def _submit(self, jobs: list[Job], ctx: Context) -> list[str]:
        import submitit  # a small optional extra: lenslab[slurm]

        s = self.settings
        ex = submitit.SlurmExecutor(folder=ctx.out / "slurm" / "%j", max_num_timeout=1000)
        params: dict[str, Any] = {
            "job_name": f"lenslab-{ctx.spec.config.name}", "time": s.time_min,
            "nodes": s.nodes, "ntasks_per_node": 1, "cpus_per_task": s.cpus_per_run,
            "array_parallelism": s.array_parallelism, "signal_delay_s": s.signal_delay_s,
            "additional_parameters": dict(s.sbatch),
            "setup": [f"export OMP_NUM_THREADS={s.cpus_per_run}"],
        }
        if s.partition:
            params["partition"] = s.partition
        if s.gpus_per_node:
            params["gpus_per_node"] = s.gpus_per_node
        if s.mem_gb:
            params["mem"] = f"{int(s.mem_gb * 1024)}M"
        ex.update_parameters(**params)
        tasks = [SweepTask(job.prepare(ctx), str(job.run_dir), s.nodes, s.gpus_per_node)
                 for job in jobs]
        try:
            with ex.batch():
                submitted = [ex.submit(t) for t in tasks]
        except Exception as e:  # noqa: BLE001 - sbatch's own message, in one line
            msg = str(e).strip().splitlines()
            raise ConfigError(f"sbatch refused the array: {msg[-1] if msg else e}") from None
        return [str(j.job_id) for j in submitted]

    def _outcome(self, job: Job) -> tuple[str, str]:
        """How a task that left the queue ended, from its run folder."""
        if not Run.is_run(job.run_dir):
            return "failed", (f"Slurm task {job.task_id} ended before the run folder was "
                              f"created; see {self.ctx.out / 'slurm' / str(job.task_id)}")
        status = Run(job.run_dir).meta().get("status")
        if status == "completed":
            return ("resumed" if job.action == "resume" else "trained"), ""
        if status == "gave_up":
            return "gave_up", Run(job.run_dir).meta().get("message", "")
        if status == "preempted":
            return "preempted", f"exit {RC_PREEMPTED}: stopped and not requeued; rerun the sweep"
        return "killed", (f"Slurm task {job.task_id} left the queue with the run {status}; "
                          "rerun the sweep to resume it")

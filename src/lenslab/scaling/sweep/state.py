"""What each grid point needs, from its run folder: nothing, a fresh start, or a resume."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from lenslab.config import RunConfig, load_config
from lenslab.errors import LensError, RunDirError
from lenslab.run import Run, config_diff, pid_alive
from lenslab.scaling.sweep.plan import GridPoint

#: Config keys that change how fast a run goes, not its numbers' meaning (ignored when a rerun
#: compares a grid point with its run folder).
EXECUTION_KEYS = (("train", "threads"),)


def _comparable(cfg: RunConfig) -> dict:
    d = cfg.model_dump(mode="json")
    for section, key in EXECUTION_KEYS:
        d.get(section, {}).pop(key, None)
    return d


def run_state(point: GridPoint, run_dir: Path) -> str:
    """What a grid point needs: ``new``, ``resume``, ``restart``, ``completed`` or ``gave_up``.

    Raises :class:`RunDirError` when the folder is not this grid point's run (a changed grid
    point, a foreign folder) or when another process is still training it.
    """
    if not run_dir.exists():
        return "new"
    if not run_dir.is_dir():
        raise RunDirError(f"{run_dir} exists and is not a folder; remove it or use another --out")
    if not (run_dir / "config.toml").is_file():
        if any(run_dir.iterdir()):
            raise RunDirError(f"{run_dir} is not a lenslab run (no config.toml); remove it or use another --out")
        return "new"
    try:
        old = load_config(run_dir / "config.toml")
    except LensError as e:
        raise RunDirError(f"grid point {point.name}: {run_dir}/config.toml is unreadable ({e}); "
                          "remove the folder to train it again") from None
    diffs = config_diff(_comparable(old), _comparable(point.config))
    if diffs:
        shown = "; ".join(diffs[:4]) + ("; ..." if len(diffs) > 4 else "")
        raise RunDirError(f"grid point {point.name} changed since {run_dir} was trained ({shown}); "
                          "restore the sweep and base config, or use another --out")
    run = Run(run_dir)
    meta = run.meta()
    status = meta.get("status", "created")
    if status == "completed":
        return "completed"
    if status == "gave_up":
        return "gave_up"
    if status in ("running", "created") and not meta.get("slurm_job") \
            and meta.get("host") == socket.gethostname() \
            and meta.get("pid") != os.getpid() and pid_alive(meta.get("pid")):
        # (a run of a Slurm job is the Slurm executor's to judge, from squeue)
        raise RunDirError(f"grid point {point.name} is still being trained by process {meta['pid']} "
                          f"(an earlier sweep's worker?); wait for it to finish or stop it, then rerun")
    if run.latest_checkpoint(warn=lambda m: None) is None:
        return "restart"  # killed before its first checkpoint: nothing to lose
    return "resume"

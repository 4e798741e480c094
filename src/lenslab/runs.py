"""Reading run folders: status, progress, last loss and guard-event counts."""

from __future__ import annotations

import os
import socket
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from lenslab._io import read_jsonl
from lenslab.errors import RunDirError


@dataclass
class RunInfo:
    path: Path
    name: str
    status: str
    step: int
    max_steps: Optional[int]
    last_loss: Optional[float]
    events: dict[str, int] = field(default_factory=dict)
    checkpoints: list[int] = field(default_factory=list)
    message: str = ""

    def metrics(self) -> list[dict]:
        return read_jsonl(self.path / "metrics.jsonl")

    def event_log(self) -> list[dict]:
        return read_jsonl(self.path / "events.jsonl")

    def _repr_html_(self) -> str:
        from lenslab.html import table_html

        return table_html([self.row()])

    def row(self) -> dict:
        ev = ", ".join(f"{k} {v}" for k, v in sorted(self.events.items())) or "-"
        return {"run": str(self.path), "status": self.status,
                "step": f"{self.step}/{self.max_steps}" if self.max_steps else str(self.step),
                "last loss": self.last_loss if self.last_loss is not None else "-", "guard events": ev}


def pid_alive(pid: object) -> bool:
    """Whether a process with this id exists on this machine."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover
        return True
    return True


def load_run(path: str | Path) -> RunInfo:
    from lenslab.config import load_config
    from lenslab.training.checkpoint import list_checkpoints
    from lenslab.training.trainer import read_meta

    p = Path(path)
    if not (p / "config.toml").is_file():
        raise RunDirError(f"{p} is not a lenslab run folder (no config.toml)")
    meta = read_meta(p)
    try:
        cfg = load_config(p / "config.toml")
        name, max_steps = cfg.name, cfg.train.max_steps
    except Exception:
        name, max_steps = p.name, None
    metrics = read_jsonl(p / "metrics.jsonl")
    events = Counter(e.get("type", "?") for e in read_jsonl(p / "events.jsonl"))
    status = meta.get("status", "unknown")
    if status in ("running", "created") and meta.get("host") == socket.gethostname():
        pid = meta.get("pid")
        if isinstance(pid, int) and not pid_alive(pid):
            status = "killed (resumable)"
    last = next((m["loss"] for m in reversed(metrics) if not m.get("skipped")), None)
    step = metrics[-1]["step"] + 1 if metrics else int(meta.get("step", 0))
    return RunInfo(p, name, status, step, max_steps, last, dict(events),
                   [c.step for c in list_checkpoints(p / "checkpoints")], meta.get("message", ""))


def list_runs(root: str | Path = "runs") -> list[RunInfo]:
    """Every run folder at ``root`` or directly below it (sorted by path)."""
    r = Path(root)
    if not r.exists():
        raise RunDirError(f"{r} does not exist")
    cands = [r] if (r / "config.toml").is_file() else sorted(
        d for d in r.rglob("config.toml") if ".creating-" not in str(d))
    out = []
    for c in cands:
        d = c if c.is_dir() else c.parent
        try:
            out.append(load_run(d))
        except RunDirError:
            continue
    return out


def load_run_weights(run_dir: str | Path, step: Optional[int] = None, check=None):
    """The model of a run folder at its newest verified checkpoint (or at ``step``).

    ``check(cfg, run_dir)`` may refuse the run before anything is built (e.g. a token-level
    analysis given a regression run). Returns ``(model, task, cfg, step)``; the model is in
    eval mode, ``cfg`` has the task's vocabulary filled in.
    """
    from safetensors.torch import load_model

    from lenslab.config import load_config
    from lenslab.data import build_task, resolve_config
    from lenslab.models import build_model
    from lenslab.training.checkpoint import latest_verified, list_checkpoints, verify

    run_dir = Path(run_dir)
    if not (run_dir / "config.toml").is_file():
        raise RunDirError(f"{run_dir} is not a lenslab run folder (no config.toml)")
    cfg = load_config(run_dir / "config.toml")
    if check is not None:
        check(cfg, run_dir)
    task = build_task(cfg, run_dir)
    cfg = resolve_config(cfg, task)
    if step is None:
        ck = latest_verified(run_dir / "checkpoints")
    else:
        ck = next((c for c in list_checkpoints(run_dir / "checkpoints") if c.step == step), None)
        ck = ck if ck is not None and verify(ck.path) is None else None
    if ck is None:
        raise RunDirError(f"{run_dir} has no verified checkpoint"
                          + (f" at step {step}" if step is not None else "")
                          + "; train it first (`lenslab train` or `lenslab resume`)")
    model = build_model(cfg.model)
    load_model(model, str(ck.model_file))
    return model.eval(), task, cfg, ck.step

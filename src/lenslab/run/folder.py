"""The run folder and its one owner, :class:`Run`.

A run is a folder; this module is the only code that knows its layout::

    RUN/
      config.toml          the validated config, as given (the task fills the rest: see resolved)
      run.json             meta: status, step, pid and host of the writer, injected faults
      metrics.jsonl        one JSON object per logged step
      events.jsonl         guard events
      checkpoints/step-NNNNNN/   model.safetensors, trainer.pt, MANIFEST.json (see checkpoint.py)
      analysis/<kind>.json       results of analyses (see lenslab.result), .html and .png beside
      tensorboard/         TensorBoard's event files, with train.tensorboard (see tensorboard.py)
      report.html          the run's page (lenslab.report)

The trainer writes through a :class:`Run`; every analysis reads through one (its config, task,
checkpoints and model at a step) and writes its results into :attr:`Run.analysis_dir`.

Listing runs and reading their logs needs no torch (``lenslab runs`` answers at once): the
task, the model and torch are imported by the methods that build them.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from collections import Counter
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Union

from lenslab import __version__
from lenslab._io import append_jsonl, atomic_write_json, read_jsonl, rewrite_jsonl
from lenslab.config import RunConfig, load_config, save_config
from lenslab.errors import ConfigError, LensError, RunDirError
from lenslab.html import table_html
from lenslab.run import checkpoint as ckpt
from lenslab.run.checkpoint import Checkpoint
from lenslab.run.lock import Lock

CONFIG, META, METRICS, EVENTS = "config.toml", "run.json", "metrics.jsonl", "events.jsonl"
CHECKPOINTS, ANALYSIS, REPORT, TENSORBOARD = "checkpoints", "analysis", "report.html", "tensorboard"
STAGING = ".creating-"  # hidden staging folders: .NAME.creating-PID


def slurm_job() -> str:
    """This process's Slurm job as squeue names it (``ARRAY_TASK`` for an array task), or ""."""
    e = os.environ
    if e.get("SLURM_ARRAY_JOB_ID") and e.get("SLURM_ARRAY_TASK_ID"):
        return f"{e['SLURM_ARRAY_JOB_ID']}_{e['SLURM_ARRAY_TASK_ID']}"
    return e.get("SLURM_JOB_ID", "")


def pid_alive(pid: object) -> bool:
    """Whether a process with this id exists on this machine."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - someone else's process
        return True
    return True


class Run:
    """One run folder. ``Run(path)`` does no I/O; :meth:`open` checks that it holds a run and
    :meth:`create` makes a new one.

    Reading: :attr:`config` (as written), :attr:`task` (built once), :attr:`resolved` (the config
    with what the task determines filled in), :meth:`meta`, :meth:`metrics`, :meth:`event_log`,
    :meth:`checkpoints`, :meth:`checkpoint` (verified), :meth:`load_model`. A summary for
    listings: :attr:`status`, :attr:`step`, :attr:`last_loss`, :attr:`events` (counts).
    """

    def __init__(self, path: Union[str, os.PathLike]):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Run) and self.path == other.path

    def __hash__(self) -> int:
        return hash(self.path)

    # ------------------------------------------------------------------ layout
    @property
    def name(self) -> str:
        """The run's name from its config (the folder name when the config cannot be read)."""
        try:
            return self.config.name
        except Exception:  # noqa: BLE001 - a listing must not fail on one bad folder
            return self.path.name

    @property
    def config_file(self) -> Path:
        return self.path / CONFIG

    @property
    def checkpoints_dir(self) -> Path:
        return self.path / CHECKPOINTS

    @property
    def tensorboard_dir(self) -> Path:
        """TensorBoard's event files (:mod:`lenslab.run.tensorboard`)."""
        return self.path / TENSORBOARD

    @property
    def analysis_dir(self) -> Path:
        """Where analyses write their results (created by the writer, not here)."""
        return self.path / ANALYSIS

    @property
    def report_file(self) -> Path:
        return self.path / REPORT

    @staticmethod
    def is_run(path: Union[str, os.PathLike]) -> bool:
        return (Path(path) / CONFIG).is_file()

    @classmethod
    def open(cls, path: Union[str, os.PathLike, "Run"]) -> "Run":
        """The run at ``path``; a :class:`RunDirError` when the folder holds none."""
        if isinstance(path, Run):
            return path
        p = Path(path)
        if not p.exists():
            raise RunDirError(f"{p} is not a lenslab run folder (it does not exist)")
        if not cls.is_run(p):
            raise RunDirError(f"{p} is not a lenslab run folder (no {CONFIG})")
        return cls(p)

    # ------------------------------------------------------------------ creating
    @classmethod
    def create(cls, path: Union[str, os.PathLike], cfg: RunConfig, *, inject: str = "",
               staged: bool = False) -> "Run":
        """Validate ``cfg``, then create the run folder atomically and return its :class:`Run`.

        Everything that can fail on a config (the task and its data, the model's sizes) fails
        before anything is written. The folder is staged under a hidden name and renamed into
        place, so it appears whole or not at all; with ``staged``, the :class:`Run` returned is
        the staging folder, for the caller to finish (the trainer writes the step-0 checkpoint
        there) and then :meth:`commit`. An existing run is refused: one with another config by a
        message that says so, the same config by one that says to resume; a folder of the same
        config with no verified checkpoint (killed before its first) is started again.
        """
        from lenslab.data import build_task, resolve_config
        from lenslab.models import build_model

        run = cls(path)
        restart = run._check_new(cfg)
        task = build_task(cfg, None)  # missing or non-UTF-8 data fails here, before any write
        full = resolve_config(cfg, task)
        with torch_meta():
            build_model(full.model)  # impossible sizes fail here too, without allocating
        blocker = next((a for a in run.path.parents if a.exists() and not a.is_dir()), None)
        if blocker is not None:
            raise RunDirError(f"cannot create {run.path}: {blocker} is a file, not a folder")
        try:
            run.path.parent.mkdir(parents=True, exist_ok=True)
            cls.clean_staging(run.path.parent)
            staging = run.path.parent / f".{run.path.name}{STAGING}{os.getpid()}"
            staging.mkdir()
        except OSError as e:
            raise RunDirError(f"cannot create {run.path}: {os_reason(e)}") from None
        try:
            save_config(cfg, staging / CONFIG)
            if hasattr(task, "save_artifacts"):
                task.save_artifacts(staging)
            cls(staging).write_meta(status="created", step=0, inject=inject)
            (staging / METRICS).touch()
            (staging / EVENTS).touch()
        except BaseException as e:
            shutil.rmtree(staging, ignore_errors=True)
            if isinstance(e, OSError):
                raise RunDirError(f"cannot create {run.path}: {os_reason(e)}") from None
            raise
        new = cls(staging)
        new.final, new.restart = run.path, restart
        # the objects built for the checks are the run's: nothing is built twice
        new.__dict__.update(config=cfg, task=task, resolved=full)
        if not staged:
            new.commit()
        return new

    def commit(self) -> None:
        """Rename a staged run (:meth:`create`) into place; this object follows it."""
        final = getattr(self, "final", None)
        if final is None or final == self.path:
            return
        try:
            if final.exists() and getattr(self, "restart", False):
                _remove_run(final)  # the same config, never checkpointed: started again
            elif final.exists():
                final.rmdir()  # an empty folder the user made; anything else was refused
            os.replace(self.path, final)
        except OSError as e:
            shutil.rmtree(self.path, ignore_errors=True)
            if final.exists() and any(final.iterdir()):
                raise RunDirError(f"{final} was created by another process meanwhile; continue it "
                                  f"with `lenslab resume {final}`") from None
            raise RunDirError(f"cannot create {final}: {os_reason(e)}") from None
        self.path = final

    def discard(self) -> None:
        """Remove a staged run that will not be committed."""
        if getattr(self, "final", None) not in (None, self.path):
            shutil.rmtree(self.path, ignore_errors=True)

    def _check_new(self, cfg: RunConfig) -> bool:
        """Refuse a folder that holds something else; True when it holds this config's run
        killed before its first checkpoint (to be started again)."""
        p = self.path
        if not p.exists():
            return False
        if not p.is_dir():
            raise RunDirError(f"{p} exists and is not a folder")
        if self.is_run(p):
            try:
                old = load_config(p / CONFIG)
            except Exception:  # noqa: BLE001 - any unreadable config: the same answer
                raise RunDirError(f"{p} holds a run whose {CONFIG} is unreadable; "
                                  "choose another --out") from None
            if old.fingerprint() != cfg.fingerprint():
                diff = config_diff(old.model_dump(mode="json"), cfg.model_dump(mode="json"))
                raise RunDirError(f"{p} already holds a run with a different config "
                                  f"({'; '.join(diff[:4])}{'; ...' if len(diff) > 4 else ''}); "
                                  "choose another --out")
            existing = Run(p)
            if existing.latest_checkpoint(warn=lambda m: None) is None:
                with existing.lock("train"):  # not while another process is starting it
                    return True
            raise RunDirError(f"{p} already holds this run; continue it with `lenslab resume {p}`")
        if any(x.name != ".lock" for x in p.iterdir()):
            raise RunDirError(f"{p} exists, is not empty and is not a lenslab run; "
                              "choose another --out")
        return False

    def lock(self, what: str = "") -> Lock:
        """The folder's writer lock (``with run.lock("train"): ...``): one writer at a time."""
        return Lock(self.path, what)

    def reset(self) -> None:
        """Start a run again from step 0: its logs and checkpoints go (it has no verified
        checkpoint: nothing of value is lost), its config and artifacts stay."""
        shutil.rmtree(self.checkpoints_dir, ignore_errors=True)
        self.truncate_logs(lambda r: False)
        self.write_meta(status="created", step=0)

    @staticmethod
    def clean_staging(parent: Path) -> list[Path]:
        """Remove staging folders (``.NAME.creating-PID``) of processes that are gone."""
        removed = []
        if not parent.is_dir():
            return removed
        for p in parent.iterdir():
            if p.is_dir() and p.name.startswith(".") and STAGING in p.name:
                pid = p.name.rsplit("-", 1)[-1]
                if pid.isdigit() and not pid_alive(int(pid)):
                    shutil.rmtree(p, ignore_errors=True)
                    removed.append(p)
        return removed

    # ------------------------------------------------------------------ config and task
    @cached_property
    def config(self) -> RunConfig:
        """The config as written in ``config.toml``."""
        return load_config(self.config_file)

    @cached_property
    def task(self) -> Any:
        """The run's task, built once (its data is read or generated here)."""
        from lenslab.data import build_task

        return build_task(self.config, self.path)

    @cached_property
    def fingerprint(self) -> str:
        """Identity of the run's config: its checkpoints carry it, a foreign one is refused."""
        return self.config.fingerprint()

    @cached_property
    def resolved(self) -> RunConfig:
        """The config with what the task determines filled in (vocabulary, read-in widths)."""
        from lenslab.data import resolve_config

        return resolve_config(self.config, self.task)

    # ------------------------------------------------------------------ meta and logs
    def meta(self) -> dict:
        """``run.json`` as a dict (empty when missing or unreadable)."""
        try:
            d = json.loads((self.path / META).read_text())
        except (OSError, ValueError):
            return {}
        return d if isinstance(d, dict) else {}

    def write_meta(self, **fields: Any) -> None:
        """Update ``run.json`` atomically; the writer's pid, host and world size are recorded."""
        import torch

        meta = self.meta()
        if not meta:
            meta = {"created": time.time(), "lenslab": __version__, "torch": torch.__version__}
        meta.update(fields)
        meta.update({"updated": time.time(), "pid": os.getpid(), "host": socket.gethostname(),
                     "world_size": int(os.environ.get("WORLD_SIZE", "1"))})
        job = slurm_job()
        if job:  # a sweep's Slurm executor reads it to not start a queued or running run twice
            meta["slurm_job"] = job
        else:
            meta.pop("slurm_job", None)
        if "message" not in fields and fields.get("status") in ("running", "completed"):
            meta.pop("message", None)
        atomic_write_json(self.path / META, meta)

    def metrics(self) -> list[dict]:
        return read_jsonl(self.path / METRICS)

    def event_log(self) -> list[dict]:
        return read_jsonl(self.path / EVENTS)

    def append_metric(self, record: dict) -> None:
        append_jsonl(self.path / METRICS, record)

    def append_event(self, record: dict) -> None:
        append_jsonl(self.path / EVENTS, record)

    def truncate_logs(self, keep: Callable[[dict], bool]) -> int:
        """Keep only the log records for which ``keep`` is true (resume drops the steps it will
        replay); returns how many were dropped."""
        dropped = 0
        for name in (METRICS, EVENTS):
            f = self.path / name
            recs = read_jsonl(f, strict=False)
            kept = [r for r in recs if keep(r)]
            dropped += len(recs) - len(kept)
            if len(kept) != len(recs) or f.exists():
                rewrite_jsonl(f, kept)
        return dropped

    # ------------------------------------------------------------------ checkpoints
    def checkpoints(self) -> list[Checkpoint]:
        """Every ``step-*`` checkpoint, newest first, not verified."""
        return ckpt.list_checkpoints(self.checkpoints_dir)

    def verified_steps(self) -> list[int]:
        """Steps of the checkpoints that pass verification, in increasing order."""
        return sorted(c.step for c in self.checkpoints()
                      if ckpt.verify(c.path, self.fingerprint) is None)

    def latest_checkpoint(self, before_step: Optional[int] = None,
                          warn: Optional[Callable[[str], None]] = None) -> Optional[Checkpoint]:
        """The newest verified checkpoint (with step < ``before_step``), or None; each one skipped
        for failing verification is reported through ``warn``."""
        return ckpt.latest_verified(self.checkpoints_dir, before_step, warn, self.fingerprint)

    def checkpoint(self, step: Optional[int] = None) -> Checkpoint:
        """The verified checkpoint at ``step`` (default: the newest), or a :class:`RunDirError`
        that says what to do."""
        if step is None:
            ck = self.latest_checkpoint(warn=lambda m: None)
            if ck is None:
                raise RunDirError(f"{self.path} has no verified checkpoint; train it first "
                                  "(`lenslab train` or `lenslab resume`)")
            return ck
        ck = next((c for c in self.checkpoints() if c.step == step), None)
        if ck is None or ckpt.verify(ck.path, self.fingerprint) is not None:
            have = self.verified_steps()
            raise RunDirError(f"{self.path} has no verified checkpoint at step {step}"
                              + (f" (it has {_steps_text(have)})" if have else
                                 "; train it first (`lenslab train` or `lenslab resume`)"))
        return ck

    def write_checkpoint(self, step: int, model: Any, trainer_state: dict,
                         after_model_written: Optional[Callable[[], None]] = None) -> Checkpoint:
        return ckpt.write_checkpoint(self.checkpoints_dir, step, model, trainer_state,
                                     after_model_written, self.fingerprint)

    def prune_checkpoints(self, keep: int, warn: Optional[Callable[[str], None]] = None) -> None:
        """Keep the newest ``keep`` checkpoints, never the newest verified one."""
        newest = self.latest_checkpoint(warn=warn)
        ckpt.apply_retention(self.checkpoints_dir, keep, newest.path if newest else None)

    def clean_partial(self) -> list[Path]:
        """Remove checkpoint folders a killed writer left half-written."""
        return ckpt.clean_partial(self.checkpoints_dir)

    # ------------------------------------------------------------------ models
    def build_model(self) -> Any:
        """A freshly initialised model of the run's (resolved) config, with the weights the
        trainer starts from (seeded like it; the caller's random state is left as it was)."""
        import torch

        from lenslab.models import build_model

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.resolved.seed)
            return build_model(self.resolved.model)

    def load_model(self, at: Union[None, int, Checkpoint] = None, device: Any = "cpu") -> Any:
        """The model at a verified checkpoint (a step, a :class:`Checkpoint`, or None for the
        newest), in eval mode. Its step is ``self.checkpoint(step).step``."""
        ck = at if isinstance(at, Checkpoint) else self.checkpoint(at)
        model = self.build_model()
        try:
            weights, _ = ckpt.read_checkpoint(ck)
            ckpt.load_weights(model, weights)
        except ckpt.InvalidCheckpoint as e:
            raise RunDirError(f"{ck.path}: {e}") from None
        return model.to(device).eval()

    # ------------------------------------------------------------------ summary
    @property
    def status(self) -> str:
        """``created``, ``running``, ``completed``, ``preempted``, ``gave_up``, or ``killed
        (resumable)`` for a run whose writer on this host is gone."""
        meta = self.meta()
        status = meta.get("status", "unknown")
        if status in ("running", "created") and meta.get("host") == socket.gethostname():
            pid = meta.get("pid")
            if isinstance(pid, int) and not pid_alive(pid):
                status = "killed (resumable)"
        return status

    @property
    def message(self) -> str:
        return str(self.meta().get("message", ""))

    @property
    def step(self) -> int:
        """Steps done: one past the last logged step (the meta's step before any was logged)."""
        m = self.metrics()
        return m[-1]["step"] + 1 if m else int(self.meta().get("step", 0))

    @property
    def max_steps(self) -> Optional[int]:
        try:
            return self.config.train.max_steps
        except Exception:  # noqa: BLE001 - a listing must not fail on one bad folder
            return None

    @property
    def last_loss(self) -> Optional[float]:
        """The last applied (not skipped) step's training loss."""
        return next((m["loss"] for m in reversed(self.metrics()) if not m.get("skipped")), None)

    @property
    def events(self) -> dict[str, int]:
        """Guard events by type: ``{"nonfinite": 1, "rollback": 1, ...}``."""
        return dict(Counter(e.get("type", "?") for e in self.event_log()))

    def row(self) -> dict:
        """One line of ``lenslab runs`` (a damaged folder says what is damaged)."""
        try:
            ev = ", ".join(f"{k} {v}" for k, v in sorted(self.events.items())) or "-"
            step, top = self.step, self.max_steps
            last = self.last_loss
        except LensError as e:
            return {"run": str(self.path), "status": f"damaged: {e}", "step": "-",
                    "last loss": "-", "guard events": "-"}
        status = self.status
        if (self.path / META).is_file() and not self.meta():
            status = f"damaged: {self.path / META} is not a JSON object"
        return {"run": str(self.path), "status": status,
                "step": f"{step}/{top}" if top else str(step),
                "last loss": last if last is not None else "-", "guard events": ev}

    def _repr_html_(self) -> str:
        return table_html([self.row()])


def config_diff(a: dict, b: dict, prefix: str = "") -> list[str]:
    """The keys whose values differ between two config dicts: ``["model.n_layer: 2 -> 4"]``."""
    out = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += config_diff(va, vb, f"{prefix}{k}.")
        elif va != vb:
            out.append(f"{prefix}{k}: {va!r} -> {vb!r}")
    return out


def _steps_text(steps: list[int]) -> str:
    if len(steps) <= 6:
        return "steps " + ", ".join(map(str, steps))
    return f"{len(steps)} checkpoints, steps {steps[0]} to {steps[-1]}"


def list_runs(root: Union[str, os.PathLike] = "runs") -> list[Run]:
    """Every run folder at ``root`` or below it, sorted by path."""
    r = Path(root)
    if not r.exists():
        raise RunDirError(f"{r} does not exist")
    if Run.is_run(r):
        return [Run(r)]
    return [Run(c.parent) for c in sorted(r.rglob(CONFIG)) if STAGING not in str(c)]


def check_task(run: Run, accepted: Iterable[str], what: str, hint: str = "") -> None:
    """A one-line :class:`ConfigError` when ``run`` does not train one of the ``accepted`` tasks
    (before anything is loaded): ``what`` names the analysis, ``hint`` what to use instead."""
    accepted = tuple(accepted)
    task = getattr(run.config.data, "task", "?")
    if task not in accepted:
        raise ConfigError(f"{run.path} trains data.task = {task!r}; {what} reads "
                          + ", ".join(accepted) + (f" ({hint})" if hint else ""))


def os_reason(e: OSError) -> str:
    """What an operating-system error says, in one line: ``no space left on device``."""
    text = (e.strerror or str(e)).strip()
    return (text[:1].lower() + text[1:]) if text else type(e).__name__


def _remove_run(path: Path) -> None:
    """Remove a run folder of the same config that never reached a checkpoint."""
    shutil.rmtree(path)


class torch_meta:
    """Build modules on torch's meta device (sizes without memory), importing torch only here."""

    def __enter__(self) -> None:
        import torch

        self._ctx = torch.device("meta")
        self._ctx.__enter__()

    def __exit__(self, *exc: Any) -> None:
        self._ctx.__exit__(*exc)

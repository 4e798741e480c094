"""Atomic, verified checkpoints.

Layout: ``checkpoints/step-{step:06d}/`` with ``model.safetensors``, ``trainer.pt`` and
``MANIFEST.json``. A checkpoint is written into a hidden temporary folder, every file is fsynced,
``MANIFEST.json`` (sha256 and size of every other file) is written last, and only then is the
folder renamed to its final name. So a folder named ``step-*`` is complete unless the disk
lied; loading still re-hashes every file and falls back to the previous checkpoint, with a
warning, when anything does not match.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

if TYPE_CHECKING:  # torch loads with the first checkpoint written or read, not with a listing
    import torch

from lenslab._io import atomic_write_json, fsync_dir, sha256_file

MANIFEST = "MANIFEST.json"
MODEL_FILE = "model.safetensors"
TRAINER_FILE = "trainer.pt"


def step_dir_name(step: int) -> str:
    return f"step-{step:06d}"


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    step: int

    @property
    def model_file(self) -> Path:
        return self.path / MODEL_FILE

    @property
    def trainer_file(self) -> Path:
        return self.path / TRAINER_FILE


class InvalidCheckpoint(Exception):
    """A checkpoint that verified but cannot be used (its trainer state is not lenslab's, its
    weights do not fit the model); the caller falls back to an older one."""


#: What a trainer state must hold to be one (``trainer.pt``).
STATE_KEYS = ("step", "seq", "tokens", "optimizer", "cursor", "guard", "rng")
_OS_ERROR = re.compile(r"\(os error (\d+)\)")


def _as_os_error(e: BaseException, path: Path) -> BaseException:
    """safetensors reports a failed write as ``SafetensorError(... (os error 28))``: the
    OSError it was (no space left on device, read-only file system), so the caller can say so."""
    m = _OS_ERROR.search(str(e))
    if m:
        code = int(m.group(1))
        return OSError(code, os.strerror(code), str(path))
    return e


def write_checkpoint(
    ckpt_root: Path,
    step: int,
    model: "torch.nn.Module",
    trainer_state: dict[str, Any],
    after_model_written: Optional[Callable[[], None]] = None,
    run_id: str = "",
) -> Checkpoint:
    """Write a checkpoint atomically and return it.

    ``run_id`` (the run's config fingerprint) goes into the manifest with the step, so a
    checkpoint copied from another run is never taken for this run's. Failed writes raise the
    OSError they are (a full disk is "No space left on device", not a serializer's message).
    ``after_model_written`` is a test hook (fault injection: a kill in the middle of a write).
    """
    import torch
    from safetensors.torch import save_model

    ckpt_root.mkdir(parents=True, exist_ok=True)
    final = ckpt_root / step_dir_name(step)
    tmp = ckpt_root / f".tmp-{step_dir_name(step)}-{os.getpid()}-{time.monotonic_ns()}"
    tmp.mkdir()
    try:
        try:
            save_model(model, str(tmp / MODEL_FILE))  # handles tied weights
        except Exception as e:  # noqa: BLE001 - re-raised as what it is
            raise _as_os_error(e, tmp / MODEL_FILE) from None
        _fsync_file(tmp / MODEL_FILE)
        if after_model_written is not None:
            after_model_written()
        buf = io.BytesIO()  # serialized in memory: a full disk fails as an OSError on write
        torch.save(trainer_state, buf)
        with open(tmp / TRAINER_FILE, "wb") as f:
            f.write(buf.getbuffer())
            f.flush()
            os.fsync(f.fileno())
        files = {
            name: {"sha256": sha256_file(tmp / name), "bytes": (tmp / name).stat().st_size}
            for name in (MODEL_FILE, TRAINER_FILE)
        }
        atomic_write_json(tmp / MANIFEST, {"step": step, "run": run_id, "files": files,
                                           "format": 2})
        fsync_dir(tmp)
        if final.exists():  # same step written again (e.g. final == periodic): replace it
            shutil.rmtree(final)
        os.replace(tmp, final)
        fsync_dir(ckpt_root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Checkpoint(final, step)


def verify(path: Path, run_id: str = "") -> Optional[str]:
    """``None`` when the checkpoint at ``path`` is complete, matches its manifest and belongs to
    the run ``run_id`` (when given; manifests of format 1 name no run), else why not."""
    man = path / MANIFEST
    if not man.is_file():
        return "no MANIFEST.json (incomplete write)"
    try:
        manifest = json.loads(man.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        return f"unreadable MANIFEST.json ({type(e).__name__})"
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        return "MANIFEST.json is not a lenslab manifest"
    files = manifest["files"]
    step = manifest.get("step")
    if path.name.startswith("step-") and step != _step_of(path.name):
        return f"MANIFEST.json says step {step!r}, the folder is {path.name}"
    owner = manifest.get("run")
    if run_id and owner and owner != run_id:
        return "it belongs to another run (its config differs)"
    for name in (MODEL_FILE, TRAINER_FILE):
        meta = files.get(name)
        if not isinstance(meta, dict) or not isinstance(meta.get("bytes"), int) \
                or not isinstance(meta.get("sha256"), str):
            return f"MANIFEST.json does not describe {name}"
    for name, meta in files.items():
        f = path / name
        if not isinstance(meta, dict) or not f.is_file():
            return f"{name} is missing"
        if f.stat().st_size != meta.get("bytes"):
            return f"{name} has {f.stat().st_size} bytes, manifest says {meta.get('bytes')}"
        if sha256_file(f) != meta.get("sha256"):
            return f"{name} does not match its sha256"
    return None


def _step_of(name: str) -> Optional[int]:
    try:
        return int(name[5:])
    except ValueError:
        return None


def list_checkpoints(ckpt_root: Path) -> list[Checkpoint]:
    """All ``step-*`` folders, newest first (not verified)."""
    out = []
    if ckpt_root.is_dir():
        for p in ckpt_root.iterdir():
            step = _step_of(p.name) if p.name.startswith("step-") else None
            if p.is_dir() and step is not None:
                out.append(Checkpoint(p, step))
    return sorted(out, key=lambda c: c.step, reverse=True)


def latest_verified(
    ckpt_root: Path, before_step: Optional[int] = None, warn: Callable[[str], None] | None = None,
    run_id: str = "",
) -> Optional[Checkpoint]:
    """Newest checkpoint that passes :func:`verify` (optionally with step < ``before_step``).

    Each checkpoint skipped for failing verification is reported through ``warn``.
    """
    warn = warn or (lambda m: warnings.warn(m, stacklevel=2))
    for c in list_checkpoints(ckpt_root):
        if before_step is not None and c.step >= before_step:
            continue
        problem = verify(c.path, run_id)
        if problem is None:
            return c
        warn(f"skipping checkpoint {c.path.name}: {problem}; falling back to an older one")
    return None


def read_checkpoint(ckpt: Checkpoint, map_location: "str | torch.device" = "cpu"
                    ) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(weights, trainer state)`` of a verified checkpoint, touching no model; an
    :class:`InvalidCheckpoint` when either is not what lenslab writes. The trainer state is read
    with ``torch.load(weights_only=True)``: a file that would need to run code is refused."""
    import pickle

    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        weights = load_file(str(ckpt.model_file), device=str(map_location))
    except (SafetensorError, OSError, ValueError) as e:
        raise InvalidCheckpoint(f"{MODEL_FILE} is not readable weights ({type(e).__name__})") from None
    try:
        with warnings.catch_warnings():  # torch's warnings about a foreign file: ours is the message
            warnings.simplefilter("ignore")
            state = torch.load(ckpt.trainer_file, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, AttributeError,
            TypeError, OSError):
        raise InvalidCheckpoint(f"{TRAINER_FILE} is not a lenslab trainer state (refused by "
                                "the safe loader)") from None
    if not isinstance(state, dict) or any(k not in state for k in STATE_KEYS):
        raise InvalidCheckpoint(f"{TRAINER_FILE} is not a lenslab trainer state")
    return weights, state


def load_weights(model: "torch.nn.Module", weights: dict[str, Any]) -> None:
    """Put ``weights`` into ``model`` (tied weights saved once are restored to both names); an
    :class:`InvalidCheckpoint` when they do not fit it, with the model left as it was."""
    own = model.state_dict()
    missing = [k for k in own if k not in weights]
    for k in missing:  # a tied weight: saved under the name it shares storage with
        twin = next((n for n, t in own.items() if n in weights
                     and t.data_ptr() == own[k].data_ptr()), None)
        if twin is None:
            raise InvalidCheckpoint(f"the weights do not fit the model: {k} is missing")
    bad = [k for k, v in weights.items() if k not in own or tuple(v.shape) != tuple(own[k].shape)]
    if bad:
        raise InvalidCheckpoint(f"the weights do not fit the model ({bad[0]})")
    model.load_state_dict(weights, strict=False)


def clean_partial(ckpt_root: Path) -> list[Path]:
    """Remove temporary folders left by a killed writer; returns what was removed."""
    removed = []
    if ckpt_root.is_dir():
        for p in ckpt_root.iterdir():
            if p.is_dir() and p.name.startswith(".tmp-"):
                shutil.rmtree(p, ignore_errors=True)
                removed.append(p)
    return removed


def apply_retention(ckpt_root: Path, keep: int, protect: Optional[Path] = None) -> list[Path]:
    """Keep the newest ``keep`` checkpoints; never delete ``protect`` (the newest verified one)."""
    removed = []
    for c in list_checkpoints(ckpt_root)[keep:]:
        if protect is not None and c.path.resolve() == protect.resolve():
            continue
        shutil.rmtree(c.path, ignore_errors=True)
        removed.append(c.path)
    return removed

"""Atomic, verified checkpoints.

Layout: ``checkpoints/step-{step:06d}/`` with ``model.safetensors``, ``trainer.pt`` and
``MANIFEST.json``. A checkpoint is written into a hidden temporary folder, every file is fsynced,
``MANIFEST.json`` (sha256 and size of every other file) is written last, and only then is the
folder renamed to its final name. So a folder named ``step-*`` is complete unless the disk
lied; loading still re-hashes every file and falls back to the previous checkpoint, with a
warning, when anything does not match.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch loads with the first checkpoint written or read, not with a listing
    import torch

from lenslab._io import atomic_write_json, fsync_dir, sha256_file
from lenslab.errors import CheckpointError

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


def write_checkpoint(
    ckpt_root: Path,
    step: int,
    model: "torch.nn.Module",
    trainer_state: dict[str, Any],
    after_model_written: Optional[Callable[[], None]] = None,
) -> Checkpoint:
    """Write a checkpoint atomically and return it.

    ``after_model_written`` is a test hook (fault injection: a kill in the middle of a write).
    """
    import torch
    from safetensors.torch import save_model

    ckpt_root.mkdir(parents=True, exist_ok=True)
    final = ckpt_root / step_dir_name(step)
    tmp = ckpt_root / f".tmp-{step_dir_name(step)}-{os.getpid()}-{time.monotonic_ns()}"
    tmp.mkdir()
    try:
        save_model(model, str(tmp / MODEL_FILE))  # handles tied weights
        _fsync_file(tmp / MODEL_FILE)
        if after_model_written is not None:
            after_model_written()
        torch.save(trainer_state, tmp / TRAINER_FILE)
        _fsync_file(tmp / TRAINER_FILE)
        files = {
            name: {"sha256": sha256_file(tmp / name), "bytes": (tmp / name).stat().st_size}
            for name in (MODEL_FILE, TRAINER_FILE)
        }
        atomic_write_json(tmp / MANIFEST, {"step": step, "files": files, "format": 1})
        fsync_dir(tmp)
        if final.exists():  # same step written again (e.g. final == periodic): replace it
            shutil.rmtree(final)
        os.replace(tmp, final)
        fsync_dir(ckpt_root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Checkpoint(final, step)


def verify(path: Path) -> Optional[str]:
    """``None`` when the checkpoint at ``path`` is complete and matches its manifest, else why not."""
    man = path / MANIFEST
    if not man.is_file():
        return "no MANIFEST.json (incomplete write)"
    try:
        manifest = json.loads(man.read_text())
        files = manifest["files"]
    except (ValueError, KeyError) as e:
        return f"unreadable MANIFEST.json ({e})"
    for name in (MODEL_FILE, TRAINER_FILE):
        if name not in files:
            return f"MANIFEST.json does not list {name}"
    for name, meta in files.items():
        f = path / name
        if not f.is_file():
            return f"{name} is missing"
        if f.stat().st_size != meta["bytes"]:
            return f"{name} has {f.stat().st_size} bytes, manifest says {meta['bytes']}"
        if sha256_file(f) != meta["sha256"]:
            return f"{name} does not match its sha256"
    return None


def list_checkpoints(ckpt_root: Path) -> list[Checkpoint]:
    """All ``step-*`` folders, newest first (not verified)."""
    out = []
    if ckpt_root.is_dir():
        for p in ckpt_root.iterdir():
            if p.is_dir() and p.name.startswith("step-"):
                try:
                    out.append(Checkpoint(p, int(p.name[5:])))
                except ValueError:
                    continue
    return sorted(out, key=lambda c: c.step, reverse=True)


def latest_verified(
    ckpt_root: Path, before_step: Optional[int] = None, warn: Callable[[str], None] | None = None
) -> Optional[Checkpoint]:
    """Newest checkpoint that passes :func:`verify` (optionally with step < ``before_step``).

    Each checkpoint skipped for failing verification is reported through ``warn``.
    """
    warn = warn or (lambda m: warnings.warn(m, stacklevel=2))
    for c in list_checkpoints(ckpt_root):
        if before_step is not None and c.step >= before_step:
            continue
        problem = verify(c.path)
        if problem is None:
            return c
        warn(f"skipping checkpoint {c.path.name}: {problem}; falling back to an older one")
    return None


def load_checkpoint(
    ckpt: Checkpoint, model: "torch.nn.Module", map_location: "str | torch.device" = "cpu"
) -> dict[str, Any]:
    """Load weights into ``model`` and return the trainer state."""
    import torch
    from safetensors.torch import load_model

    missing, unexpected = load_model(model, str(ckpt.model_file), strict=True, device=str(map_location))
    if missing or unexpected:  # pragma: no cover - strict=True raises first
        raise CheckpointError(f"{ckpt.path}: weights do not match the model")
    return torch.load(ckpt.trainer_file, map_location=map_location, weights_only=True)


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

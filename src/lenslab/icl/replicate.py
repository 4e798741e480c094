"""``lenslab replicate NAME``: published results reproduced on a CPU, each with pass or fail.

A replication is a function ``(out_dir: Path, progress: bool) -> Replication`` registered with
:func:`register`. It trains what it needs into run folders under ``out_dir``, measures, writes
``out_dir/<name>.html`` with its curves, and says whether every target was met.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from lenslab.errors import LensError


@dataclass
class Replication:
    name: str
    passed: bool
    measured: dict = field(default_factory=dict)  # what was measured, with the targets
    shortfalls: list[str] = field(default_factory=list)  # one line per target missed
    html: Path | None = None

    def line(self) -> str:
        if self.passed:
            return f"PASS {self.name}"
        return f"FAIL {self.name}: " + "; ".join(self.shortfalls)


_REGISTRY: dict[str, tuple[Callable[[Path, bool], Replication], str]] = {}
# modules that register replications when imported
_PROVIDERS = ("lenslab.icl.score", "lenslab.icl.algorithms")


def register(name: str, summary: str):
    def deco(fn: Callable[[Path, bool], Replication]):
        _REGISTRY[name] = (fn, summary)
        return fn

    return deco


def available() -> dict[str, str]:
    for mod in _PROVIDERS:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name != mod:
                raise
    return {k: v[1] for k, v in _REGISTRY.items()}


def run(name: str, out_dir: str | Path, progress: bool = True) -> Replication:
    names = available()
    if name not in names:
        raise LensError(f"unknown replication {name!r}; choose one of: {', '.join(sorted(names))}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return _REGISTRY[name][0](out, progress)

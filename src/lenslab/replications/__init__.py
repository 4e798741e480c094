"""``lenslab replicate NAME``: published results reproduced on a CPU, each ending PASS or FAIL.

One module per result: :mod:`~lenslab.replications.induction` (Olsson et al. 2022),
:mod:`~lenslab.replications.lsa_gd` (von Oswald et al. 2023),
:mod:`~lenslab.replications.icl_regression` (Garg et al. 2022) and
:mod:`~lenslab.replications.grokking` (Power et al. 2022; Nanda et al. 2023). Each registers a
function ``(out_dir, progress) -> Replication`` with :func:`register`: it trains what it needs
into run folders under ``out_dir`` (from scratch), measures with the labs, writes
``out_dir/<name>.html`` (the paper's numbers beside lenslab's) and ``<name>.json``, and says
whether every target was met.
"""

from __future__ import annotations

import importlib
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from lenslab._io import atomic_write_json
from lenslab.config import RunConfig
from lenslab.errors import LensError
from lenslab.html import Page, badge, escape
from lenslab.result import dumps_pretty
from lenslab.training import train

#: The modules that register replications when imported.
MODULES = ("induction", "lsa_gd", "icl_regression", "grokking")


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


def register(name: str, summary: str):
    def deco(fn: Callable[[Path, bool], Replication]):
        _REGISTRY[name] = (fn, summary)
        return fn

    return deco


def available() -> dict[str, str]:
    """Every replication's name and one-line summary."""
    for mod in MODULES:
        importlib.import_module(f"lenslab.replications.{mod}")
    return {k: v[1] for k, v in _REGISTRY.items()}


def run(name: str, out_dir: str | Path, progress: bool = True) -> Replication:
    names = available()
    if name not in names:
        raise LensError(f"unknown replication {name!r}; choose one of: {', '.join(sorted(names))}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return _REGISTRY[name][0](out, progress)


# -- shared by the replications --------------------------------------------------------------


def fresh(run_dir: Path) -> None:
    """Replications start from scratch: an earlier run folder of the same name is replaced."""
    if run_dir.exists():
        shutil.rmtree(run_dir)


def train_fresh(cfg: RunConfig, run_dir: Path, progress: bool):
    """Train ``cfg`` into ``run_dir`` from scratch: (result, what was measured, shortfalls)."""
    fresh(run_dir)
    t0 = time.perf_counter()
    res = train(cfg, run_dir, progress=progress)
    measured: dict = {"run": str(run_dir), "steps": res.step,
                      "train_seconds": round(time.perf_counter() - t0, 1)}
    short = [] if res.status == "completed" else [f"training ended {res.status}: {res.message}"]
    return res, measured, short


def json_block(d: dict) -> str:
    return f"<pre>{escape(dumps_pretty(d))}</pre>"


def verdict_html(passed: bool, shortfalls: list[str], targets: str) -> str:
    head = badge("PASS", "ok") if passed else badge("FAIL", "bad")
    body = ("<p>All targets met.</p>" if passed else
            "<ul>" + "".join(f"<li>{escape(s)}</li>" for s in shortfalls) + "</ul>")
    return f"<p>{head} Targets: {escape(targets)}</p>{body}"


def finish(name: str, out: Path, page: Page, measured: dict, short: list[str]) -> Replication:
    page.write(out / f"{name}.html")
    atomic_write_json(out / f"{name}.json", {"measured": measured, "shortfalls": short,
                                             "passed": not short})
    return Replication(name, not short, measured, short, out / f"{name}.html")

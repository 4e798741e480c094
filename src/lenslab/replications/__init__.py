"""``lenslab replicate NAME``: published results reproduced on a CPU, each ending PASS or FAIL.

One module per result: :mod:`~lenslab.replications.induction` (Olsson et al. 2022),
:mod:`~lenslab.replications.lsa_gd` (von Oswald et al. 2023),
:mod:`~lenslab.replications.icl_regression` (Garg et al. 2022),
:mod:`~lenslab.replications.grokking` (Power et al. 2022; Nanda et al. 2023) and
:mod:`~lenslab.replications.shakespeare` (nanoGPT's shakespeare_char on a CPU). Each registers a
function ``(out_dir, progress) -> Replication`` with :func:`register` (those that read public
data also take ``data_dir``, see :func:`data_file`): it trains what it needs
into run folders under ``out_dir`` (from scratch), measures with the labs, writes
``out_dir/<name>.html`` (the paper's numbers beside lenslab's) and ``<name>.json``, and says
whether every target was met.
"""

from __future__ import annotations

import importlib
import inspect
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from lenslab._io import atomic_write_json
from lenslab.config import RunConfig
from lenslab.errors import DataError, LensError
from lenslab.html import Page, badge, escape
from lenslab.result import dumps_pretty
from lenslab.training import train

#: The modules that register replications when imported.
MODULES = ("induction", "lsa_gd", "icl_regression", "grokking", "shakespeare", "addition_format",
           "length_positions", "question_formation")


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


def run(name: str, out_dir: str | Path, progress: bool = True,
        data_dir: str | Path | None = None) -> Replication:
    """Run one replication into ``out_dir``. ``data_dir``: where public data files are (see
    :func:`data_file`); only the replications that read one use it."""
    names = available()
    if name not in names:
        raise LensError(f"unknown replication {name!r}; choose one of: {', '.join(sorted(names))}")
    fn = _REGISTRY[name][0]
    kw = {"data_dir": data_dir} if "data_dir" in inspect.signature(fn).parameters else {}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return fn(out, progress, **kw)


#: Where :func:`data_file` looks when no folder is given: $LENSLAB_DATA, then ``../shared/data``
#: beside the working directory and beside the source checkout.
DATA_ENV = "LENSLAB_DATA"


def data_file(name: str, data_dir: str | Path | None = None) -> Path:
    """A public data file the replications read (e.g. ``tinyshakespeare.txt``): in
    ``data_dir`` when given, else in $LENSLAB_DATA, ``./../shared/data`` or the shared data
    beside this checkout. Missing: a one-line :class:`DataError` saying where to get it."""
    if data_dir is not None:
        dirs = [Path(data_dir).expanduser()]
    else:
        dirs = [Path(os.environ[DATA_ENV]).expanduser()] if os.environ.get(DATA_ENV) else []
        dirs += [Path("..") / "shared" / "data",
                 Path(__file__).resolve().parents[3].parent / "shared" / "data"]
    for d in dirs:
        if (d / name).is_file():
            return d / name
    where = SOURCES.get(name, "")
    raise DataError(f"{name} not found in {', '.join(str(d) for d in dirs)}; "
                    + (f"get it from {where} and " if where else "")
                    + f"pass its folder with --data DIR (or set {DATA_ENV})")


#: Public files and where they come from.
SOURCES = {"tinyshakespeare.txt": "https://raw.githubusercontent.com/karpathy/char-rnn/master/"
                                  "data/tinyshakespeare/input.txt"}


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

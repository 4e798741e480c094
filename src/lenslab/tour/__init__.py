"""``lenslab tour``: a small version of every lab on the CPU, written into one report.html.

One module per chapter (:mod:`training`, :mod:`attention`, :mod:`interventions`, :mod:`icl`,
:mod:`scaling`, :mod:`generalization`), each a function ``chapter(out_dir, page, quick) -> html`` that calls the
trainer and the labs and composes their results; no analysis lives here. A chapter that fails is
shown as failed in the report (with the error) and the others still run; the report is rewritten
after every chapter, so an interrupted tour still leaves what it finished.
"""

from __future__ import annotations

import time
import traceback
from pathlib import Path
from typing import Callable

from rich.console import Console

from lenslab.errors import LensError
from lenslab.html import Page, escape
from lenslab.tour import (
    attention,
    generalization,
    icl,
    interventions,
    scaling,
    training,
)

Chapter = tuple[str, str, Callable[[Path, Page, bool], str]]  # (anchor, title, builder)


def chapters() -> list[Chapter]:
    """The tour's chapters in order: ``(anchor, title, builder)``, one module each."""
    return [
        ("training", "Training under guard", training.chapter),
        ("attention", "Inside the model", attention.chapter),
        ("interventions", "Does it matter?", interventions.chapter),
        ("icl", "Learning in context", icl.chapter),
        ("scaling", "Scaling", scaling.chapter),
        ("generalization", "Generalization", generalization.chapter),
    ]


def run_tour(out_dir: str | Path = "runs/tour", quick: bool = False) -> Path:
    con = Console(stderr=True)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    page = Page("lenslab tour", "A small version of every lab, run on this machine's CPU. "
                "Every number here was measured by this run.")
    report = out / "report.html"
    failures = []
    t_all = time.perf_counter()
    for anchor, title, build in chapters():
        con.rule(f"[bold]{title}")
        t0 = time.perf_counter()
        try:
            body = build(out, page, quick)
        except Exception as e:  # a failed chapter must not cost the others
            failures.append(title)
            body = (f"<div class='note'>This chapter failed: {escape(type(e).__name__)}: "
                    f"{escape(e)}</div><pre>{escape(traceback.format_exc())}</pre>")
            con.print(f"[bold red]chapter failed[/]: {title}: {e}")
        body += f"<p class='caption'>Chapter time: {time.perf_counter() - t0:.1f} s.</p>"
        page.add(title, body, anchor)
        page.write(report)
    page.subtitle += f" Total time: {time.perf_counter() - t_all:.0f} s."
    page.write(report)
    if failures:
        err = LensError(f"tour chapters failed: {', '.join(failures)}; see {report}")
        err.exit_code = 1
        raise err
    return report

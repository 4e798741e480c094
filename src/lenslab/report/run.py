"""``RUN/report.html``: one run's page, built from its folder alone.

The training chapter (loss curve with guard events), then every result in ``analysis/`` read
back through the registry of result kinds (:data:`lenslab.result.KINDS`), in the registry's
order. The page knows no lab: a new kind of result appears here by being registered. A file
that cannot be read is shown as a note saying why, and the rest of the page is still written.
"""

from __future__ import annotations

from pathlib import Path

from lenslab.errors import LensError
from lenslab.html import Page, escape
from lenslab.report.training import training_chapter
from lenslab.result import KINDS, command_caption, read_result
from lenslab.run import Run


def _order(path: Path) -> tuple[int, str]:
    kinds = list(KINDS)
    return (kinds.index(path.stem) if path.stem in KINDS else len(kinds), path.name)


def write_run_report(run_dir: str | Path) -> Path:
    """Write ``RUN/report.html`` and return its path."""
    run = Run.open(run_dir)
    with run.lock("writing the report"):
        return _write(run)


def _write(run: Run) -> Path:
    page = Page(f"Run {run.path.name}", f"Everything on this page was read from {run.path}.")
    page.add("Training", training_chapter(run.path), "training")
    files = sorted(run.analysis_dir.glob("*.json"), key=_order) if run.analysis_dir.is_dir() else []
    for f in files:
        if f.stem not in KINDS:
            continue  # not a result (a cache, a table's metadata)
        try:
            res = read_result(f)
            body = res.to_html() + command_caption(res.command)
            title = res.heading()
            page.include(*res.assets())
        except (LensError, KeyError, TypeError, ValueError, IndexError) as e:
            title = f.stem  # an older, foreign or damaged file: say so, keep the rest
            body = (f"<div class='note'>{escape(f)} could not be read: "
                    f"{escape(type(e).__name__)}: {escape(e)}</div>")
        page.add(title, body, f"analysis-{f.stem}")
    page.write(run.report_file)
    return run.report_file

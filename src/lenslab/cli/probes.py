"""The generalization probes' command: probe."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from lenslab.cli.app import app, console, wrote
from lenslab.errors import LensError
from lenslab.html import fmt


@app.command()
def probe(
    run_dir: Path = typer.Argument(
        ..., help="run folder (repeat, sequence, modular_addition or addition), or a sweep folder"),
    out_dir: Optional[Path] = typer.Option(
        None, "--out", "-o", help="where probe.json/html/png go (default RUN_DIR/analysis)"),
    step: Optional[int] = typer.Option(None, "--step", help="checkpoint to probe (default: newest)"),
    lengths: Optional[str] = typer.Option(
        None, "--lengths", help="sequence runs: lengths to ask, e.g. 1-24 or 4,8,16"),
    variant: str = typer.Option("swap", "--variant", help="addition runs: the counterfactual variant"),
    n: Optional[int] = typer.Option(None, "--n", min=8, help="held-out questions (per length)"),
    checkpoints: bool = typer.Option(
        False, "--checkpoints", help="probe every verified checkpoint of the run (when did it "
        "take its rule?)"),
):
    """Did the model learn the rule we meant, or a shortcut? The probe for the run's task:
    two rules (repeat), length generalization (sequence), counterfactual variants (additions);
    on a sweep folder, every completed run against the sweep's axes; with --checkpoints, every
    checkpoint of the run."""
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    from lenslab.probes import (
        is_sweep_dir,
        parse_lengths,
        probe_checkpoints,
        probe_sweep,
    )
    from lenslab.probes import probe as do_probe
    from lenslab.result import write_result
    from lenslab.run import Run

    kw = {"lengths": parse_lengths(lengths) if lengths else None, "variant": variant, "n": n}
    sweep = is_sweep_dir(run_dir)
    if sweep or checkpoints:
        if step is not None:
            raise LensError("--step names one checkpoint; drop it to probe "
                            + ("every run of the sweep" if sweep else "every checkpoint"))
        if sweep and checkpoints:
            raise LensError(f"{run_dir} is a sweep folder: --checkpoints takes one run folder")
        sw = (probe_sweep if sweep else probe_checkpoints)(run_dir, progress=True, **kw)
        path = write_result(sw, out_dir or (run_dir if sweep else Run(run_dir)))
        t = Table(title=f"{sw.probe} probe on {len(sw.rows)} {sw.over}", box=box.SIMPLE_HEAD)
        cols = sw.columns()
        for c, label in cols:
            t.add_column(label, overflow="fold" if c in sw.axes else "ellipsis",
                         justify="left" if c in sw.axes or c == "verdict" else "right")
        for r in sw.rows:
            t.add_row(*(escape(fmt(r[c], 3)) for c, _ in cols))
        console.print(t)
        wrote(path, path.with_suffix(".csv"), path.with_suffix(".html"), path.with_suffix(".png"))
        return
    res = do_probe(run_dir, step, **kw)
    path = write_result(res, out_dir if out_dir is not None else Run(run_dir))
    console.print(f"{res.probe} probe at step {res.step}: [bold]{escape(res.verdict)}[/]: "
                  f"{escape(res.summary)}", highlight=False)
    if getattr(res, "finding", ""):
        console.print(escape(res.finding), highlight=False)
    wrote(path, path.with_suffix(".html"), path.with_suffix(".png"))

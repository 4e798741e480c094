"""Commands of the in-context learning lab and the replications: icl, compare, algorithms,
replicate."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from lenslab.cli.app import app, console, wrote


@app.command()
def icl(
    run_dir: Path = typer.Argument(..., help="run folder (token task)"),
    out_dir: Path = typer.Option(..., "--out", "-o", help="folder for icl.json and icl.html"),
    early: Optional[int] = typer.Option(None, help="early position (default: 50/512 of the context)"),
    late: Optional[int] = typer.Option(None, help="late position (default: 500/512 of the context)"),
):
    """ICL score, per-position loss and the induction phase change over the run's checkpoints."""
    from lenslab.icl.score import measure_icl
    from lenslab.result import write_result

    rep = measure_icl(run_dir, early, late, progress=True)
    path = write_result(rep, out_dir)
    s = rep.score
    console.print(f"ICL score {s['icl_score']:+.4f} (loss at {s['late']}: {s['loss_late']:.4f}, "
              f"at {s['early']}: {s['loss_early']:.4f})")
    if rep.phase is not None:
        ph = rep.phase
        console.print("phase change: " + (f"from step {ph.jump_from} (< {ph.low}) to step {ph.jump_to} "
                                      f"(> {ph.high}), steepest at {ph.jump_step}" if ph.detected
                                      else "not detected"))
    wrote(path, path.with_suffix(".html"), path.with_suffix(".png"))


@app.command()
def compare(
    run_a: Path = typer.Argument(..., help="first run folder"),
    run_b: Path = typer.Argument(..., help="second run folder (same task and seed)"),
    out_dir: Optional[Path] = typer.Option(None, "--out", "-o", help="write compare.json/html here"),
):
    """Per-position loss of two runs side by side (e.g. transformer against LSTM)."""
    from rich.table import Table

    from lenslab.icl.score import compare as do_compare

    cmp_ = do_compare(run_a, run_b)
    t = Table()
    for c in ("run", "params", "loss early", "loss late", "ICL score"):
        t.add_column(c)
    for n in cmp_.names:
        sc = cmp_.scores[n]
        t.add_row(n, f"{cmp_.params[n]:,}", f"{sc['loss_early']:.3f}", f"{sc['loss_late']:.3f}",
                  f"{sc['icl_score']:+.3f}")
    console.print(t)
    if out_dir is not None:
        from lenslab.result import write_result

        path = write_result(cmp_, out_dir)
        wrote(path, path.with_suffix(".html"), path.with_suffix(".png"))


@app.command()
def replicate(
    name: str = typer.Argument(
        ..., help="induction | lsa-gd | icl-regression | grokking | shakespeare-char | all"),
    out_dir: Path = typer.Option(Path("runs/replicate"), "--out", "-o"),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
    data: Optional[Path] = typer.Option(
        None, "--data", help="folder with the public data files (tinyshakespeare.txt); default "
        "$LENSLAB_DATA, else ../shared/data"),
):
    """Reproduce a published result on this machine; ends with PASS NAME or FAIL NAME: why."""
    from lenslab import replications as R
    from lenslab.errors import DataError

    names = sorted(R.available()) if name == "all" else [name]
    failed = False
    for n in names:
        try:
            res = R.run(n, out_dir, progress=not quiet, data_dir=data)
        except DataError as e:
            if len(names) == 1:
                raise
            print(f"SKIP {n}: {e}", flush=True)  # its input is missing; the others still run
            continue
        print(res.line(), flush=True)
        failed |= not res.passed
    raise typer.Exit(1 if failed else 0)


@app.command()
def algorithms(
    run_dir: Path = typer.Argument(..., help="an in-context regression run folder"),
    out_dir: Optional[Path] = typer.Option(
        None, "--out", "-o", help="where algorithms.json/html go (default RUN_DIR/analysis)"),
    problems: int = typer.Option(500, "--problems", min=10, help="held-out problems per k"),
):
    """Which algorithm runs in context: per-k distances to least squares, ridge, k-NN,
    averaging and one GD step, and the verdict."""
    from rich.table import Table

    from lenslab.icl.algorithms import run_algorithms

    res = run_algorithms(run_dir, out_dir, n_problems=problems)
    t = Table(title=f"{res.model_name} at step {res.step}: closest algorithm per k")
    for c in ("k", "model error", "closest", "distance", "runner-up", "margin", "by weights",
              "by sensitivity"):
        t.add_column(c, justify="right" if c in ("k", "model error", "distance", "margin") else "left")
    for v in res.verdicts:
        t.add_row(str(v["k"]), f"{v['model_error']:.3f}", v["closest"], f"{v['distance']:.4f}",
                  v["runner_up"], f"{v['margin']:.4f}", v["closest_by_weights"],
                  v["closest_by_sensitivity"] or "-")
    console.print(t)
    where = out_dir if out_dir is not None else run_dir / "analysis"
    wrote(where / "algorithms.json", "algorithms.html", "algorithms.png")

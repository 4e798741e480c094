"""Commands of the scaling and emergence lab: ``sweep``, ``fit``, ``diagnose``, ``emergence``.

Each command is a thin shell over the
Python API (:func:`lenslab.scaling.sweep.run_sweep`, :func:`lenslab.scaling.fit.fit_table`,
:func:`lenslab.scaling.diagnose.diagnose`, :func:`lenslab.emergence.analyze_csv`): it prints a
short rich summary; the analyses write JSON (atomic), a self-contained HTML page and a PNG into
``--out``, the sweep its run folders and ``results.csv``/``results.json``. Bad input raises
:class:`lenslab.errors.LensError` subclasses; the app's entry point prints their one-line
message and exits with code 2. Warnings about skipped rows are printed on stderr.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Callable, Optional

import typer
from rich.markup import escape
from rich.table import Table as RichTable

from lenslab.cli.app import app, console, say, wrote
from lenslab.errors import ConfigError
from lenslab.html import compact, fmt


def _run_with_warnings(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` and print every warning it raised on stderr (one line each)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = fn()
    for w in caught:
        say("warning:", "yellow", w.message)
    return result


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a folder")


def fit_command(results: Path, form: str = "power", x: Optional[str] = None, y: str = "loss",
                holdout_last: int = 0, bootstrap: int = 200, out: Path = Path("fit"), tie: Optional[bool] = None,
                max_breaks: int = 2, level: float = 0.95, seed: int = 0,
                base: Optional[str] = None, where: Optional[list[str]] = None,
                window: int = 5) -> dict[str, Any]:
    """``lenslab fit``: fit a law to a results table; write ``fit.json``, ``fit.html``, ``fit.png``."""
    from lenslab.result import write_result
    from lenslab.scaling import fit_table

    _check_out(out)
    res = _run_with_warnings(lambda: fit_table(results, form, x=x, y=y, holdout_last=holdout_last,
                                               bootstrap=bootstrap, level=level, seed=seed, tie=tie,
                                               max_breaks=max_breaks, base=base, where=where or (),
                                               window=window))
    res.source = str(results)
    write_result(res, out)
    d = res.to_dict()

    t = RichTable(title=f"{form} fit of {res.y_name} ({res.n_points} points)")
    for col in ("parameter", "value", f"{int(level * 100)}% interval"):
        t.add_column(col, justify="left" if col == "parameter" else "right")
    for row in res.summary_rows():
        iv = "-" if row["low"] != row["low"] else f"[{fmt(row['low'])}, {fmt(row['high'])}]"
        t.add_row(row["parameter"], fmt(row["value"]), iv)
    console.print(t)
    if "holdout" in d:
        h = d["holdout"]
        console.print(f"held out {h['n']} largest points: RMSLE {h['rmsle']:.4g}, "
                   f"mean relative error {h['mean_relative_error']:+.2%}", highlight=False)
    if "compute_optimal" in d:
        co = d["compute_optimal"]
        console.print(f"compute-optimal: N ~ C^{co['exponent_a']:.3f}, {co['tokens_per_parameter']:.3g} tokens "
                   f"per parameter at C = {co['reference_compute']:.3g}", highlight=False)
    if d.get("cross_check") and "window" in d:
        console.print(f"{d['window']['rule']}; cross-check by variable projection of the "
                      f"Chinchilla form: alpha {d['cross_check']['alpha']:.3f}, beta "
                      f"{d['cross_check']['beta']:.3f}, a_N {d['cross_check']['a_N']:.3f}",
                      highlight=False, markup=False)
    if d.get("selection"):
        chosen = next(r for r in d["selection"] if r["chosen"])
        console.print(f"breaks chosen: {chosen['breaks']} (of {len(d['selection']) - 1} tried)", highlight=False)
    wrote(out / "fit.json", "fit.html", "fit.png")
    return d


def diagnose_command(source: Path, out: Optional[Path] = None, x: Optional[str] = None, y: Optional[str] = None,
                     bootstrap: int = 200, seed: int = 0, where: Optional[list[str]] = None) -> dict[str, Any]:
    """``lenslab diagnose``: does the law bend, and which recorded causes are supported?"""
    from lenslab.result import write_result
    from lenslab.scaling import diagnose

    if out is not None:
        _check_out(out)
    dg = _run_with_warnings(lambda: diagnose(source, x=x, y=y, n_boot=bootstrap, seed=seed, where=where or ()))
    d = dg.to_dict()
    b = dg.bend
    colour = {"single law rejected": "red", "single law holds": "green"}.get(b.status, "yellow")
    console.print(f"[bold {colour}]{escape(b.status)}[/]: {escape(b.reason)}", highlight=False)
    t = RichTable(title="plausible causes")
    for col in ("cause", "status", "evidence"):
        t.add_column(col)
    for c in dg.checks:
        style = {"supported": "red", "not supported": "green"}.get(c.status, "yellow")
        t.add_row(escape(c.title), f"[{style}]{escape(c.status)}[/]", escape(c.evidence))
    console.print(t)
    if out is not None:
        write_result(dg, out)
        wrote(out / "diagnosis.json", "diagnosis.html", "diagnosis.png")
    return d


def emergence_command(predictions: Path, out: Path, bootstrap: int = 1000, tokens: str = "char",
                      seed: int = 0, scale: str = "scale", metric: Optional[list[str]] = None,
                      where: Optional[list[str]] = None) -> dict[str, Any]:
    """``lenslab emergence``: metric curves by scale and the verdict; write ``emergence.*``."""
    from lenslab.emergence import analyze_csv
    from lenslab.result import write_result

    _check_out(out)
    if tokens not in ("char", "whitespace"):
        raise ConfigError(f"--tokens must be char or whitespace, not {tokens!r}")
    res = _run_with_warnings(lambda: analyze_csv(predictions, tokens=tokens, n_boot=bootstrap, seed=seed,
                                                 scale=scale, metrics=metric or (), where=where or ()))
    res.source = str(predictions)
    write_result(res, out)
    d = res.to_dict()
    colour = {"metric artifact": "yellow", "emergent": "green"}.get(res.verdict, "white")
    console.print(f"[bold {colour}]{escape(res.verdict)}[/]: {escape(res.reason)}", highlight=False)
    t = RichTable(title=f"{res.scales.size} scales")
    for col in ("metric", "kind", "shape", "forecast surprise", "breakthroughness", "linearity"):
        t.add_column(col, justify="left" if col in ("metric", "kind", "shape") else "right")
    for r in res.summary_rows():
        sur = fmt(r["surprise"])
        if r["surprise_low"] == r["surprise_low"]:
            sur += f" [{fmt(r['surprise_low'])}, {fmt(r['surprise_high'])}]"
        t.add_row(r["metric"], r["kind"], r["shape"], sur, fmt(r["breakthroughness"]), fmt(r["linearity"]))
    console.print(t)
    wrote(out / "emergence.json", "emergence.html", "emergence.png")
    return d


def sweep_status_command(sweep: Path, out: Path) -> int:
    """``lenslab sweep --status``: each grid point's state, step and Slurm job; starts nothing."""
    from lenslab.scaling.sweep import sweep_status

    rows = sweep_status(sweep, out)
    t = RichTable(title=f"{len(rows)} grid points in {out}")
    for c in ("name", "status", "step", "job", "queue"):
        t.add_column(c, justify="right" if c == "step" else "left", overflow="fold")
    for r in rows:
        t.add_row(r["name"], r["status"], f"{r['step']}/{r['steps']}", r["job"] or "-",
                  r["queue"] or "-")
    console.print(t)
    return 0


def sweep_command(sweep: Path, out: Path, workers: Optional[int] = None, threads: Optional[int] = None,
                  inject: Optional[str] = None, quiet: bool = False, executor: Optional[str] = None,
                  wait: bool = True) -> int:
    """``lenslab sweep``: train (or resume) every grid point, write the results table; the exit code."""
    from lenslab.scaling import run_sweep

    res = run_sweep(sweep, out, inject=inject, progress=not quiet, workers=workers, threads=threads,
                    executor=executor, wait=wait)
    show_status = any(r["status"] != "completed" for r in res.rows)
    cols = [c for c in ("name", "status", "N", "D", "loss", "val_loss", "exact_match", "digit_acc", "epochs",
                        "guard_events") if any(c in r for r in res.rows) and (c != "status" or show_status)]
    heads = {"exact_match": "EM", "digit_acc": "digit acc", "guard_events": "guard"}
    t = RichTable(title=f"{len(res.rows)} runs ({res.elapsed_s:.0f} s)")
    for c in cols:
        t.add_column(heads.get(c, c), justify="left" if c in ("name", "status") else "right",
                     no_wrap=c != "name", overflow="fold")  # long names (grid.set) fold
    for r in res.rows:
        t.add_row(*(compact(r.get(c, float("nan"))) if c in ("N", "D") else fmt(r.get(c, float("nan")))
                    for c in cols))
    console.print(t)
    for name, msg in res.messages.items():
        say(f"{name}:", "yellow", msg)
    extra = f", {res.predictions.name}" if res.predictions is not None else ""
    wrote(out / "results.csv", f"results.json{extra}")
    if res.submitted:
        say("submitted:", "green", f"{len(res.submitted)} runs are queued on Slurm; `lenslab sweep "
            f"{sweep} --out {out} --status` shows them, the same command without --status "
            "collects the results (and resubmits what was lost)")
    if res.exit_code == 75:
        say("interrupted:", "yellow", f"continue with `lenslab sweep {sweep} --out {out}`")
    elif res.exit_code:
        say("unfinished:", "bold red", f"{', '.join(res.unfinished)}; rerun "
            f"`lenslab sweep {sweep} --out {out}` to resume them")
    return res.exit_code


@app.command("sweep")
def sweep(
    sweep_file: Path = typer.Argument(..., help="sweep TOML: base run config and grid (see "
                                      "lenslab.scaling.sweep); with --status, a sweep folder"),
    out: Optional[Path] = typer.Option(None, "--out", "-o",
                                       help="sweep folder: runs/, results.csv, results.json"),
    workers: Optional[int] = typer.Option(None, "--workers", help="runs at the same time (overrides the file)"),
    threads: Optional[int] = typer.Option(None, "--threads", help="torch threads per run (overrides the file)"),
    inject: Optional[str] = typer.Option(
        None, "--inject", help="faults for tests: kill@20 (every new run) or NAME=kill@20;NAME2=nan@5"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress display"),
    executor: Optional[str] = typer.Option(
        None, "--executor", help="local | slurm (overrides executor.kind of the sweep file)"),
    wait: bool = typer.Option(True, "--wait/--no-wait",
                              help="slurm: wait for the array (default), or return once submitted"),
    status: bool = typer.Option(False, "--status", help="show each grid point's state and Slurm "
                                "job, start nothing"),
):
    """Train a grid of runs (resumable; several at once, or as a Slurm job array) and write the
    results table."""
    if out is None:
        if status and (sweep_file / "sweep.toml").is_file():  # the folder keeps its sweep
            out, sweep_file = sweep_file, sweep_file / "sweep.toml"
        else:
            raise ConfigError("--out is needed: the sweep folder to write (with --status, a "
                              "sweep folder alone will do)")
    if status:
        sweep_status_command(sweep_file, out)
        return
    code = sweep_command(sweep_file, out, workers, threads, inject, quiet, executor, wait)
    if code:
        raise typer.Exit(code)

@app.command("fit")
def fit(
    results: Path = typer.Argument(..., help="results CSV, or a sweep folder with results.csv"),
    form: str = typer.Option("power", "--form",
                             help="power | chinchilla | broken | data-constrained | isoflop"),
    x: Optional[str] = typer.Option(
        None, "--x", help="size column (default N; chinchilla: N,D; data-constrained: N,D,U; "
        "isoflop: N,C)"),
    y: str = typer.Option("loss", "--y", help="loss column"),
    holdout_last: int = typer.Option(
        0, "--holdout-last", help="fit without the K largest points and report the error on them"),
    bootstrap: int = typer.Option(200, "--bootstrap", help="bootstrap resamples for intervals (0: none)"),
    out: Path = typer.Option(..., "--out", "-o", help="folder for fit.json, fit.html, fit.png"),
    tie: Optional[bool] = typer.Option(
        None, "--tie/--no-tie", help="one exponent, alpha = beta (default: untied for chinchilla, "
        "tied for data-constrained's fitted base, as Muennighoff et al.)"),
    base: Optional[str] = typer.Option(
        None, "--base", help="data-constrained: fixed base law A=..,B=..,E=..,alpha=..,beta=.. "
        "(default: fitted to the runs with at most one epoch)"),
    max_breaks: int = typer.Option(2, "--max-breaks", help="broken: most breaks to try"),
    level: float = typer.Option(0.95, "--level", help="interval level"),
    seed: int = typer.Option(0, "--seed", help="bootstrap seed"),
    where: Optional[list[str]] = typer.Option(
        None, "--where", help="keep rows with COLUMN=VALUE, COLUMN!=VALUE or COLUMN~REGEX (repeat)"),
    window: int = typer.Option(
        5, "--window", help="isoflop: distinct sizes around each budget's best run that its "
        "parabola is fitted to (0: the whole profile)"),
):
    """Fit a scaling law (power, Chinchilla, broken, data-constrained; or isoFLOP minima) with
    bootstrap intervals."""
    fit_command(results, form, x, y, holdout_last, bootstrap, out, tie, max_breaks, level, seed,
                base, where, window)

@app.command("diagnose")
def diagnose(
    source: Path = typer.Argument(..., help="sweep folder (results.csv) or results CSV"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="folder for diagnosis.json/.html/.png"),
    x: Optional[str] = typer.Option(None, "--x", help="size column (default N)"),
    y: Optional[str] = typer.Option(None, "--y", help="loss column (default loss, else val_loss)"),
    bootstrap: int = typer.Option(200, "--bootstrap", help="bootstrap resamples for the confidence"),
    seed: int = typer.Option(0, "--seed"),
    where: Optional[list[str]] = typer.Option(
        None, "--where", help="keep rows with COLUMN=VALUE, COLUMN!=VALUE or COLUMN~REGEX (repeat)"),
):
    """Where does the scaling law bend, and which causes do the runs' records support?"""
    diagnose_command(source, out, x, y, bootstrap, seed, where)

@app.command("emergence")
def emergence(
    predictions: Path = typer.Argument(..., help="CSV: scale, example, target, prediction[, logprob, loss]"),
    out: Path = typer.Option(..., "--out", "-o", help="folder for emergence.json/.html/.png"),
    bootstrap: int = typer.Option(1000, "--bootstrap", help="bootstrap resamples over examples"),
    tokens: str = typer.Option("char", "--tokens", help="token unit for per-token metrics: char | whitespace"),
    seed: int = typer.Option(0, "--seed"),
    scale: str = typer.Option("scale", "--scale", help="metric tables: the scale column (numbers, "
                              "or model names with a size such as pythia-1.4b)"),
    metric: Optional[list[str]] = typer.Option(
        None, "--metric", help="metric tables: COLUMN:discrete|continuous[:higher|lower] (repeat)"),
    where: Optional[list[str]] = typer.Option(
        None, "--where", help="keep rows with COLUMN=VALUE, COLUMN!=VALUE or COLUMN~REGEX (repeat)"),
):
    """Emergent ability or metric artifact? Metric curves across scales and the verdict."""
    emergence_command(predictions, out, bootstrap, tokens, seed, scale, metric, where)

"""The ``lenslab`` command: a thin shell over the Python API.

Exit codes: 0 done, 1 a replication or check failed, 2 bad input (one-line message, no
traceback), 3 the guard gave up, 75 preempted by SIGTERM/SIGINT with a checkpoint written
(resumable).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from lenslab.errors import LensError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="lenslab: measure what happens inside transformers.",
    context_settings={"help_option_names": ["-h", "--help"]},
)
out = Console()
err = Console(stderr=True, soft_wrap=True)


@app.command()
def init(task: str = typer.Argument(
        ..., help="induction | modular_addition | addition | text | lstm | icl_regression | repeat "
        "| sequence")):
    """Print a complete, commented example config for TASK (TOML) to stdout."""
    from lenslab.examples import example_toml

    sys.stdout.write(example_toml(task))


@app.command()
def train(
    config: Path = typer.Argument(..., help="config TOML (see `lenslab init TASK`)"),
    out_dir: Path = typer.Option(..., "--out", "-o", help="run folder to create"),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", min=1, help="override train.max_steps"),
    inject: Optional[str] = typer.Option(
        None, "--inject", help="faults for tests and demos: nan@30,spike@40-45,kill@50"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar"),
    set_: Optional[list[str]] = typer.Option(
        None, "--set", help="override a config value: SECTION.KEY=VALUE, e.g. model.n_layer=4 (repeat)"),
):
    """Train a new run into a run folder (guarded; resumable; torchrun for several GPUs)."""
    import lenslab

    res = lenslab.train(config, out_dir, max_steps=max_steps, inject=inject, progress=not quiet,
                        overrides=set_ or ())
    _finish(res)


@app.command()
def resume(
    run_dir: Path = typer.Argument(..., help="run folder"),
    inject: Optional[str] = typer.Option(None, "--inject", help="faults to inject from here on"),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
):
    """Continue a run from its newest verified checkpoint."""
    import lenslab

    res = lenslab.resume(run_dir, inject=inject, progress=not quiet)
    _finish(res)


def _finish(res) -> None:
    import os

    if int(os.environ.get("RANK", "0")) != 0:
        raise typer.Exit(res.exit_code)
    if res.status == "completed":
        ev = {k: v for k, v in res.events.items() if v}
        err.print(f"[green]done[/] {res.run_dir} at step {res.step}, last loss "
                  f"{res.final_loss:.4f}" + (f", guard events {ev}" if ev else ""), highlight=False)
    else:
        err.print(f"[bold red]{res.status}[/]: {res.message}", highlight=False)
    raise typer.Exit(res.exit_code)


@app.command()
def runs(root: Path = typer.Argument(Path("runs"), help="folder of run folders")):
    """List run folders with status, step, last loss and guard-event counts."""
    from rich.table import Table

    from lenslab.run import list_runs

    infos = list_runs(root)
    if not infos:
        err.print(f"no runs under {root}")
        return
    t = Table(show_lines=False, title=f"runs under {root}")
    for col in ("run", "status", "step", "last loss", "guard events"):
        t.add_column(col, justify="right" if col in ("step", "last loss") else "left",
                     overflow="fold", no_wrap=col in ("step", "last loss"))
    for info in infos:
        row = info.row()
        try:
            row["run"] = str(info.path.relative_to(root)) if info.path != root else str(root)
        except ValueError:
            pass
        loss = row["last loss"]
        row["last loss"] = f"{loss:.4f}" if isinstance(loss, float) else str(loss)
        t.add_row(*(str(row[c]) for c in ("run", "status", "step", "last loss", "guard events")))
    out.print(t)


@app.command()
def report(run_dir: Path = typer.Argument(..., help="run folder")):
    """Write RUN_DIR/report.html: the loss curve with guard events and the run's analyses."""
    from lenslab.report.run import write_run_report

    err.print(f"[green]report[/] {write_run_report(run_dir)}")


@app.command()
def tour(
    out_dir: Path = typer.Option(Path("runs/tour"), "--out", "-o", help="where the tour writes"),
    quick: bool = typer.Option(False, "--quick", help="shorter training (for smoke tests)"),
):
    """Run a small version of every lab on the CPU and write one self-contained report.html."""
    from lenslab.tour import run_tour

    path = run_tour(out_dir, quick=quick)
    err.print(f"[green]report[/] {path}")


def _register_optional() -> None:
    """Labs register their own commands; a lab that is absent leaves the core usable."""
    import importlib

    for mod in ("lenslab.scaling.commands", "lenslab.attention.commands"):
        try:
            m = importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name != mod:  # the lab exists but is broken: say so, loudly
                raise
            continue
        m.register(app)


_register_optional()


@app.command()
def heads(
    model: str = typer.Argument(..., help="run folder, local HF folder, hub name, or `minilm`"),
    out_dir: Path = typer.Option(..., "--out", "-o", help="folder for heads.json and heads.html"),
    prompts: Optional[Path] = typer.Option(None, "--prompts", help="your prompts, one per line"),
):
    """Classify every attention head against re-initialised and permutation nulls."""
    from rich.table import Table

    from lenslab.attention.lab import run_heads

    report = run_heads(model, out_dir, prompts, command="lenslab " + " ".join(sys.argv[1:]))
    counts: dict[str, int] = {}
    for h in report.heads:
        counts[h["class"]] = counts.get(h["class"], 0) + 1
    t = Table(title=f"{report.model}: {report.n_layer} layers x {report.n_head} heads")
    t.add_column("class")
    t.add_column("heads", justify="right")
    t.add_column("examples")
    for c, n in sorted(counts.items(), key=lambda kv: -kv[1]):
        ex = ", ".join(f"L{h['layer']}H{h['head']}" for h in report.heads if h["class"] == c)
        t.add_row(c, str(n), ex[:60] + ("..." if len(ex) > 60 else ""))
    out.print(t)
    err.print(f"[green]wrote[/] {out_dir / 'heads.json'} and {out_dir / 'heads.html'}")


@app.command()
def icl(
    run_dir: Path = typer.Argument(..., help="run folder (token task)"),
    out_dir: Path = typer.Option(..., "--out", "-o", help="folder for icl.json and icl.html"),
    early: Optional[int] = typer.Option(None, help="early position (default: 50/512 of the context)"),
    late: Optional[int] = typer.Option(None, help="late position (default: 500/512 of the context)"),
):
    """ICL score, per-position loss and the induction phase change over the run's checkpoints."""
    from lenslab.icl.score import measure_icl, write_icl

    rep = measure_icl(run_dir, early, late, progress=True)
    path = write_icl(rep, out_dir, "lenslab " + " ".join(sys.argv[1:]))
    s = rep.score
    out.print(f"ICL score {s['icl_score']:+.4f} (loss at {s['late']}: {s['loss_late']:.4f}, "
              f"at {s['early']}: {s['loss_early']:.4f})")
    if rep.phase is not None:
        ph = rep.phase
        out.print("phase change: " + (f"from step {ph.jump_from} (< {ph.low}) to step {ph.jump_to} "
                                      f"(> {ph.high}), steepest at {ph.jump_step}" if ph.detected
                                      else "not detected"))
    err.print(f"[green]wrote[/] {path}")


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
    out.print(t)
    if out_dir is not None:
        from lenslab._io import atomic_write_json
        from lenslab.html import Page

        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out_dir / "compare.json", cmp_.to_dict())
        page = Page("Per-position loss", " vs ".join(cmp_.names))
        page.add("Curves", cmp_.to_html())
        page.write(out_dir / "compare.html")
        err.print(f"[green]wrote[/] {out_dir / 'compare.html'}")


@app.command()
def replicate(
    name: str = typer.Argument(..., help="induction | lsa-gd | icl-regression | grokking | all"),
    out_dir: Path = typer.Option(Path("runs/replicate"), "--out", "-o"),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
):
    """Reproduce a published result on this machine; ends with PASS NAME or FAIL NAME: why."""
    from lenslab.icl import replicate as R

    names = sorted(R.available()) if name == "all" else [name]
    failed = False
    for n in names:
        res = R.run(n, out_dir, progress=not quiet)
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

    res = run_algorithms(run_dir, out_dir, n_problems=problems,
                         command="lenslab " + " ".join(sys.argv[1:]))
    t = Table(title=f"{res.model_name} at step {res.step}: closest algorithm per k")
    for c in ("k", "model error", "closest", "distance", "runner-up", "margin", "by weights",
              "by sensitivity"):
        t.add_column(c, justify="right" if c in ("k", "model error", "distance", "margin") else "left")
    for v in res.verdicts:
        t.add_row(str(v["k"]), f"{v['model_error']:.3f}", v["closest"], f"{v['distance']:.4f}",
                  v["runner_up"], f"{v['margin']:.4f}", v["closest_by_weights"],
                  v["closest_by_sensitivity"] or "-")
    out.print(t)
    where = out_dir if out_dir is not None else run_dir / "analysis"
    err.print(f"[green]wrote[/] {where / 'algorithms.json'} and {where / 'algorithms.html'}")


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
    from lenslab.probes import probe as do_probe
    from lenslab.probes import write_probe
    from lenslab.probes.generalization import (is_sweep_dir, parse_lengths, probe_checkpoints,
                                               probe_sweep, write_probe_series)

    kw = {"lengths": parse_lengths(lengths) if lengths else None, "variant": variant, "n": n}
    sweep = is_sweep_dir(run_dir)
    if sweep or checkpoints:
        if step is not None:
            raise LensError("--step names one checkpoint; drop it to probe "
                            + ("every run of the sweep" if sweep else "every checkpoint"))
        if sweep and checkpoints:
            raise LensError(f"{run_dir} is a sweep folder: --checkpoints takes one run folder")
        sw = (probe_sweep if sweep else probe_checkpoints)(run_dir, progress=True, **kw)
        where = out_dir or (run_dir if sweep else run_dir / "analysis")
        path = write_probe_series(sw, where, "lenslab " + " ".join(sys.argv[1:]))
        from rich import box
        from rich.table import Table

        t = Table(title=f"{sw.kind} probe on {len(sw.rows)} {sw.over}", box=box.SIMPLE_HEAD)
        cols = sw.columns()
        for c, label in cols:
            t.add_column(label, overflow="fold" if c in sw.axes else "ellipsis",
                         justify="left" if c in sw.axes or c == "verdict" else "right")
        for r in sw.rows:
            t.add_row(*(f"{r[c]:.3g}" if isinstance(r[c], float) else str(r[c]) for c, _ in cols))
        out.print(t)
        err.print(f"[green]wrote[/] {path.with_suffix('.csv')}, .json, .html and .png")
        return
    res = do_probe(run_dir, step, **kw)
    where = out_dir if out_dir is not None else run_dir / "analysis"
    path = write_probe(res, where, "lenslab " + " ".join(sys.argv[1:]))
    out.print(f"{res.kind} probe at step {res.step}: [bold]{res.verdict}[/]: {res.summary}",
              highlight=False)
    if getattr(res, "finding", ""):
        out.print(res.finding, highlight=False)
    err.print(f"[green]wrote[/] {where / 'probe.json'}, {path.name} and probe.png")


_PANELS = {
    "Runs": ("init", "train", "resume", "runs", "report", "tour"),
    "Attention lab": ("heads", "view", "paraphrase"),
    "In-context learning lab": ("icl", "compare", "algorithms", "replicate"),
    "Scaling and emergence lab": ("sweep", "fit", "diagnose", "emergence"),
    "Generalization probes": ("probe",),
}


def _group_commands() -> None:
    """Order ``lenslab --help`` by lab, whatever order the labs registered in."""
    order = [n for names in _PANELS.values() for n in names]
    panel = {n: p for p, names in _PANELS.items() for n in names}

    def name(ci) -> str:
        return ci.name or ci.callback.__name__.replace("_", "-")

    for ci in app.registered_commands:
        ci.rich_help_panel = panel.get(name(ci), "Other")
    app.registered_commands.sort(key=lambda ci: order.index(name(ci)) if name(ci) in order else 99)


_group_commands()


def main(argv: Optional[list[str]] = None) -> int:
    """Entry point: LensError becomes one line on stderr and its exit code; no traceback."""
    try:
        rv = app(args=argv, standalone_mode=False)
        if isinstance(rv, int):
            return rv
    except LensError as e:
        err.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
        return e.exit_code
    except typer.Exit as e:
        return e.exit_code
    except SystemExit as e:  # pragma: no cover
        return int(e.code or 0)
    except KeyboardInterrupt:
        err.print("interrupted")
        return 130
    except Exception as e:  # usage errors: a missing option, a value out of range
        usage, abort = _click_exceptions()
        if isinstance(e, usage):
            e.show()
            return 2
        if isinstance(e, abort):
            return 130
        raise
    return 0


def _click_exceptions() -> tuple[tuple[type, ...], tuple[type, ...]]:
    """Click's usage and abort exceptions. Recent typer releases raise those of the copy of
    click they ship (``typer._click.exceptions``, with ``Abort`` in ``typer.exceptions``),
    older ones those of ``click``; accept whichever are importable."""
    import importlib

    usage, abort = [], []
    for mod, names in (("typer._click.exceptions", ("ClickException",)),
                       ("typer.exceptions", ("Abort",)),
                       ("click.exceptions", ("ClickException", "Abort"))):
        try:
            m = importlib.import_module(mod)
        except ImportError:
            continue
        for n in names:
            cls = getattr(m, n, None)
            if isinstance(cls, type):
                (usage if n == "ClickException" else abort).append(cls)
    return tuple(usage), tuple(abort)

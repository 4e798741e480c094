"""Commands on runs: init, train, resume, runs, report, sample, tour."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

import typer

from lenslab.cli.app import app, console, say


@app.command()
def init(
    task: str = typer.Argument(
        ..., help="induction | modular_addition | addition | text | shakespeare | lstm | "
        "icl_regression | repeat | sequence"),
    data: Optional[str] = typer.Option(
        None, "--data", help="the corpus file (text, shakespeare): written into data.paths"),
):
    """Print a complete, commented example config for TASK (TOML) to stdout."""
    from lenslab.examples import example_toml

    sys.stdout.write(example_toml(task, data))


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
    no_memory_check: bool = typer.Option(
        False, "--no-memory-check", help="train even when the model and a step seem not to fit in memory"),
):
    """Train a new run into a run folder (guarded; resumable; torchrun for several GPUs)."""
    from lenslab.training import train as train_run

    res = train_run(config, out_dir, max_steps=max_steps, inject=inject, progress=not quiet,
                    overrides=set_ or (), memory_check=not no_memory_check)
    _finish(res)


@app.command()
def resume(
    run_dir: Path = typer.Argument(..., help="run folder"),
    inject: Optional[str] = typer.Option(None, "--inject", help="faults to inject from here on"),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
    no_memory_check: bool = typer.Option(
        False, "--no-memory-check", help="resume even when the model and a step seem not to fit in memory"),
):
    """Continue a run from its newest verified checkpoint (from step 0 when it has none)."""
    from lenslab.training import resume as resume_run

    res = resume_run(run_dir, inject=inject, progress=not quiet, memory_check=not no_memory_check)
    _finish(res)


def _finish(res) -> None:
    if int(os.environ.get("RANK", "0")) != 0:
        raise typer.Exit(res.exit_code)
    if res.status == "completed":
        ev = {k: v for k, v in res.events.items() if v}
        loss = f"{res.final_loss:.4f}" if res.final_loss is not None else "-"
        say("done", "green", f"{res.run_dir} at step {res.step}, last loss {loss}"
            + (f", guard events {ev}" if ev else ""))
    else:
        say(f"{res.status}:", "bold red", res.message)
    raise typer.Exit(res.exit_code)


@app.command()
def runs(root: Path = typer.Argument(Path("runs"), help="folder of run folders")):
    """List run folders with status, step, last loss and guard-event counts."""
    from rich.table import Table

    from lenslab.run import list_runs

    infos = list_runs(root)
    if not infos:
        say("", "", f"no runs under {root}")
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
    console.print(t)


@app.command()
def report(run_dir: Path = typer.Argument(..., help="run folder")):
    """Write RUN_DIR/report.html: the loss curve with guard events and the run's analyses."""
    from lenslab.report.run import write_run_report

    say("report", "green", write_run_report(run_dir))


@app.command()
def sample(
    run_dir: Path = typer.Argument(..., help="run folder"),
    prompt: Optional[str] = typer.Argument(
        None, help="text to continue (a text run; default a newline), or token ids \"3 17 5\""),
    tokens: int = typer.Option(200, "--tokens", "-n", min=0, help="tokens to generate"),
    temperature: float = typer.Option(1.0, "--temperature", "-t", min=0.0,
                                      help="divide the logits by T (0: always the likeliest)"),
    top_k: Optional[int] = typer.Option(None, "--top-k", min=1, help="draw from the k likeliest tokens"),
    seed: int = typer.Option(0, "--seed", min=0, max=2**63 - 1, help="the same seed, the same text"),
    samples: int = typer.Option(1, "--samples", min=1, max=1000, help="independent samples"),
    step: Optional[int] = typer.Option(None, "--step", min=0, help="checkpoint (default: newest)"),
):
    """Print text sampled from a run's model (a text run decodes with its own vocabulary)."""
    from lenslab.run.sample import printable
    from lenslab.run.sample import sample as sample_run

    s = sample_run(run_dir, prompt, tokens=tokens, temperature=temperature, top_k=top_k,
                   seed=seed, samples=samples, step=step)
    sep = "\n" + "-" * 40 + "\n"
    sys.stdout.write(sep.join(printable(t) for t in s.texts) + "\n")


@app.command()
def tour(
    out_dir: Path = typer.Option(Path("runs/tour"), "--out", "-o", help="where the tour writes"),
    quick: bool = typer.Option(False, "--quick", help="shorter training (for smoke tests)"),
):
    """Run a small version of every lab on the CPU and write one self-contained report.html."""
    from lenslab.tour import run_tour

    say("report", "green", run_tour(out_dir, quick=quick))

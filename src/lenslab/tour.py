"""``lenslab tour``: a small version of every lab on the CPU, written into one report.html.

Each capability adds a chapter: a function ``(out_dir, quick) -> html``. A chapter that fails is
shown as failed in the report (with the error) and the others still run; the report is rewritten
after every chapter, so an interrupted tour still leaves what it finished.
"""

from __future__ import annotations

import time
import traceback
from pathlib import Path
from typing import Callable

from lenslab.html import Page, escape

Chapter = tuple[str, str, Callable[[Path, Page, bool], str]]  # (anchor, title, builder)


def _training_chapter(out: Path, page: Page, quick: bool) -> str:
    """Train a small attention-only GPT on the induction task with faults injected."""
    import shutil

    import lenslab
    from lenslab.report.training import training_chapter

    steps = 160 if quick else 500
    nan_at, spike_at = (60, 120) if quick else (150, 380)
    cfg = lenslab.example_config("induction")
    cfg = cfg.model_copy(update={
        "name": "tour-induction",
        "train": cfg.train.model_copy(update={"max_steps": steps, "eval_every": 50,
                                              "checkpoint_every": 20, "keep_checkpoints": 1000}),
        "guard": cfg.guard.model_copy(update={"rollback_after": 3}),
    })
    run = out / "runs" / "induction"
    if run.exists():
        shutil.rmtree(run)
    inject = f"nan@{nan_at},spike@{spike_at}-{spike_at + 2}"
    res = lenslab.train(cfg, run, inject=inject, progress=True)
    intro = (
        "<p>A 2-layer attention-only GPT learns the induction task (repeated random tokens). "
        f"Two faults are injected: a NaN loss on batch {nan_at} and three corrupted batches "
        f"({spike_at} to {spike_at + 2}, whose loss is multiplied by 10). The guard skips the "
        "non-finite step, flags the spikes, rolls back to the last verified checkpoint, skips the "
        "bad batches for good, halves the learning rate and carries on. The run ended "
        f"<b>{escape(res.status)}</b> at step {res.step}.</p>"
        f"<p class='caption'>Command: <code>lenslab train CONFIG --out {escape(run)} --inject "
        f"{escape(inject)}</code> (the config is <code>{escape(run / 'config.toml')}</code>).</p>"
    )
    return intro + training_chapter(run)


def _attention_chapter(out: Path, page: Page, quick: bool) -> str:
    from lenslab.attention.lab import tour_chapter

    return tour_chapter(out, page, quick)


def _icl_chapter(out: Path, page: Page, quick: bool) -> str:
    from lenslab.icl.score import tour_chapter

    return tour_chapter(out, page, quick)


def _scaling_chapter(out: Path, page: Page, quick: bool) -> str:
    from lenslab.scaling.tour import scaling_chapter

    return scaling_chapter(out / "scaling", quick)


def _probes_chapter(out: Path, page: Page, quick: bool) -> str:
    from lenslab.probes.tour import probes_chapter

    return probes_chapter(out, quick)


def chapters() -> list[Chapter]:
    """The tour's chapters in order (each lab adds its own)."""
    import importlib.util

    out = [
        ("training", "Training under guard", _training_chapter),
        ("attention", "Inside the model", _attention_chapter),
        ("icl", "Learning in context", _icl_chapter),
    ]
    if importlib.util.find_spec("lenslab.scaling.tour") is not None:
        out.append(("scaling", "Scaling", _scaling_chapter))
    out.append(("generalization", "Generalization", _probes_chapter))
    return out


def run_tour(out_dir: str | Path = "runs/tour", quick: bool = False) -> Path:
    from rich.console import Console

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
        from lenslab.errors import LensError

        err = LensError(f"tour chapters failed: {', '.join(failures)}; see {report}")
        err.exit_code = 1
        raise err
    return report

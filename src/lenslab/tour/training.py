"""Tour chapter "Training under guard": a small GPT learns induction while faults are injected,
and the guard's decisions are shown on its loss curve."""

from __future__ import annotations

import shutil
from pathlib import Path

from lenslab.examples import example_config
from lenslab.html import Page, escape
from lenslab.report.training import training_chapter
from lenslab.training import train


def chapter(out: Path, page: Page, quick: bool) -> str:
    """Train a small attention-only GPT on the induction task with faults injected."""
    steps = 160 if quick else 500
    nan_at, spike_at = (60, 120) if quick else (150, 380)
    cfg = example_config("induction")
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
    res = train(cfg, run, inject=inject, progress=True)
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

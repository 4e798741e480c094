"""``RUN_DIR/report.html``: one run's page, built from its folder alone.

The training chapter (loss curve with guard events), then whatever analyses the folder holds:
``analysis/heads.json`` (head taxonomy), ``analysis/icl.json`` (ICL score, per-position loss,
phase change), ``analysis/probe.json`` (a generalization probe) and
``analysis/probe-checkpoints.json`` (the probe at every checkpoint). The page reads JSON, never the analyses' internals, and works offline.
"""

from __future__ import annotations

import json
from pathlib import Path

from lenslab.errors import RunDirError
from lenslab.html import Page, escape, figure_block, figure_to_svg
from lenslab.report.training import training_chapter


def _heads_section(d: dict) -> str:
    from lenslab.attention.heads import HeadReport

    rep = HeadReport(d["model"], d["n_layer"], d["n_head"], d["margin"], d["broad_entropy"],
                     d["heads"], d.get("battery", {}), d.get("null", {}))
    cmd = d.get("command", "")
    return (rep.to_html() + (f"<p class='caption'>Command: <code>{escape(cmd)}</code></p>"
                             if cmd else ""))


def _icl_section(d: dict) -> str:
    from lenslab.icl.score import curves_figure

    body = (f"<p>ICL score at step {d['step']}: <b>{d['icl_score']:+.3f}</b> nats (loss at position "
            f"{d['late']} minus loss at position {d['early']}).</p>"
            + figure_block(figure_to_svg(curves_figure({f"step {d['step']}": d['per_position_loss']},
                                                       marks=(d["early"], d["late"]))),
                           "Mean loss at each position of held-out sequences."))
    ph = d.get("phase_change")
    if ph:
        from lenslab.icl.score import PhaseChange

        fields = {k: ph[k] for k in PhaseChange.__dataclass_fields__ if k in ph}
        body += "<h3>Across checkpoints</h3>" + PhaseChange(**fields).to_html()
    return body


def _probe_section(d: dict) -> str:
    from lenslab.probes.generalization import result_from_dict

    cmd = d.get("command", "")
    return (result_from_dict(d).to_html()
            + (f"<p class='caption'>Command: <code>{escape(cmd)}</code></p>" if cmd else ""))


def _probe_checkpoints_section(d: dict) -> str:
    from lenslab.probes.generalization import ProbeSeries

    res = ProbeSeries(**{k: d[k] for k in ProbeSeries.__dataclass_fields__ if k in d})
    cmd = d.get("command", "")
    return (res.to_html()
            + (f"<p class='caption'>Command: <code>{escape(cmd)}</code></p>" if cmd else ""))


def write_run_report(run_dir: str | Path) -> Path:
    run_dir = Path(run_dir)
    if not (run_dir / "config.toml").is_file():
        raise RunDirError(f"{run_dir} is not a lenslab run folder (no config.toml)")
    page = Page(f"Run {run_dir.name}", f"Everything on this page was read from {run_dir}.")
    page.add("Training", training_chapter(run_dir), "training")
    analysis = run_dir / "analysis"
    for name, title, build in (("heads.json", "Heads", _heads_section),
                               ("icl.json", "In-context learning", _icl_section),
                               ("probe.json", "Generalization probe", _probe_section),
                               ("probe-checkpoints.json", "Generalization probe across checkpoints",
                                _probe_checkpoints_section)):
        f = analysis / name
        if f.is_file():
            try:
                page.add(title, build(json.loads(f.read_text())))
            except (KeyError, TypeError, ValueError) as e:  # an older or damaged file
                page.add(title, f"<div class='note'>{escape(f)} could not be read: "
                                f"{escape(type(e).__name__)}: {escape(e)}</div>")
    out = run_dir / "report.html"
    page.write(out)
    return out

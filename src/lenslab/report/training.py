"""The training chapter: loss curve with every guard event marked, and the event log."""

from __future__ import annotations

import math
from pathlib import Path

from lenslab._io import num
from lenslab.html import (
    badge,
    escape,
    figure_block,
    figure_to_svg,
    pyplot,
    table_html,
)
from lenslab.run import Run

_MARK = {  # event type -> (marker, colour, label)
    "nonfinite": ("X", "#b3261e", "non-finite (skipped)"),
    "spike": ("^", "#e07b00", "loss spike (skipped)"),
    "spike_logged": ("^", "#f2b36b", "loss spike (logged, applied)"),
    "rollback": ("|", "#6a1b9a", "rollback"),
}



def loss_figure(run_dir: Path, title: str = ""):
    """Training loss against step; skipped steps, spikes and rollbacks marked; LR on a twin axis."""
    plt = pyplot()

    run = Run(run_dir)
    metrics, events = run.metrics(), run.event_log()
    fig, ax = plt.subplots(figsize=(8.6, 3.8))
    # a record is abandoned when a rollback later replays its step: drawn grey, apart
    abandoned, low = [False] * len(metrics), math.inf
    for i in range(len(metrics) - 1, -1, -1):
        abandoned[i] = metrics[i]["step"] >= low
        low = min(low, metrics[i]["step"])
    for flag, color, label in ((False, "#3056d3", "train loss"), (True, "#9aa7c7", "abandoned by rollback")):
        pts = [m for m, a in zip(metrics, abandoned)
               if a == flag and not m.get("skipped") and math.isfinite(num(m["loss"]))]
        if pts:
            ax.plot([m["step"] for m in pts], [m["loss"] for m in pts], lw=1.1, color=color,
                    label=label, zorder=2 if not flag else 1.5)
    ev = [m for m, a in zip(metrics, abandoned) if not a and "val_loss" in m]
    if ev:
        ax.plot([m["step"] for m in ev], [m["val_loss"] for m in ev], "o-", ms=3, lw=1,
                color="#1b7f3b", label="validation loss", zorder=3)
    segs = [[m for m, a in zip(metrics, abandoned) if not a]]
    finite = [m["loss"] for m in metrics if math.isfinite(num(m["loss"]))]
    top = max(finite) if finite else 1.0
    seen = set()
    for e in events:
        kind = e.get("type")
        if kind == "spike" and e.get("action") == "logged":
            kind = "spike_logged"
        if kind not in _MARK:
            continue
        marker, color, name = _MARK[kind]
        lab = name if kind not in seen else None
        seen.add(kind)
        if kind == "rollback":
            ax.axvline(e["step"], color=color, ls="--", lw=1, label=lab, zorder=1)
            ax.annotate(f"back to {e.get('to_step')}", (e["step"], top), fontsize=8, color=color,
                        rotation=90, va="top", ha="right")
        else:
            y = num(e.get("loss"))
            y = y if math.isfinite(y) else top
            ax.scatter([e["step"]], [y], marker=marker, s=60, color=color, label=lab, zorder=4)
    ax.set_yscale("log")  # spikes and the floor of the curve both stay readable
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (nats / token)")
    if title:
        ax.set_title(label(title), fontsize=11)
    lrs = [(m["step"], m["lr"]) for m in segs[-1]] if metrics else []
    if lrs:
        ax2 = ax.twinx()
        ax2.plot(*zip(*lrs), color="#888", lw=0.8, ls=":", label="learning rate")
        ax2.set_ylabel("learning rate", color="#666")
        ax2.tick_params(axis="y", colors="#666")
        h1, l1 = ax.get_legend_handles_labels()
        h2, l2 = ax2.get_legend_handles_labels()
        ax.legend(h1 + h2, l1 + l2, fontsize=8, loc="upper right", framealpha=0.9)
    ax.grid(alpha=0.25)
    fig.tight_layout()
    return fig


def describe_events(events: list[dict]) -> list[str]:
    """Plain-language sentences for what the guard did."""
    out = []
    for e in events:
        t = e.get("type")
        if t == "nonfinite":
            out.append(f"Step {e['step']}: the loss was not finite (batch {e.get('data_index')}); "
                       "the update was skipped, so weights and optimizer state stayed bitwise unchanged.")
        elif t == "spike":
            out.append(f"Step {e['step']}: loss {num(e.get('loss')):.4g} was a spike "
                       f"(z = {num(e.get('zscore')):.3g}) "
                       f"on batch {e.get('data_index')}; "
                       + ("it was logged and the update applied (guard.on_spike = \"log\")."
                          if e.get("action") == "logged" else "the update was skipped."))
        elif t == "rollback":
            a, b = e.get("skip_batches", ["?", "?"])
            out.append(f"Step {e['step']}: repeated anomalies, so the run rolled back to the verified "
                       f"checkpoint of step {e.get('to_step')} and will never use batches {a} to {b} again.")
        elif t == "lr_backoff":
            out.append(f"The learning rate is now multiplied by {e.get('lr_scale')}.")
        elif t == "resume":
            out.append(f"Resumed from {e.get('checkpoint')} at step {e.get('replaying_from')}.")
        elif t == "preempt":
            out.append(f"Step {e['step']}: stopped by {e.get('signal')}; a checkpoint was written.")
        elif t == "give_up":
            out.append(f"Step {e['step']}: the guard gave up: {e.get('reason')}.")
        elif t == "checkpoint_invalid":
            out.append(f"A checkpoint failed verification and was skipped: {e.get('detail')}.")
    return out


def training_chapter(run_dir: Path) -> str:
    """HTML for one run: curve, what the guard did, the raw event log."""
    run_dir = Path(run_dir)
    info = Run.open(run_dir)
    events = info.event_log()
    svg = figure_to_svg(loss_figure(run_dir))
    kinds = {e.get("type") for e in events}
    status = badge(info.status, "ok" if info.status == "completed" else "warn")
    sentences = describe_events(events)
    story = ("<ul>" + "".join(f"<li>{escape(s)}</li>" for s in sentences) + "</ul>") if sentences \
        else "<p>No guard events: every step was finite and no loss spiked.</p>"
    rows = [{k: v for k, v in e.items() if k not in ("time", "seq")} for e in events]
    cols = ["step", "type", "loss", "data_index", "zscore", "to_step", "skip_batches", "lr_scale",
            "checkpoint"]
    cols = [c for c in cols if any(c in r for r in rows)]
    last = info.metrics()[-1] if info.metrics() else {}
    loss_s = f"{info.last_loss:.4f}" if info.last_loss is not None else "-"
    tps = float(last.get("tok_per_s", 0) or 0)
    summary = (f"<p>{status} <code>{escape(run_dir)}</code>: step {info.step}, last loss "
               f"{escape(loss_s)}, {tps:,.0f} tokens/s. "
               f"Guard events: {escape(', '.join(sorted(k for k in kinds if k)) or 'none')}.</p>")
    return (summary + figure_block(svg, "Training loss by optimizer step. Grey: the branch a "
                                   "rollback abandoned. Markers: guard events. Dotted: learning rate.")
            + "<h3>What the guard did</h3>" + story
            + "<details><summary>events.jsonl</summary>" + table_html(rows, cols) + "</details>")

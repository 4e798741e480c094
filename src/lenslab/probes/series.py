"""One probe on many models: every completed run of a sweep against the sweep's axes, or every
checkpoint of one run against the step (when did the model take its rule?)."""

from __future__ import annotations

import csv
import dataclasses
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import track

from lenslab._io import num
from lenslab.errors import DataError, RunDirError
from lenslab.html import (
    escape,
    figure_block,
    figure_to_svg,
    label,
    pyplot,
    table_html,
    tick_text,
)
from lenslab.probes.dispatch import probe
from lenslab.probes.result import TITLES
from lenslab.result import Result, write_result
from lenslab.run import Run

#: What a sweep's table shows of each probe, per kind.
_SWEEP_MEASURES = {
    "length": ("in_range", "exact_past", "holds_to"),
    "counterfactual": ("acc_original", "acc_variant", "consistency"),
}
_AXES = ("n_layer", "d_model", "n_head", "steps", "lr", "seed")
_SHORT = {"acc_original": "acc", "acc_variant": "acc variant", "consistency": "same",
          "acc_swap_trained": "swap trained", "acc_swap_held_out": "swap held out",
          "in_range": "in range", "exact_past": "past range", "holds_to": "holds to",
          "in_distribution_acc": "acc where rules agree"}


@dataclass
class ProbeSeries(Result):
    """One probe on several models: the completed runs of a sweep against the sweep's axes
    (kind ``probes``, written into the sweep folder), or the checkpoints of one run against
    the step (kind ``probe-checkpoints``, written beside the run's ``probe.json``)."""

    source: str  # the sweep folder or the run folder
    over: str  # "runs" or "checkpoints"
    probe: str  # rules, length or counterfactual
    axes: list[str]  # what varies: sweep axes, or ["step"]
    measures: list[str]
    rows: list[dict]  # axes, measures, verdict (and run folder) per model

    @property
    def kind(self) -> str:  # type: ignore[override]
        return "probes" if self.over == "runs" else "probe-checkpoints"

    @property
    def title(self) -> str:  # type: ignore[override]
        return TITLES[self.probe] + (" across checkpoints" if self.over == "checkpoints"
                                     else " across a sweep")

    def heading(self) -> str:
        return f"{self.title}: {Path(self.source).name}"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ProbeSeries":
        probe = d.get("probe") or d.get("kind")  # files before the result protocol: "kind"
        return cls(str(d["source"]), str(d["over"]), str(probe), list(d["axes"]),
                   list(d["measures"]), [{k: (num(v) if v is None else v) for k, v in r.items()}
                                         for r in d["rows"]])

    def files(self) -> dict[str, str]:
        """The table as CSV, beside the JSON."""
        cols = [*self.axes, "verdict", *self.measures, *(["run"] if self.over == "runs" else [])]
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(cols)
        for r in self.rows:
            w.writerow([r.get(c) for c in cols])
        return {"csv": buf.getvalue()}

    def columns(self) -> list[tuple[str, str]]:
        """``(key, short label)`` of the table's columns: axes, verdict, measures."""
        return [(c, _SHORT.get(c, c.split(".")[-1].removeprefix("share_")))
                for c in [*self.axes, "verdict", *self.measures]]

    def figure(self):
        """One panel per measure against the first axis; a line per value of the others
        (seeds averaged, each seed a dot)."""
        plt = pyplot()

        xs = [a for a in self.axes if a != "seed"]
        x = xs[0] if xs else "seed"
        others = [a for a in xs[1:]]
        numeric = all(isinstance(r[x], (int, float)) for r in self.rows)
        levels = sorted({r[x] for r in self.rows}, key=lambda v: (str(type(v)), v))
        pos = (lambda v: v) if numeric else (lambda v: levels.index(v))  # noqa: E731
        groups: dict[tuple, list[dict]] = {}
        for r in self.rows:
            groups.setdefault(tuple(r[a] for a in others), []).append(r)
        fig, axs = plt.subplots(1, len(self.measures), figsize=(3.6 * len(self.measures), 3.3),
                                squeeze=False)
        colors = ["#3056d3", "#e07b00", "#1b7f3b", "#8e24aa", "#c62828", "#00838f"]
        for ax, m in zip(axs[0], self.measures):
            for (key, rows), c in zip(sorted(groups.items(), key=lambda kv: str(kv[0])), colors * 9):
                legend = label(", ".join(f"{a.split('.')[-1]} {v}" for a, v in zip(others, key))) or None
                at = sorted({r[x] for r in rows}, key=lambda v: (str(type(v)), v))
                mean = [np.mean([r[m] for r in rows if r[x] == v]) for v in at]
                ax.plot([pos(v) for v in at], mean, "o-", ms=3.5, color=c, label=legend)
                ax.scatter([pos(r[x]) for r in rows], [r[m] for r in rows], s=8, color=c, alpha=0.4)
            ax.set_title(label(m.replace("_", " ")), fontsize=9)
            if all(0 <= r[m] <= 1 for r in self.rows):  # shares and accuracies
                ax.set_ylim(-0.03, 1.05)
            ax.set_xlabel(label(x))
            if not numeric:
                ax.set_xticks(range(len(levels)), tick_text(levels))
            ax.grid(alpha=0.25)
        if len(groups) > 1:
            axs[0][0].legend(fontsize=7, frameon=False)
        fig.tight_layout()
        return fig

    def to_html(self) -> str:
        cols = [*self.axes, "verdict", *self.measures]
        if self.over == "runs":
            intro = (f"The {escape(self.probe)} probe on each of the {len(self.rows)} completed runs "
                     f"of {escape(self.source)}; each run's own page is in its "
                     "<code>analysis/probe.html</code>.")
            caption = ("Each measure against the sweep's first varying axis; a line per value of "
                       "the other axes, seeds averaged (dots: single runs).")
        else:
            intro = (f"The {escape(self.probe)} probe at each of {len(self.rows)} verified "
                     f"checkpoints of {escape(self.source)}.")
            caption = "Each measure at each checkpoint."
        return (f"<p>{intro}</p>" + table_html(self.rows, cols, digits=3)
                + figure_block(figure_to_svg(self.figure()), caption))


def is_sweep_dir(path: str | Path) -> bool:
    p = Path(path)
    return (p / "results.json").is_file() and not (p / "config.toml").is_file()


def _measured(res) -> dict:
    """What a table of many probes shows of one result (see :data:`_SWEEP_MEASURES`)."""
    if res.probe == "rules":
        return {**{f"share_{rule}": res.shares[rule] for rule in res.rules},
                "in_distribution_acc": res.in_distribution_acc}
    if res.probe == "length":
        past = res.train_range[1] + 1
        return {"in_range": res.in_range, "holds_to": res.holds_to,
                "exact_past": (res.exact_match[res.lengths.index(past)] if past in res.lengths
                               else float("nan"))}
    row = {m: getattr(res, m) for m in _SWEEP_MEASURES["counterfactual"]}
    for g in res.groups:  # modular addition: held-out pairs by whether their swap was trained
        row[f"acc_{g['name'].replace(' ', '_')}"] = g["acc_original"]
    return row


def _measure_names(kind: str, row: dict) -> list[str]:
    if kind == "rules":
        return [k for k in row if k.startswith("share_")]
    if kind == "counterfactual":
        return [*_SWEEP_MEASURES[kind], *(k for k in row if k.startswith("acc_swap"))]
    return list(_SWEEP_MEASURES[kind])


def _each(items: list, what: str, progress: bool):
    """``items``, with a transient progress bar on stderr when ``progress``."""
    if not progress:
        return items
    return track(items, description=what, transient=True, console=Console(stderr=True))


def probe_sweep(sweep_dir: str | Path, progress: bool = False, **kw) -> ProbeSeries:
    """:func:`probe` on every completed run of a sweep folder (each run's result goes to its
    ``analysis/``), in one table against the axes that vary."""
    from lenslab.scaling import (
        read_results,  # the scaling lab (scipy) only for a sweep's probe
    )

    rows = [r for r in read_results(sweep_dir) if r.get("status") == "completed"]
    if not rows:
        raise DataError(f"{sweep_dir}: no completed runs to probe yet")
    out, kind = [], None
    for r in _each(rows, "probing runs", progress):
        res = probe(r["run"], **kw)
        write_result(res, Run(r["run"]), f"lenslab probe {r['run']}")
        kind = res.probe
        row = {a: r.get(a) for a in _AXES}
        row.update({k: v for k, v in r.items() if "." in k})
        row.update({"verdict": res.verdict, "run": r["run"], **_measured(res)})
        out.append(row)
    keys = [k for k in out[0] if k in _AXES or "." in k]
    axes = [k for k in keys if len({str(r[k]) for r in out}) > 1]
    return ProbeSeries(str(sweep_dir), "runs", kind, axes, _measure_names(kind, out[0]), out)


def probe_checkpoints(run_dir: str | Path, max_checkpoints: int = 40, progress: bool = False,
                      **kw) -> ProbeSeries:
    """:func:`probe` at every verified checkpoint of one run (at most ``max_checkpoints``,
    evenly spaced, the newest always included): when did the model take its rule?"""

    steps = Run.open(run_dir).verified_steps()
    if not steps:
        raise RunDirError(f"{run_dir} has no verified checkpoints; train it first")
    if len(steps) > max_checkpoints:
        idx = np.unique(np.linspace(0, len(steps) - 1, max_checkpoints).round().astype(int))
        steps = [steps[i] for i in idx]
    out, kind = [], None
    for st in _each(steps, "probing checkpoints", progress):
        res = probe(run_dir, st, **kw)
        kind = res.probe
        out.append({"step": st, "verdict": res.verdict, **_measured(res)})
    return ProbeSeries(str(run_dir), "checkpoints", kind, ["step"], _measure_names(kind, out[0]),
                       out)

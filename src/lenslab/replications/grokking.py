"""Replication ``grokking``: modular addition is memorised early and generalised late, after
weight decay has worked (Power et al. 2022; Nanda et al. 2023)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from lenslab.config import RunConfig
from lenslab.examples import example_config
from lenslab.html import Page, escape, figure_block, figure_to_svg, pyplot
from lenslab.icl.score import load_run_model
from lenslab.replications import (
    Replication,
    finish,
    json_block,
    register,
    train_fresh,
    verdict_html,
)
from lenslab.run import Run


def grokking_config(steps: int = 8000, seed: int = 0) -> RunConfig:
    """The ``modular_addition`` example (Nanda et al. 2023's 1-layer transformer, p = 59, 30%
    of the pairs for training, full-batch AdamW, lr 1e-3, weight decay 1).

    Spikes are logged, not acted on (``guard.on_spike = "log"``, as in the example; non-finite
    losses are still caught). With full-batch training every step sees the same batch, so a
    skipped step recurs identically, three skips force a rollback and each rollback halves the
    learning rate; and the sudden loss spikes of this training (Adam "slingshots") belong to the
    phenomenon being replicated. With the default guard, a spike at step 422 rolled the run
    back to step 0 at half the learning rate, and another at step 1420 halved it again.
    """
    cfg = example_config("modular_addition")
    return cfg.model_copy(update={
        "name": "grokking", "seed": seed,
        "train": cfg.train.model_copy(update={"max_steps": steps, "eval_every": 100,
                                              "keep_checkpoints": 1000}),
        "guard": cfg.guard.model_copy(update={"on_spike": "log"}),
    })


@torch.no_grad()
def commutative_split(run: Path) -> list[dict]:
    """Test accuracy at every checkpoint of a modular-addition run, split into the test pairs
    ``(a, b)`` whose swap ``(b, a)`` is a training pair and the rest.

    A model that treats ``a + b`` and ``b + a`` alike answers the first group correctly as soon
    as it has memorised the training pairs; only the second group measures generalisation.
    """

    out = []
    for step in Run(run).verified_steps():
        rm = load_run_model(run, step)
        t = rm.task
        train = {(int(a), int(b)) for a, b in t.train_pairs}
        swap = torch.tensor([(int(b), int(a)) in train for a, b in t.test_pairs])
        x, y = t._xy(t.test_pairs)
        ok = (rm.model(x)[:, 2].argmax(-1) == y[:, 2]).float()
        out.append({"step": step, "swap_in_train": float(ok[swap].mean()),
                    "rest": float(ok[~swap].mean()), "share_swap": float(swap.float().mean())})
    return out


def grokking_checks(metrics: list[dict]) -> tuple[dict, list[str]]:
    """The grokking targets, read from a run's ``metrics.jsonl``.

    Steps count optimizer updates done (a record with ``step = s`` is after ``s + 1`` updates):
    the training loss gets under 1e-3 by update 1000; the test accuracy stays under 0.15 at every
    evaluation up to update 3500 and reaches 0.9 by update 8000.
    """
    ok = [m for m in metrics if not m.get("skipped")]
    first_low = next((m["step"] + 1 for m in ok if m["loss"] < 1e-3), None)
    ev = [m for m in ok if "test_acc" in m]
    early = [m["test_acc"] for m in ev if m["step"] + 1 <= 3500]
    max_early = max(early) if early else float("nan")
    first_gen = next((m["step"] + 1 for m in ev if m["test_acc"] >= 0.9), None)
    at = {m["step"] + 1: m for m in ev}
    measured = {
        "first_step_train_loss_below_1e-3": first_low,
        "train_loss_at_1000": next((m["loss"] for m in ok if m["step"] + 1 == 1000), None),
        "max_test_acc_until_3500": max_early,
        "first_step_test_acc_0.9": first_gen,
        "test_acc_at": {s: at[s]["test_acc"] for s in (1000, 2000, 3500, 5000, 8000) if s in at},
        "final_test_acc": ev[-1]["test_acc"] if ev else None,
    }
    short = []
    if first_low is None or first_low > 1000:
        short.append("training loss did not get under 1e-3 by step 1000"
                     + (f" (first at step {first_low})" if first_low else ""))
    if not early or not max_early < 0.15:
        worst = max((m for m in ev if m["step"] + 1 <= 3500), key=lambda m: m["test_acc"],
                    default=None)
        short.append(f"test accuracy reached {max_early:.3f} >= 0.15 before step 3500"
                     + (f" (at step {worst['step'] + 1})" if worst else ""))
    if first_gen is None or first_gen > 8000:
        last = ev[-1]["test_acc"] if ev else float("nan")
        short.append(f"test accuracy did not reach 0.9 by step 8000 (final {last:.3f})")
    return measured, short


def _grokking_figure(metrics: list[dict], split: Sequence[dict] = ()):
    plt = pyplot()

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.6))
    ev = [m for m in metrics if "test_acc" in m]
    steps = [m["step"] + 1 for m in ev]
    a1.plot(steps, [m["train_loss"] for m in ev], color="#3056d3", label="train loss")
    a1.plot(steps, [m["test_loss"] for m in ev], color="#b3261e", label="test loss")
    a1.axhline(1e-3, color="#999", ls=":", lw=1)
    a1.axvline(1000, color="#999", ls=":", lw=1)
    a1.set_yscale("log")
    a1.set_ylabel("cross-entropy")
    a2.plot(steps, [m["train_acc"] for m in ev], color="#3056d3", label="train accuracy")
    a2.plot(steps, [m["test_acc"] for m in ev], color="#b3261e", label="test accuracy")
    if split:
        a2.plot([c["step"] for c in split], [c["swap_in_train"] for c in split], "o--", ms=3,
                color="#b36b00", lw=1, label="test pairs whose swap is trained")
        a2.plot([c["step"] for c in split], [c["rest"] for c in split], "o--", ms=3,
                color="#1b7f3b", lw=1, label="the other test pairs")
    a2.axhline(0.15, color="#999", ls=":", lw=1)
    a2.axhline(0.9, color="#999", ls=":", lw=1)
    a2.axvline(3500, color="#999", ls=":", lw=1)
    a2.axvline(8000, color="#999", ls=":", lw=1)
    a2.set_ylim(-0.02, 1.02)
    for ax in (a1, a2):
        ax.set_xlabel("step")
        ax.legend(fontsize=8, frameon=False)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


@register("grokking", "modular addition: memorise by step 1000, generalise late, after weight "
                      "decay has worked (Power et al. 2022; Nanda et al. 2023)")
def replicate_grokking(out: Path, progress: bool = True, steps: int = 8000) -> Replication:
    run = out / "grokking"
    res, measured, short = train_fresh(grokking_config(steps), run, progress)
    mets = Run(run).metrics()
    m, s = grokking_checks(mets)
    measured.update(m)
    short += s
    split = commutative_split(run) if res.status == "completed" else []
    if split:
        early = [c for c in split if c["step"] <= 3500]
        measured["commutative_split"] = {
            "share_of_test_pairs_whose_swap_is_trained": split[0]["share_swap"],
            "max_acc_until_3500_swap_in_train": max(c["swap_in_train"] for c in early),
            "max_acc_until_3500_other_pairs": max(c["rest"] for c in early),
            "by_checkpoint": {c["step"]: [round(c["swap_in_train"], 4), round(c["rest"], 4)]
                              for c in split},
        }
    targets = ("training loss under 1e-3 by step 1000; test accuracy under 0.15 until step 3500 "
               "and at least 0.9 by step 8000")
    page = Page("Replication: grokking modular addition",
                "p = 59, 30% of the pairs for training, the 1-layer transformer of the "
                "modular_addition example, full-batch AdamW (lr 1e-3, weight decay 1).")
    page.add("Result", verdict_html(not short, short, targets), "result")
    if any("test_acc" in x for x in mets):
        page.add("Curves", figure_block(
            figure_to_svg(_grokking_figure(mets, split)),
            "Loss and accuracy on the training and test pairs; dashed, at each checkpoint, the "
            "test accuracy on pairs (a, b) whose swap (b, a) is a training pair and on the "
            "others. a + b = b + a: a model that treats both orders alike gets the first group "
            "right while it memorises, so the whole test set's accuracy starts near that "
            "group's share of it; the second group measures generalisation."), "curves")
    page.add("Measured", json_block(measured)
             + f"<p class='caption'>Command: <code>lenslab replicate grokking --out "
               f"{escape(out)}</code>.</p>", "measured")
    return finish("grokking", out, page, measured, short)

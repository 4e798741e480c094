"""Replication ``grokking``: modular addition is memorised early and generalised late, after
weight decay has worked (Power et al. 2022; Nanda et al. 2023)."""

from __future__ import annotations

from pathlib import Path

from lenslab.config import RunConfig
from lenslab.examples import example_config
from lenslab.html import Page, escape, figure_block, figure_to_svg, pyplot
from lenslab.replications import (
    Replication,
    finish,
    json_block,
    register,
    train_fresh,
    verdict_html,
)
from lenslab.run import Run

#: Nanda et al. 2023's one-layer transformer: no LayerNorm, ReLU, untied embeddings, no biases,
#: weights drawn with std 0.8 / sqrt(d_model).
NANDA = {"norm": "none", "activation": "relu", "tie_embeddings": False, "bias": False,
         "init_std": 0.8 / 128 ** 0.5}


def grokking_config(steps: int = 10_000, seed: int = 0) -> RunConfig:
    """Nanda et al. 2023's setting: p = 113, their one-layer transformer (:data:`NANDA`), 30% of
    the pairs for training, full-batch AdamW (lr 1e-3, betas 0.9/0.98, weight decay 1).

    Spikes are logged, not acted on (``guard.on_spike = "log"``, as in the ``modular_addition``
    example; non-finite losses are still caught). With full-batch training every step sees the
    same batch, so a skipped step recurs identically and each rollback would only halve the
    learning rate; the sudden loss spikes of this training (Adam "slingshots") belong to the
    phenomenon being replicated.
    """
    cfg = example_config("modular_addition")
    return cfg.model_copy(update={
        "name": "grokking", "seed": seed,
        "model": cfg.model.model_copy(update=NANDA),
        "data": cfg.data.model_copy(update={"p": 113}),
        "train": cfg.train.model_copy(update={"max_steps": steps, "eval_every": 100,
                                              "checkpoint_every": 500, "keep_checkpoints": 1000}),
        "guard": cfg.guard.model_copy(update={"on_spike": "log"}),
    })


def grokking_checks(metrics: list[dict]) -> tuple[dict, list[str]]:
    """The grokking targets, read from a run's ``metrics.jsonl``.

    Steps count optimizer updates done (a record with ``step = s`` is after ``s + 1`` updates).
    The training loss gets under 1e-3 by update 1000. Held-out pairs whose swap ``(b, a)`` is
    held out too (``test_acc_swap_held_out``: commutativity cannot answer them) are under 0.1
    right at update 3500 and at least 0.9 by update 10000. The pairs whose swap was trained are
    reported beside them: commutativity is learned first.
    """
    ok = [m for m in metrics if not m.get("skipped")]
    first_low = next((m["step"] + 1 for m in ok if m["loss"] < 1e-3), None)
    ev = [m for m in ok if "test_acc_swap_held_out" in m]
    at = {m["step"] + 1: m for m in ev}
    held = {s: at[s]["test_acc_swap_held_out"] for s in sorted(at)}
    first_gen = next((s for s, v in held.items() if v >= 0.9), None)
    measured = {
        "first_step_train_loss_below_1e-3": first_low,
        "held_out_swap_held_out_at_3500": held.get(3500),
        "first_step_held_out_swap_held_out_0.9": first_gen,
        "accuracy_at": {s: {"swap held out": at[s]["test_acc_swap_held_out"],
                            "swap trained": at[s].get("test_acc_swap_trained"),
                            "all held out": at[s].get("test_acc")}
                        for s in (1000, 2000, 3500, 6000, 8000, 10000) if s in at},
        "final": at[max(at)] if at else None,
    }
    short = []
    if first_low is None or first_low > 1000:
        short.append("training loss did not get under 1e-3 by step 1000"
                     + (f" (first at step {first_low})" if first_low else ""))
    if held.get(3500) is None:
        short.append("no evaluation at step 3500")
    elif not held[3500] < 0.1:
        short.append(f"held-out pairs whose swap is held out: {held[3500]:.3f} >= 0.1 right at "
                     "step 3500")
    if first_gen is None or first_gen > 10_000:
        last = held[max(held)] if held else float("nan")
        short.append(f"held-out pairs whose swap is held out did not reach 0.9 by step 10000 "
                     f"(final {last:.3f})")
    return measured, short


def _grokking_figure(metrics: list[dict]):
    plt = pyplot()

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.6))
    ev = [m for m in metrics if "test_acc" in m]
    steps = [m["step"] + 1 for m in ev]
    split = []
    if ev and "test_acc_swap_held_out" in ev[0]:  # the groups, at every evaluation
        split = [{"step": m["step"] + 1, "swap_in_train": m.get("test_acc_swap_trained"),
                  "rest": m["test_acc_swap_held_out"]} for m in ev]
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
    a2.axhline(0.1, color="#999", ls=":", lw=1)
    a2.axhline(0.9, color="#999", ls=":", lw=1)
    a2.axvline(3500, color="#999", ls=":", lw=1)
    a2.axvline(10000, color="#999", ls=":", lw=1)
    a2.set_ylim(-0.02, 1.02)
    for ax in (a1, a2):
        ax.set_xlabel("step")
        ax.legend(fontsize=8, frameon=False)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


@register("grokking", "modular addition: memorise by step 1000, generalise late, after weight "
                      "decay has worked (Power et al. 2022; Nanda et al. 2023)")
def replicate_grokking(out: Path, progress: bool = True, steps: int = 10_000) -> Replication:
    run = out / "grokking"
    res, measured, short = train_fresh(grokking_config(steps), run, progress)
    mets = Run(run).metrics()
    m, s = grokking_checks(mets)
    measured.update(m)
    short += s
    targets = ("training loss under 1e-3 by step 1000; held-out pairs whose swap is held out "
               "too: under 0.1 right at step 3500 and at least 0.9 by step 10000")
    page = Page("Replication: grokking modular addition",
                "p = 113, 30% of the pairs for training, Nanda et al. 2023's one-layer "
                "transformer (no LayerNorm, ReLU, untied embeddings, no biases), full-batch "
                "AdamW (lr 1e-3, weight decay 1).")
    page.add("Result", verdict_html(not short, short, targets), "result")
    if any("test_acc" in x for x in mets):
        page.add("Curves", figure_block(
            figure_to_svg(_grokking_figure(mets)),
            "Loss and accuracy on the training and test pairs; dashed, at each checkpoint, the "
            "test accuracy on pairs (a, b) whose swap (b, a) is a training pair and on the "
            "others. a + b = b + a: a model that treats both orders alike gets the first group "
            "right while it memorises, so the whole test set's accuracy starts near that "
            "group's share of it; the second group measures generalisation."), "curves")
    page.add("Measured", json_block(measured)
             + f"<p class='caption'>Command: <code>lenslab replicate grokking --out "
               f"{escape(out)}</code>.</p>", "measured")
    return finish("grokking", out, page, measured, short)

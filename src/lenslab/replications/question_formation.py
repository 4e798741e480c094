"""Which rule under ambiguous data: English question formation (McCoy, Frank and Linzen 2020,
"Does syntax need to grow on trees?"; for transformers, Petty and Frank 2021 and Murty et al.
2023).

The training questions fit two rules: move the main clause's auxiliary to the front
(hierarchical) or the first auxiliary of the sentence (linear). Questions of sentences whose
subject carries a relative clause tell them apart: ``my newt that does giggle doesn't swim .``
becomes ``doesn't my newt that does giggle swim ?`` under the hierarchical rule and ``does my
newt that giggle doesn't swim ?`` under the linear one.

Published: McCoy et al.'s sequential networks mostly do not take the hierarchical rule; the one
result their repository ships (``GRU_GRU_question_location_0.001_256.results``: a GRU
encoder-decoder with location attention, three runs) puts the main auxiliary first on 80.0% of
the generalization questions (65.1% to 90.2%) and the first auxiliary on 16.7%. Transformers
stopped when their in-distribution accuracy saturates generalize linearly (Petty and Frank 2021,
"Transformers generalize linearly"); Murty et al. 2023 find hierarchical generalization only
long after that point ("structural grokking", hundreds of thousands of steps).

Here, on a CPU: a 4-layer GPT trained as a language model on the ambiguous data until its
in-distribution questions are right, then asked the disambiguating ones; and the same model
with a tenth of its training questions disambiguating, the control that shows the probe finds
the hierarchical rule when the data asks for it.
"""

from __future__ import annotations

from pathlib import Path

from lenslab.config import RunConfig
from lenslab.examples import example_config
from lenslab.html import Page, escape, figure_block, figure_to_svg, pyplot, table_html
from lenslab.probes.rules import RuleTest, rule_test
from lenslab.replications import (
    Replication,
    finish,
    json_block,
    register,
    train_fresh,
    verdict_html,
)
from lenslab.run import Run

IN_DOMAIN_AT_LEAST = 0.9  # the ambiguous run's held-out training-like questions, exact
CONTROL_SHARE = 0.1  # the control's share of disambiguating training questions
CONTROL_AT_LEAST = 0.9  # ... and its share of hierarchical first words
#: McCoy et al.'s repository, GRU encoder-decoder with location attention, mean of three runs.
PUBLISHED_GRU = {"main auxiliary first": 0.8003, "first auxiliary first": 0.1673,
                 "test questions exact": 0.8163, "main auxiliary first, object RC": 0.7025,
                 "main auxiliary first, subject RC, transitive": 0.9149,
                 "main auxiliary first, subject RC, intransitive": 0.7782}


def question_config(disambiguating: float = 0.0, steps: int = 3000, seed: int = 0) -> RunConfig:
    """The ``question`` example (4 layers, width 128, AdamW 1e-3, batch 64), with
    ``disambiguating`` of its training questions from sentences with a relative clause on the
    subject."""
    cfg = example_config("question")
    name = "question-ambiguous" if disambiguating == 0 else f"question-disambiguating-{disambiguating}"
    return cfg.model_copy(update={
        "name": name, "seed": seed,
        "data": cfg.data.model_copy(update={"disambiguating": disambiguating}),
        "train": cfg.train.model_copy(update={"max_steps": steps}),
    })


def question_checks(ambiguous: RuleTest | None, control: RuleTest | None) -> tuple[dict, list[str]]:
    """The targets: the ambiguous run writes at least :data:`IN_DOMAIN_AT_LEAST` of the
    in-distribution questions exactly and, where the rules disagree, takes the linear rule (its
    share's 95% interval above one half); the control puts the main auxiliary first on at least
    :data:`CONTROL_AT_LEAST` of them."""
    measured, short = {}, []
    for name, t in (("ambiguous", ambiguous), ("control", control)):
        if t is not None:
            measured[name] = {"verdict": t.verdict, "in_distribution_exact": t.in_distribution_acc,
                              "shares": t.shares, "intervals": t.intervals,
                              "questions": t.n_sequences, "by_relative_clause": t.by_group}
    if ambiguous is not None:
        if ambiguous.in_distribution_acc < IN_DOMAIN_AT_LEAST:
            short.append(f"ambiguous data: in-distribution questions {ambiguous.in_distribution_acc:.3f} "
                         f"exact (< {IN_DOMAIN_AT_LEAST})")
        if ambiguous.verdict != "linear":
            lo, hi = ambiguous.intervals["linear"]
            short.append(f"ambiguous data: the linear rule gives {ambiguous.shares['linear']:.3f} "
                         f"of the first words ({lo:.3f} to {hi:.3f}), not clearly most")
    if control is not None and control.shares["hierarchical"] < CONTROL_AT_LEAST:
        short.append(f"control ({CONTROL_SHARE:.0%} disambiguating): the main auxiliary comes first "
                     f"in {control.shares['hierarchical']:.3f} (< {CONTROL_AT_LEAST})")
    return measured, short


def _figure(curves: dict[str, list[dict]]):
    plt = pyplot()
    fig, axes = plt.subplots(1, len(curves), figsize=(5.2 * len(curves), 3.4), squeeze=False)
    for ax, (name, mets) in zip(axes[0], curves.items()):
        ev = [m for m in mets if "follows_hierarchical" in m]
        steps = [m["step"] + 1 for m in ev]
        ax.plot(steps, [m["question_acc"] for m in ev], color="#555", lw=1,
                label="training-like questions, exact")
        ax.plot(steps, [m["follows_hierarchical"] for m in ev], "o-", ms=3, color="#3056d3",
                label="main auxiliary first (hierarchical)")
        ax.plot(steps, [m["follows_linear"] for m in ev], "o-", ms=3, color="#e07b00",
                label="first auxiliary first (linear)")
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("step")
        ax.grid(alpha=0.25)
        ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    return fig


@register("question-formation", "ambiguous question-formation data: which auxiliary moves "
                                "(McCoy et al. 2020; Petty and Frank 2021)")
def replicate_question_formation(out: Path, progress: bool = True,
                                 steps: int = 3000) -> Replication:
    measured: dict = {"published_gru_location_attention": PUBLISHED_GRU}
    short: list[str] = []
    tests: dict[str, RuleTest | None] = {"ambiguous": None, "control": None}
    curves = {}
    for name, share in (("ambiguous", 0.0), ("control", CONTROL_SHARE)):
        cfg = question_config(share, steps)
        run = out / cfg.name
        res, m, s = train_fresh(cfg, run, progress)
        measured[f"train_{name}"] = m
        short += s
        curves[f"{name} ({share:.0%} of questions disambiguating)"] = Run(run).metrics()
        if res.status == "completed":
            tests[name] = rule_test(run, n=1000, bootstrap=500)
    m, s = question_checks(tests["ambiguous"], tests["control"])
    measured.update(m)
    short += s
    targets = (f"trained on ambiguous questions, the GPT writes at least {IN_DOMAIN_AT_LEAST:.0%} "
               "of held-out training-like questions exactly and moves the first auxiliary (the "
               "linear rule: its share's 95% interval above one half) where the rules disagree, "
               "as transformers stopped at in-distribution saturation do (Petty and Frank 2021; "
               f"Murty et al. 2023); with {CONTROL_SHARE:.0%} of its questions disambiguating, it "
               f"moves the main auxiliary in at least {CONTROL_AT_LEAST:.0%}")
    page = Page("Replication: which rule under ambiguous data (question formation)",
                "McCoy et al. 2020's test on this CPU: yes/no questions whose training examples "
                "fit moving the main auxiliary and moving the first.")
    page.add("Result", verdict_html(not short, short, targets), "result")
    page.add("Published", table_html([{"measure": k, "GRU with location attention": v}
                                      for k, v in PUBLISHED_GRU.items()], digits=3)
             + "<p class='caption'>McCoy et al.'s repository (tommccoy1/rnn-hierarchical-biases, "
               "the results file it ships), mean of three runs on their generalization set. "
               "For transformers: Petty and Frank 2021 report linear generalization; Murty et "
               "al. 2023 hierarchical generalization only after very long training.</p>",
             "published")
    if any(curves.values()):
        page.add("During training", figure_block(
            figure_to_svg(_figure(curves)),
            "At each evaluation, 128 held-out questions of each kind: training-like ones "
            "(exact match) and disambiguating ones (which auxiliary the model puts first)."),
            "curves")
    for name, t in tests.items():
        if t is not None:
            page.add(f"The probe: {name}", t.to_html(), f"probe-{name}")
    page.add("Measured", json_block(measured)
             + f"<p class='caption'>Command: <code>lenslab replicate question-formation --out "
               f"{escape(out)}</code>.</p>", "measured")
    return finish("question-formation", out, page, measured, short)

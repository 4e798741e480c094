"""Position encoding and length generalization (Kazemnejad et al. 2023, "The Impact of
Positional Encoding on Length Generalization in Transformers", NeurIPS).

Published: decoder-only transformers (about 107M parameters) trained on task instances up to
length 20 and tested up to 40, with five position encodings. No position encoding at all (NoPE)
extrapolates best: it has the best mean reciprocal rank over their tasks (0.69), ahead of T5's
relative bias, and ALiBi, rotary and absolute encodings are not suited to length generalization.

Here, on a CPU: the same small GPT with learned absolute positions, rotary positions or none,
trained to copy strings of 1 to 10 symbols and asked every length to 20 (twice the longest
trained, as in the paper). The length probe reads each: exact match in the training range, past
it, and how far the in-range accuracy holds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lenslab.config import RunConfig, config_from_dict
from lenslab.html import Page, escape, figure_block, figure_to_svg, table_html
from lenslab.probes.length import LengthTest, length_generalization
from lenslab.replications import (
    Replication,
    finish,
    json_block,
    register,
    train_fresh,
    verdict_html,
)

POSITIONS = ("none", "learned", "rope")
LABELS = {"none": "no positions", "learned": "learned positions", "rope": "rotary positions"}
MAX_LEN = 10  # trained lengths 1..MAX_LEN, probed to 2 * MAX_LEN
IN_RANGE_AT_LEAST = 0.9  # every model must copy in its training range, or nothing is judged
MARGIN = 0.1  # NoPE's exact match past the range, above each explicit encoding's by this much
PUBLISHED_MRR = 0.69  # NoPE's mean reciprocal rank over the paper's tasks (best of five)


def copy_config(position: str, steps: int = 4000, seed: int = 0) -> RunConfig:
    """A 3-layer, 64-wide GPT copying 1 to 10 of 10 symbols (context 40: room for length 20),
    AdamW at a constant 1e-3, batch 64."""
    return config_from_dict({
        "name": f"copy-{position}", "seed": seed,
        "model": {"kind": "gpt", "n_layer": 3, "n_head": 4, "d_model": 64,
                  "n_ctx": 4 * MAX_LEN, "position": position},
        "data": {"task": "sequence", "op": "copy", "symbols": 10, "min_len": 1,
                 "max_len": MAX_LEN, "eval_max_len": 2 * MAX_LEN},
        "optim": {"lr": 1e-3, "schedule": "constant", "batch_size": 64, "betas": [0.9, 0.999]},
        "train": {"max_steps": steps, "eval_every": 250, "checkpoint_every": 500},
    }, "length_positions")


def past_range(t: LengthTest) -> float:
    """Mean exact match over the lengths past the training range that were asked."""
    hi = t.train_range[1]
    return float(np.mean([e for L, e in zip(t.lengths, t.exact_match) if L > hi]))


def length_checks(tests: dict[str, LengthTest]) -> tuple[dict, list[str]]:
    """Each model's exact match in and past the range, and the targets: every model at least
    :data:`IN_RANGE_AT_LEAST` in range; NoPE past the range at least :data:`MARGIN` above each
    explicit encoding."""
    measured = {p: {"in_range": t.in_range, "past_range": past_range(t), "holds_to": t.holds_to,
                    "exact_match_by_length": dict(zip(t.lengths, t.exact_match))}
                for p, t in tests.items()}
    short = [f"{LABELS[p]}: only {m['in_range']:.3f} of the trained lengths copied exactly "
             f"(< {IN_RANGE_AT_LEAST})" for p, m in measured.items()
             if m["in_range"] < IN_RANGE_AT_LEAST]
    if "none" in measured:
        nope = measured["none"]["past_range"]
        for p in ("learned", "rope"):
            if p in measured and nope - measured[p]["past_range"] < MARGIN:
                short.append(f"past the trained lengths no positions get {nope:.3f}, "
                             f"{LABELS[p]} {measured[p]['past_range']:.3f}: not {MARGIN} "
                             "better")
    return measured, short


@register("length-positions", "no position encoding extrapolates copying past the trained "
                              "lengths, learned and rotary positions do not (Kazemnejad et al. "
                              "2023)")
def replicate_length_positions(out: Path, progress: bool = True, steps: int = 4000) -> Replication:
    tests: dict[str, LengthTest] = {}
    measured: dict = {}
    short: list[str] = []
    for p in POSITIONS:
        run = out / f"copy-{p}"
        res, m, s = train_fresh(copy_config(p, steps), run, progress)
        measured[f"train_{p}"] = m
        short += s
        if res.status == "completed":
            tests[p] = length_generalization(run, n=256, bootstrap=500)
    m, s = length_checks(tests)
    measured.update(m)
    short += s
    targets = (f"every encoding copies the trained lengths 1-{MAX_LEN} at least "
               f"{IN_RANGE_AT_LEAST:.0%} exactly; past them (lengths {MAX_LEN + 1}-{2 * MAX_LEN}), "
               f"no position encoding beats learned and rotary positions by {MARGIN} or more in "
               "mean exact match (Kazemnejad et al.: NoPE ranks first of five encodings, mean "
               f"reciprocal rank {PUBLISHED_MRR})")
    page = Page("Replication: position encoding and length generalization",
                "Kazemnejad et al. 2023 on this CPU: one small GPT with no positions, learned "
                "absolute positions or rotary positions, trained to copy 1 to "
                f"{MAX_LEN} symbols and asked up to {2 * MAX_LEN}.")
    page.add("Result", verdict_html(not short, short, targets), "result")
    if tests:
        rows = [{"positions": LABELS[p], f"exact match, lengths 1-{MAX_LEN}": t.in_range,
                 f"exact match, lengths {MAX_LEN + 1}-{2 * MAX_LEN}": past_range(t),
                 "in-range accuracy holds to length": t.holds_to}
                for p, t in tests.items()]
        first, *others = tests.values()
        page.add("Measured by the length probe", table_html(rows, digits=3) + figure_block(
            figure_to_svg(first.figure(others=others)),
            "Exact match (with 95% intervals) and per-token accuracy at each length; the shaded "
            "band is the training range.") + "".join(
            f"<p><b>{escape(t.model)}</b>: {escape(t.summary)}.</p>" for t in tests.values()),
            "probe")
    page.add("Measured", json_block(measured)
             + f"<p class='caption'>Command: <code>lenslab replicate length-positions --out "
               f"{escape(out)}</code>.</p>", "measured")
    return finish("length-positions", out, page, measured, short)

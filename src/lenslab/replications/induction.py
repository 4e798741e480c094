"""Replication ``induction``: a 2-layer attention-only transformer forms induction heads in a
phase change; a 1-layer one cannot (Olsson et al. 2022)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

from lenslab._io import atomic_write_json, dumps
from lenslab.attention import GPTLens, random_battery, score_battery
from lenslab.examples import example_config
from lenslab.html import Page, escape
from lenslab.icl.score import (
    RunModel,
    head_scores,
    load_run_model,
    phase_change,
    repeat_length,
    repeated_token_loss,
)
from lenslab.replications import Replication, register
from lenslab.training import train


def _induction_cfg(layers: int, steps: int):
    cfg = example_config("induction")
    return cfg.model_copy(update={
        "name": f"induction-{layers}L",
        "model": cfg.model.model_copy(update={"n_layer": layers}),
        "train": cfg.train.model_copy(update={"max_steps": steps, "eval_every": 100,
                                              "checkpoint_every": 50, "keep_checkpoints": 1000}),
    })


@register("induction", "2-layer attention-only GPT forms induction heads by step 1000; the "
                       "1-layer control does not (Olsson et al. 2022)")
def replicate_induction(out: Path, progress: bool = True, steps: int = 1000) -> Replication:
    measured, short = {}, []
    phases = {}
    for layers in (2, 1):
        run = out / f"induction-{layers}L"
        if run.exists():
            shutil.rmtree(run)
        res = train(_induction_cfg(layers, steps), run, progress=progress)
        if res.status != "completed":
            short.append(f"{layers}-layer run ended {res.status}: {res.message}")
            continue
        rm = load_run_model(run)
        ind, prev, head = head_scores(rm)
        rep = repeated_token_loss(rm.model, rm.cfg.model.vocab_size, rm.n_ctx)
        measured[f"{layers}L"] = {"prefix_matching": ind, "prev_token": prev,
                                  "repeat_loss": rep, "best_head": list(head)}
        if layers == 2:
            ph = phase_change(run, progress=progress)
            phases[layers] = ph
            measured["2L"]["jump"] = {"detected": ph.detected, "from_step": ph.jump_from,
                                      "to_step": ph.jump_to, "step": ph.jump_step}
            lens_prev = _layer0_prev(rm)
            measured["2L"]["layer0_prev_token"] = lens_prev
            checks = [(ind >= 0.7, f"prefix matching {ind:.3f} < 0.7"),
                      (rep <= 0.1, f"repeated-token loss {rep:.3f} > 0.1 nats"),
                      (lens_prev >= 0.3, f"best layer-0 previous-token score {lens_prev:.3f} < 0.3"),
                      (ph.detected, "no jump from under 0.1 to over 0.6 detected")]
        else:
            # a model that copies a token from its context without knowing which one comes next
            # can do no better than ln(L - 1) on L distinct repeated tokens
            floor = math.log(repeat_length(rm.n_ctx, rm.cfg.model.vocab_size) - 1) - 0.1
            measured["1L"]["repeat_loss_target"] = floor
            checks = [(ind <= 0.1, f"1-layer prefix matching {ind:.3f} > 0.1"),
                      (rep >= floor, f"1-layer repeated-token loss {rep:.3f} < ln(L - 1) - 0.1 "
                                     f"= {floor:.3f}")]
        short += [msg for ok, msg in checks if not ok]
    page = Page("Replication: induction heads", "Olsson et al. 2022, on this CPU. Targets: 2-layer "
                "prefix matching >= 0.7, repeated-token loss <= 0.1, layer-0 previous-token >= 0.3, "
                "a jump from < 0.1 to > 0.6; 1-layer control prefix matching <= 0.1 and "
                "repeated-token loss >= ln(L - 1) - 0.1 for L distinct repeated tokens (the best a "
                "model that copies without knowing which token comes next can do).")
    if 2 in phases:
        page.add("Phase change (2 layers)", phases[2].to_html())
    page.add("Measured", f"<pre>{escape(_json(measured))}</pre>"
             + ("<p>All targets met.</p>" if not short else
                "<ul>" + "".join(f"<li>{escape(s)}</li>" for s in short) + "</ul>"))
    page.write(out / "induction.html")
    atomic_write_json(out / "induction.json", {"measured": measured, "shortfalls": short})
    return Replication("induction", not short, measured, short, out / "induction.html")


def _layer0_prev(rm: RunModel) -> float:
    lens = GPTLens(rm.model, rm.task)
    means, _ = score_battery(lens, random_battery(lens, 8, seed=11))
    return float(means["prev_token"][0].max())


def _json(d) -> str:

    return json.dumps(json.loads(dumps(d)), indent=2)

"""The attention lab's entry point: what ``lenslab heads`` runs, as a Python API."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch

from lenslab.attention import viewer
from lenslab.attention.attribution import head_importance, rollout
from lenslab.attention.capture import HFLens, LensModel, load_lens
from lenslab.attention.heads import (
    HeadReport,
    classify,
    random_battery,
    read_prompt_file,
)
from lenslab.errors import ModelError
from lenslab.result import write_result
from lenslab.run import Run


def run_heads(model: str | LensModel, out: Optional[str | Path] = None,
              prompts_file: Optional[str | Path] = None, progress: bool = True,
              command: Optional[str] = None) -> HeadReport:
    """Classify every head against its nulls, measure how much each matters (zero and mean
    ablation), add a rollout and a viewer example, and write ``heads.json``, ``.html`` and
    ``.png`` into ``out`` (a run folder's ``analysis/`` when ``model`` is a run and ``out`` is
    None; nothing is written for a live model without ``out``)."""
    lens = load_lens(model) if not isinstance(model, LensModel) else model
    prompts = read_prompt_file(prompts_file) if prompts_file is not None else None
    report = classify(lens, prompts, progress=progress)
    # a pretrained HF model is far larger than a lenslab run: 4 sequences keep its 2 x L x H
    # ablated forwards to seconds on a CPU
    n_seq = 4 if isinstance(lens, HFLens) else 16
    batch = torch.tensor([p.ids for p in random_battery(lens, n_seq, seed=1)])
    try:
        imp = head_importance(lens, batch)
    except ModelError as e:  # an architecture whose head outputs lenslab cannot reach
        report.importance_unavailable = str(e)
    else:
        report.importance = imp.to_dict()
        for h in report.heads:
            h["importance"] = {"zero_ablation": float(imp.zero[h["layer"], h["head"]]),
                               "mean_ablation": float(imp.mean[h["layer"], h["head"]])}
    example = random_battery(lens, 1, length=min(12, lens.n_ctx // 2 - 1), seed=7)[0]
    report.rollout = {"tokens": _token_strings(lens, example.ids),
                      "matrix": rollout(lens, torch.tensor([example.ids])).tolist()}
    shown = random_battery(lens, 1, length=min(16, lens.n_ctx // 2 - 1), seed=3)[0]
    report.example = viewer.encode_input(viewer_input(lens, "repeated random tokens", shown.ids))
    if out is None and isinstance(model, (str, Path)) and Run.is_run(model):
        out = Run(model).analysis_dir
    if out is not None:
        write_result(report, out, command)
    return report


def _token_strings(lens: LensModel, ids: list[int]) -> list[str]:
    tok = getattr(lens, "tokenizer", None)
    if tok is not None:
        return list(tok.convert_ids_to_tokens(ids))
    task = getattr(lens, "task", None)
    return task.token_str(ids) if task is not None else [str(i) for i in ids]


def viewer_input(lens: LensModel, title: str, ids: list[int]) -> "viewer.ViewerInput":
    """A viewer input of token ids: their strings, the model's patterns, which are special."""
    pats = lens.capture(torch.tensor([ids]))
    tok = getattr(lens, "tokenizer", None)
    special = [i in set(tok.all_special_ids) for i in ids] if tok is not None else None
    return viewer.ViewerInput(title, _token_strings(lens, ids), pats, special)

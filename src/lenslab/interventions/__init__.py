"""Interventions: does a component carry the answer?

* :func:`activation_patching` (:mod:`~lenslab.interventions.patching`): clean and corrupted
  prompts; each component's activation copied from one run into the other, per head, per head
  and position, per layer and position of the residual stream, or each head's direct effect on
  the logits; effects normalised between the corrupted (0) and clean (1) runs, with bootstrap
  intervals over prompt pairs and two nulls (a patch between two clean prompts with the same
  answer, and a random direction of the same norm). Result kind ``patch``.
* :func:`path_patching` and :func:`attribution_patching` (:mod:`~lenslab.interventions.paths`):
  a sender head's effect through the receivers' queries, keys or values only (result kind
  ``path-patching``), and first-order estimates of every head's effect from one backward pass,
  with their Spearman agreement with real patching.
* :func:`logit_lens` (:mod:`~lenslab.interventions.lens`): the answer's rank and probability
  after each layer. Result kind ``logit-lens``.
* :func:`patch_run` and :func:`lens_run`: both on a run folder, with prompts the task makes
  (induction: :func:`induction_prompts`); :func:`patch_model` and :func:`lens_text` on a
  Hugging Face causal LM (GPT-2, LLaMA-style, OPT, GPT-NeoX; :mod:`~lenslab.interventions.hf`)
  with pairs from a file or one text.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from lenslab.errors import DataError
from lenslab.interventions.lens import LogitLens, logit_lens
from lenslab.interventions.patching import (
    WHAT,
    PatchingResult,
    Prompts,
    activation_patching,
    induction_prompts,
)
from lenslab.interventions.paths import (
    PathResult,
    attribution_agreement,
    attribution_patching,
    path_patching,
)

__all__ = ["patch_model", "lens_text", "activation_patching", "path_patching", "attribution_patching",
           "attribution_agreement", "logit_lens", "induction_prompts", "patch_run", "path_run",
           "lens_run", "PatchingResult", "PathResult", "LogitLens", "Prompts", "WHAT"]


def task_prompts(run, n: int, seed: int = 0, length: Optional[int] = None) -> Prompts:
    """Clean/corrupted prompts for a run's task (induction-like tasks: repeated tokens)."""
    cfg = run.config
    if cfg.model.kind != "gpt":
        raise DataError(f"{run.path}: patching reads lenslab GPT runs, not model.kind = "
                        f"{cfg.model.kind!r}")
    if cfg.data.task not in ("induction", "repeat"):
        raise DataError(f"{run.path}: the task {cfg.data.task!r} makes no clean/corrupted "
                        "prompts yet; patching reads induction and repeat runs")
    T = min(length or cfg.data.seq_len, cfg.model.n_ctx)
    return induction_prompts(run.resolved.model.vocab_size, T, n, seed)


def patch_run(run_dir: str | Path, what: str = "heads", direction: str = "denoise",
              n: int = 64, step: Optional[int] = None, bootstrap: int = 1000, seed: int = 0,
              length: Optional[int] = None) -> PatchingResult:
    """:func:`activation_patching` on a run's model at ``step`` (default: the last verified),
    with prompts its task makes; heads of each layer are also patched jointly."""
    from lenslab.run import Run

    run = Run.open(run_dir)
    ck = run.checkpoint(step)
    model = run.load_model(ck)
    prompts = task_prompts(run, n, seed, length)
    joint = {f"all heads of layer {layer}": [(layer, h) for h in range(model.n_head)]
             for layer in range(model.n_layer)}
    res = activation_patching(model, prompts, what, direction, joint, bootstrap, seed,
                              str(run.path), ck.step)
    if what == "heads" and direction == "denoise" and not res.nothing_to_restore:
        est = attribution_patching(model, prompts)
        res.attribution = est.tolist()
        res.attribution_spearman = attribution_agreement(est, res.effect)
    return res


def path_run(run_dir: str | Path, sender: tuple[int, int], receivers: Optional[list] = None,
             n: int = 64, step: Optional[int] = None, bootstrap: int = 1000, seed: int = 0,
             length: Optional[int] = None) -> PathResult:
    """:func:`path_patching` on a run's model: ``sender`` to ``receivers`` (default: every
    head of the next layer) through their queries, keys and values."""
    from lenslab.run import Run

    run = Run.open(run_dir)
    ck = run.checkpoint(step)
    model = run.load_model(ck)
    sl, sh = sender
    if not (0 <= sl < model.n_layer and 0 <= sh < model.n_head):
        raise DataError(f"sender L{sl}H{sh} is not a head of this {model.n_layer}-layer, "
                        f"{model.n_head}-head model")
    if receivers is None:
        if sl + 1 >= model.n_layer:
            raise DataError(f"L{sl}H{sh} is in the last layer: no head receives from it")
        receivers = [(sl + 1, h) for h in range(model.n_head)]
    return path_patching(model, task_prompts(run, n, seed, length), sender, receivers,
                         bootstrap=bootstrap, seed=seed, run_dir=str(run.path), step=ck.step)


def lens_run(run_dir: str | Path, n: int = 256, step: Optional[int] = None, seed: int = 0,
             length: Optional[int] = None) -> LogitLens:
    """:func:`logit_lens` on a run's model with the clean prompts its task makes."""
    from lenslab.run import Run

    run = Run.open(run_dir)
    ck = run.checkpoint(step)
    p = task_prompts(run, n, seed, length)
    return logit_lens(run.load_model(ck), p.clean, p.answer, str(run.path), ck.step, p.description)


def patch_model(lens, pairs: str | Path, what: str = "heads", direction: str = "denoise",
                bootstrap: int = 1000, seed: int = 0) -> PatchingResult:
    """:func:`activation_patching` on a Hugging Face model (a lens from
    :func:`lenslab.attention.load_lens`) with the pairs of a JSON-lines file
    (:func:`~lenslab.interventions.hf.read_pairs`)."""
    from lenslab.interventions.hf import HFPatchable, read_pairs

    model = HFPatchable(lens)
    prompts = read_pairs(pairs, lens.tokenizer, lens.name)
    joint = {f"all heads of layer {layer}": [(layer, h) for h in range(model.n_head)]
             for layer in range(model.n_layer)}
    return activation_patching(model, prompts, what, direction, joint, bootstrap, seed,
                               lens.name, 0)


def lens_text(lens, text: str, answer: Optional[str] = None) -> LogitLens:
    """:func:`logit_lens` of a Hugging Face causal LM on one text: the rank of ``answer`` (one
    token; default: the model's own prediction) at the last position after each layer."""
    import torch

    from lenslab.interventions.hf import HFPatchable

    model = HFPatchable(lens)
    ids = lens.tokenize(text).tensor()
    if answer is None:
        with torch.no_grad():
            a = model(ids)[:, -1].argmax(-1)
        what = "the model's own next token"
    else:
        t = lens.tokenizer(answer, add_special_tokens=False)["input_ids"]
        if len(t) != 1:
            raise DataError(f"the answer {answer!r} is {len(t)} tokens, not one")
        a = torch.tensor(t)
        what = f"answer {answer!r}"
    return logit_lens(model, ids, a, lens.name, 0, f"one text of {ids.shape[1]} tokens; {what}")

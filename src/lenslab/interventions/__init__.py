"""Interventions: does a component carry the answer?

* :func:`activation_patching` (:mod:`~lenslab.interventions.patching`): clean and corrupted
  prompts; each component's activation copied from one run into the other, per head, per head
  and position, per layer and position of the residual stream, or each head's direct effect on
  the logits; effects normalised between the corrupted (0) and clean (1) runs, with bootstrap
  intervals over prompt pairs and two nulls (a patch between two clean prompts with the same
  answer, and a random direction of the same norm). Result kind ``patch``.
* :func:`path_patching` (:mod:`~lenslab.interventions.paths`): a sender head's effect through
  the receivers' queries, keys or values only (result kind ``path-patching``).
* :func:`attribute` and :func:`attribution_patching` (:mod:`~lenslab.interventions.attribute`):
  first-order estimates of every head's, head and position's and residual position's effect
  from one backward pass, with intervals and nulls (result kind ``attribution``), and their
  Spearman agreement with real patching.
* :func:`aligned_patching` (:mod:`~lenslab.interventions.aligned`): a head's output copied
  between two prompts of different lengths at aligned positions (two phrasings' shared words):
  does the output move? The paraphrase lab's causal column (:func:`paraphrase_causal`).
* :func:`logit_lens` (:mod:`~lenslab.interventions.lens`): the answer's rank and probability
  after each layer. Result kind ``logit-lens``.
* :func:`patch_run`, :func:`attribute_run` and :func:`lens_run`: on a run folder, with prompts
  the task makes (induction: :func:`induction_prompts`); :func:`patch_model`,
  :func:`attribute_model` and :func:`lens_text` on a Hugging Face causal LM (GPT-2,
  LLaMA-style, OPT, GPT-NeoX) or, for patching and attribution, an encoder (MiniLM, BERT,
  RoBERTa; scored by the representation-shift metric) (:mod:`~lenslab.interventions.hf`), with
  pairs from a file or one text.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from lenslab.errors import DataError
from lenslab.interventions.aligned import AlignedItem, aligned_patching
from lenslab.interventions.attribute import (
    AttributionResult,
    attribute,
    attribution_agreement,
    attribution_patching,
)
from lenslab.interventions.lens import LogitLens, logit_lens
from lenslab.interventions.patching import (
    WHAT,
    PatchingResult,
    Prompts,
    activation_patching,
    induction_prompts,
)
from lenslab.interventions.paths import PathResult, path_patching

__all__ = ["patch_model", "lens_text", "activation_patching", "path_patching", "attribution_patching",
           "attribution_agreement", "attribute", "attribute_run", "attribute_model", "logit_lens",
           "induction_prompts", "patch_run", "path_run", "lens_run", "PatchingResult", "PathResult",
           "AttributionResult", "LogitLens", "Prompts", "WHAT", "aligned_patching", "AlignedItem",
           "model_of", "paraphrase_causal"]


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


def attribute_run(run_dir: str | Path, n: int = 64, step: Optional[int] = None,
                  bootstrap: int = 1000, seed: int = 0, length: Optional[int] = None,
                  check: bool = False) -> AttributionResult:
    """:func:`attribute` on a run's model at ``step`` with prompts its task makes."""
    from lenslab.run import Run

    run = Run.open(run_dir)
    ck = run.checkpoint(step)
    return attribute(run.load_model(ck), task_prompts(run, n, seed, length), True, bootstrap,
                     seed, check, str(run.path), ck.step)


def attribute_model(lens, pairs: str | Path, bootstrap: int = 1000, seed: int = 0,
                    check: bool = False) -> AttributionResult:
    """:func:`attribute` on a Hugging Face model with the pairs of a JSON-lines file (first
    order only: the QK fix needs lenslab's GPT)."""
    model = hf_model(lens)
    return attribute(model, hf_pairs(model, pairs), False, bootstrap, seed, check, lens.name, 0)


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


def model_of(lens):
    """What the interventions lab patches for a lens of the attention lab: a lenslab GPT run's
    model itself, or the adapter of a Hugging Face model (:func:`hf_model`)."""
    model = getattr(lens, "model", None)
    if getattr(model, "blocks", None) is not None and hasattr(model, "n_layer"):
        return model
    return hf_model(lens)


def paraphrase_causal(lens, result, alignments, k: Optional[int] = None,
                      bootstrap: int = 1000, seed: int = 0) -> list[dict]:
    """The paraphrase result's causal column: :func:`aligned_patching` of its ``k`` most
    phrasing-sensitive and ``k`` most stable heads (``result.causal_heads(k)``) over
    ``alignments`` (from ``lenslab.attention.paraphrase.paraphrase_alignments``); each record
    gets its head's ``role``. Assign it to ``result.causal`` to show it in the result's page."""
    chosen = result.causal_heads(k)
    rows = aligned_patching(model_of(lens), alignments, [h for h, _ in chosen], bootstrap, seed)
    return [dict(r, role=role) for r, (_, role) in zip(rows, chosen)]


def hf_model(lens):
    """The interventions adapter of a Hugging Face lens (causal LM or encoder), or a one-line
    error for anything else."""
    from lenslab.errors import ModelError
    from lenslab.interventions.hf import patchable

    model = patchable(lens)
    if model is None:
        raise ModelError(f"{lens.name}: give a Hugging Face model here (a run folder is patched "
                         "with the prompts its task makes, without --pairs)")
    return model


def hf_pairs(model, pairs: str | Path) -> Prompts:
    """The pairs file for ``model`` (an encoder's pairs need no answer)."""
    from lenslab.interventions.hf import read_pairs

    return read_pairs(pairs, model.lens.tokenizer, model.name,
                      answers=getattr(model, "lm_head", None) is not None)


def patch_model(lens, pairs: str | Path, what: str = "heads", direction: str = "denoise",
                bootstrap: int = 1000, seed: int = 0) -> PatchingResult:
    """:func:`activation_patching` on a Hugging Face model (a lens from
    :func:`lenslab.attention.load_lens`) with the pairs of a JSON-lines file
    (:func:`~lenslab.interventions.hf.read_pairs`). Causal LMs are scored by the answer's
    log-probability; encoders (MiniLM, BERT) by the representation-shift metric, and their
    pairs need no answer."""
    model = hf_model(lens)
    prompts = hf_pairs(model, pairs)
    joint = {f"all heads of layer {layer}": [(layer, h) for h in range(model.n_head)]
             for layer in range(model.n_layer)}
    return activation_patching(model, prompts, what, direction, joint, bootstrap, seed,
                               lens.name, 0)


def lens_text(lens, text: str, answer: Optional[str] = None) -> LogitLens:
    """:func:`logit_lens` of a Hugging Face causal LM on one text: the rank of ``answer`` (one
    token; default: the model's own prediction) at the last position after each layer."""
    import torch

    model = hf_model(lens)
    if getattr(model, "lm_head", None) is None:
        raise DataError(f"{lens.name} is an encoder: the logit lens reads the residual stream "
                        "through an unembedding, which it has none of; patch it instead")
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

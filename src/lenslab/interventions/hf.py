"""Hugging Face models in the interventions lab, through the same hook points as lenslab's GPT.

:class:`HFPatchable` wraps a causal language model loaded by
:func:`lenslab.attention.capture.load_lens` (GPT-2, LLaMA-style, OPT, GPT-NeoX) and offers what
:func:`~lenslab.interventions.patching.activation_patching` and
:func:`~lenslab.interventions.lens.logit_lens` call: ``model(ids, resid_hook=, z_hook=)``
returning logits, ``n_layer``, ``n_head``, ``ln_f`` and ``lm_head``. The hooks are PyTorch
forward pre-hooks: the residual stream is a decoder layer's input (and the final norm's), a
head's output is its slice of the attention output projection's input (every one of these
architectures concatenates the heads before projecting them). Path patching, direct effects and
AtP*'s QK fix need the query, key and value projections of lenslab's GPT and are refused with
a one-line reason.

:func:`read_pairs` reads a pairs file for any tokenizer: JSON lines ``{"clean": ..., "corrupt":
..., "answer": ...}`` (``answer``: the clean prompt's next token, as text), with a one-line
error for an empty file, pairs of different token lengths (which pair, both lengths) and an
answer that is not one token.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import torch

from lenslab.errors import DataError, ModelError
from lenslab.interventions.patching import Prompts

#: Where each architecture keeps its decoder layers, attention output projection, final norm
#: and unembedding (dotted paths from the model; ``{i}`` is the layer).
ARCHS = {
    "gpt2": ("transformer.h", "transformer.h.{i}.attn.c_proj", "transformer.ln_f", "lm_head"),
    "llama": ("model.layers", "model.layers.{i}.self_attn.o_proj", "model.norm", "lm_head"),
    "mistral": ("model.layers", "model.layers.{i}.self_attn.o_proj", "model.norm", "lm_head"),
    "qwen2": ("model.layers", "model.layers.{i}.self_attn.o_proj", "model.norm", "lm_head"),
    "opt": ("model.decoder.layers", "model.decoder.layers.{i}.self_attn.out_proj",
            "model.decoder.final_layer_norm", "lm_head"),
    "gpt_neox": ("gpt_neox.layers", "gpt_neox.layers.{i}.attention.dense",
                 "gpt_neox.final_layer_norm", "lm_head|embed_out"),
}


def _get(root, dotted: str):
    """``root.a.b.0.c``; ``x|y``: the first of the alternatives that exists (transformers
    renames modules between versions)."""
    for alt in dotted.split("|"):
        obj = root
        try:
            for part in alt.split("."):
                obj = obj[int(part)] if part.isdigit() else getattr(obj, part)
            return obj
        except (AttributeError, IndexError):
            continue
    raise ModelError(f"{type(root).__name__} has no {dotted.replace('|', ' or ')}")


class HFPatchable:
    """A Hugging Face causal LM with lenslab's ``resid_hook`` and ``z_hook``."""

    def __init__(self, lens):
        model = lens.model
        mtype = getattr(model.config, "model_type", "")
        if mtype not in ARCHS:
            raise ModelError(f"{lens.name}: patching knows {', '.join(sorted(ARCHS))} models, not "
                             f"{mtype!r}" + (" (an encoder without an unembedding: the lab's "
                                             "answer metric needs a causal LM)" if not lens.causal
                                             else ""))
        layers, proj, norm, head = ARCHS[mtype]
        self.lens = lens
        self.model = model.eval()
        self.name = lens.name
        self.n_layer, self.n_head = lens.n_layer, lens.n_head
        self.layers = _get(model, layers)
        self.proj = [_get(model, proj.format(i=i)) for i in range(self.n_layer)]
        self.ln_f = _get(model, norm)
        self.lm_head = _get(model, head)
        self.blocks = None  # lenslab GPT internals: path patching and direct effects refuse

    def eval(self) -> "HFPatchable":
        self.model.eval()
        return self

    def __call__(self, ids: torch.Tensor, resid_hook=None, z_hook=None, qkv_hook=None):
        if qkv_hook is not None:
            raise ModelError(f"{self.name}: path patching and AtP*'s QK fix need lenslab's GPT "
                             "(its query, key and value projections); use activation patching")
        handles = []
        H = self.n_head
        try:
            if resid_hook is not None:
                for i, layer in enumerate(self.layers):
                    def pre(_m, args, kwargs, i=i):
                        if args:
                            return (resid_hook(i, args[0]), *args[1:]), kwargs
                        kwargs["hidden_states"] = resid_hook(i, kwargs["hidden_states"])
                        return args, kwargs
                    handles.append(layer.register_forward_pre_hook(pre, with_kwargs=True))
                handles.append(self.ln_f.register_forward_pre_hook(
                    lambda _m, args: (resid_hook(self.n_layer, args[0]), *args[1:])))
            if z_hook is not None:
                for i, proj in enumerate(self.proj):
                    def zpre(_m, args, i=i):
                        x = args[0]
                        B, T, D = x.shape
                        z = x.view(B, T, H, D // H).transpose(1, 2)
                        z = z_hook(i, z)
                        return (z.transpose(1, 2).reshape(B, T, D), *args[1:])
                    handles.append(proj.register_forward_pre_hook(zpre))
            return self.model(input_ids=ids).logits
        finally:
            for h in handles:
                h.remove()


def read_pairs(path: str | Path, tokenizer, name: str = "model") -> Prompts:
    """Clean/corrupted prompts from a JSON-lines file (see the module docstring)."""
    p = Path(path)
    try:
        lines = [ln for ln in p.read_text(encoding="utf-8").splitlines() if ln.strip()]
    except FileNotFoundError:
        raise DataError(f"pairs file not found: {p}") from None
    except UnicodeDecodeError:
        raise DataError(f"{p} is not UTF-8 text") from None
    if not lines:
        raise DataError(f"{p} has no pairs; write one JSON object per line with clean, corrupt "
                        "and answer")
    if tokenizer is None:
        raise ModelError(f"{name} has no tokenizer to read {p} with")
    clean, corrupt, answers = [], [], []
    for n, line in enumerate(lines, 1):
        try:
            d = json.loads(line)
            c, k, a = d["clean"], d["corrupt"], d["answer"]
        except (ValueError, KeyError, TypeError):
            raise DataError(f"{p} line {n}: not a JSON object with clean, corrupt and answer") from None
        ci = tokenizer(c, add_special_tokens=False)["input_ids"]
        ki = tokenizer(k, add_special_tokens=False)["input_ids"]
        if len(ci) != len(ki):
            raise DataError(f"{p} line {n}: the clean prompt is {len(ci)} tokens and the "
                            f"corrupted one {len(ki)}; patching needs equal lengths")
        ai = tokenizer(a, add_special_tokens=False)["input_ids"]
        if len(ai) != 1:
            raise DataError(f"{p} line {n}: the answer {a!r} is {len(ai)} tokens, not one")
        clean.append(ci), corrupt.append(ki), answers.append(ai[0])
    if len({len(c) for c in clean}) != 1:
        raise DataError(f"{p}: the pairs have different lengths ({sorted({len(c) for c in clean})} "
                        "tokens); patching a batch needs one length")
    c = torch.tensor(clean)
    # the null's second clean prompt: the next pair's clean prompt where it shares the answer,
    # else the prompt itself (then the clean-clean null is 0 for that pair)
    other = [next((j for j in range(len(answers)) if j != i and answers[j] == answers[i]), i)
             for i in range(len(answers))]
    return Prompts(c, torch.tensor(corrupt), c[other], torch.tensor(answers),
                   f"{len(lines)} pairs from {p.name}")


def patchable(lens) -> Optional[HFPatchable]:
    """The adapter for a lens that wraps a Hugging Face model (one with a tokenizer attribute
    and a ``transformers`` config), else None. Duck-typed: the attention lab is a sibling."""
    if hasattr(lens, "tokenizer") and hasattr(getattr(lens, "model", None), "config"):
        return HFPatchable(lens)
    return None

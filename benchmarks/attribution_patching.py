"""Attribution patching against real activation patching of the same components.

Prints JSON: the time of real denoising patching of every head at every position (one forward
pass per component) and of attribution patching of the same set (one forward and one backward
pass for all of them), measured in one process on one set of prompt pairs; their ratio
(``real_over_attribution``; the issue expects two orders of magnitude or more); and the
Spearman agreement of the two over the components. Also the per-head AtP* estimate (with the
QK fix) against real per-head patching. On lenslab's GPT with ``--layers`` layers of width
``--width`` (random weights unless ``--run`` names a trained run folder of the induction
task), ``--pairs`` pairs of ``--length`` tokens.

    python benchmarks/attribution_patching.py [--run RUN] [--layers 4 --width 256 --length 64]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from lenslab.config import GPTConfig
from lenslab.interventions import (
    attribution_agreement,
    attribution_patching,
    induction_prompts,
)
from lenslab.interventions.patching import answer_logprob, cache, run_patched
from lenslab.models import GPT


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", default=None)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--length", type=int, default=64)
    ap.add_argument("--pairs", type=int, default=32)
    a = ap.parse_args()
    torch.manual_seed(0)
    if a.run:
        import lenslab

        run = lenslab.load_run(a.run)
        model = run.load_model(run.checkpoint())
        vocab = run.resolved.model.vocab_size
    else:
        vocab = 128
        model = GPT(GPTConfig(n_layer=a.layers, n_head=a.heads, d_model=a.width,
                              n_ctx=a.length, vocab_size=vocab))
    model.eval()
    p = induction_prompts(vocab, a.length, a.pairs, seed=0)
    L, H, T = model.n_layer, model.n_head, a.length

    t0 = time.perf_counter()
    _, z_clean = cache(model, p.clean)
    with torch.no_grad():
        m_clean = answer_logprob(model(p.clean), p.answer).mean()
        m_corrupt = answer_logprob(model(p.corrupt), p.answer).mean()
    real = np.empty((L, H, T))
    for layer in range(L):
        for h in range(H):
            for t in range(T):
                m = run_patched(model, p.corrupt, p.answer,
                                z={(layer, h): (t, z_clean[layer][:, h])}).mean()
                real[layer, h, t] = float((m - m_corrupt) / (m_clean - m_corrupt))
    real_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    est = attribution_patching(model, p, qk_fix=False, per_position=True)
    attr_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    heads_real = np.empty((L, H))
    for layer in range(L):
        for h in range(H):
            m = run_patched(model, p.corrupt, p.answer,
                            z={(layer, h): (slice(None), z_clean[layer][:, h])}).mean()
            heads_real[layer, h] = float((m - m_corrupt) / (m_clean - m_corrupt))
    heads_real_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    heads_est = attribution_patching(model, p, qk_fix=True)
    heads_attr_s = time.perf_counter() - t0

    print(json.dumps({
        "model": f"GPT {L} layers x {H} heads, width {model.cfg.d_model}"
                 + (f" ({a.run})" if a.run else " (random weights)"),
        "pairs": a.pairs, "length": T, "components_head_x_position": L * H * T,
        "real_patching_s": round(real_s, 3), "attribution_s": round(attr_s, 4),
        "real_over_attribution": round(real_s / attr_s, 1),
        "spearman_head_x_position": round(attribution_agreement(est, real), 3),
        "per_head": {"real_s": round(heads_real_s, 3), "atp_star_s": round(heads_attr_s, 4),
                     "real_over_atp_star": round(heads_real_s / heads_attr_s, 1),
                     "spearman": round(attribution_agreement(heads_est, heads_real), 3)},
    }, indent=1))


if __name__ == "__main__":
    main()

"""Attention capture: speed against a plain forward, and memory of streaming statistics.

Prints JSON:

* ``capture_over_forward``: time of a forward that captures every pattern ``[layer, head, q,
  k]`` over a plain (fused-attention) forward, on lenslab's GPT with 4 layers, d = 256, batch 8,
  context 256; measured alternately in one process. Target: at most 1.5.
* ``streaming_peak_gib``: peak resident memory of a separate process that computes per-head
  statistics (entropy, previous-token mass, first-token mass) over a 4096-token input on a
  6-layer, 8-head GPT, one layer at a time. Target: under 2 GiB; materializing all patterns
  would take 6 * 8 * 4096^2 * 4 bytes = 3.0 GiB on their own.
* ``transformer_lens``: the same capture through TransformerLens's ``run_with_cache`` when the
  package is installed, for comparison: on a ``HookedTransformer`` of the same shape (TL 2-3),
  or on a ``TransformerBridge`` around a GPT-2 of the same shape built from its config (TL 4
  removed ``HookedTransformer``; its bridge wraps Hugging Face models). The ratio is TL's own
  capture over TL's own forward, measured interleaved like lenslab's.

    python benchmarks/attention_capture.py [--reps 10]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import torch

from lenslab.config import GPTConfig
from lenslab.models import GPT


def timed(fn, reps):
    t = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t) / reps


def interleaved(plain, capture, reps: int) -> tuple[float, float, float]:
    """Median seconds of ``plain`` and ``capture`` and the median of their per-round ratio,
    alternating which runs first (a busy machine slows rounds, not one side)."""
    import statistics

    with torch.no_grad():
        plain(); capture()  # warm-up
        tp, tc = [], []
        for r in range(reps):
            if r % 2:
                tp.append(timed(plain, 1)); tc.append(timed(capture, 1))
            else:
                tc.append(timed(capture, 1)); tp.append(timed(plain, 1))
    ratio = statistics.median(c / p for c, p in zip(tc, tp))
    return statistics.median(tp), statistics.median(tc), ratio


def capture_speed(reps: int) -> dict:
    torch.manual_seed(0)
    m = GPT(GPTConfig(vocab_size=512, n_layer=4, n_head=8, d_model=256, n_ctx=256)).eval()
    x = torch.randint(0, 512, (8, 256))
    kept = []

    def capture():
        kept.clear()
        m(x, attn_hook=lambda layer, p: kept.append(p))

    tp, tc, ratio = interleaved(lambda: m(x), capture, reps)
    return {"plain_s": tp, "capture_s": tc, "capture_over_forward": ratio,
            "target": 1.5, "pass": ratio <= 1.5, "threads": torch.get_num_threads()}


STREAM = r"""
import resource, torch, json
from lenslab.config import GPTConfig
from lenslab.models import GPT
torch.manual_seed(0)
T = 4096
m = GPT(GPTConfig(vocab_size=256, n_layer=6, n_head=8, d_model=256, n_ctx=T)).eval()
x = torch.randint(0, 256, (1, T))
stats = {}
def on_layer(layer, p):                     # p: [1, H, T, T]; reduce it, keep nothing
    p = p[0]
    ent = torch.empty(p.shape[0])
    for h in range(p.shape[0]):             # head by head: temporaries stay [T, T]
        ent[h] = -(p[h] * p[h].clamp_min(1e-12).log()).sum(-1).mean()
    prev = p.diagonal(offset=-1, dim1=-2, dim2=-1).mean(-1)
    first = p[..., 0].mean(-1)
    stats[layer] = {"entropy": ent.tolist(), "prev": prev.tolist(), "first": first.tolist()}
with torch.no_grad():
    m(x, attn_hook=on_layer)
print(json.dumps({"layers": len(stats), "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def streaming_memory() -> dict:
    base = subprocess.run([sys.executable, "-c", "import resource, torch, lenslab.models; "
                           "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"],
                          capture_output=True, text=True, check=True)
    r = subprocess.run([sys.executable, "-c", STREAM], capture_output=True, text=True, check=True)
    d = json.loads(r.stdout.strip().splitlines()[-1])
    peak = d["peak_rss_kib"] / 2**20
    return {"tokens": 4096, "layers": d["layers"], "heads": 8,
            "streaming_peak_gib": peak, "interpreter_and_torch_gib": int(base.stdout) / 2**20,
            "all_patterns_gib": 6 * 8 * 4096**2 * 4 / 2**30, "target_gib": 2.0, "pass": peak < 2.0}


def _tl_model():
    """A TransformerLens model of the benchmark's shape and which API built it."""
    from importlib.metadata import version

    torch.manual_seed(0)
    try:
        from transformer_lens import HookedTransformer, HookedTransformerConfig
    except ImportError:  # TransformerLens >= 4: the bridge around a Hugging Face model
        from transformer_lens.model_bridge.sources._bridge_builder import (
            build_bridge_from_module,
        )
        from transformers import GPT2Config, GPT2LMHeadModel

        cfg = GPT2Config(n_layer=4, n_embd=256, n_head=8, n_positions=256, vocab_size=512)
        hf = GPT2LMHeadModel(cfg).eval()
        return (build_bridge_from_module(hf, "GPT2LMHeadModel", hf_config=cfg), "TransformerBridge",
                version("transformer_lens"))
    cfg = HookedTransformerConfig(n_layers=4, d_model=256, n_ctx=256, d_head=32, n_heads=8,
                                  d_vocab=512, act_fn="gelu", normalization_type="LN")
    return HookedTransformer(cfg).eval(), "HookedTransformer", version("transformer_lens")


def transformer_lens(reps: int) -> dict | None:
    try:
        import transformer_lens  # noqa: F401
    except ImportError:
        return None
    m, api, version = _tl_model()
    x = torch.randint(0, 512, (8, 256))
    names = lambda n: n.endswith("hook_pattern")  # noqa: E731
    _, cache = m.run_with_cache(x, names_filter=names)
    shapes = sorted({tuple(v.shape) for v in cache.values()})
    tp, tc, ratio = interleaved(lambda: m(x), lambda: m.run_with_cache(x, names_filter=names), reps)
    return {"version": version, "api": api, "patterns": len(cache), "pattern_shapes": shapes,
            "plain_s": tp, "run_with_cache_s": tc, "ratio": ratio}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=10)
    a = ap.parse_args()
    out = {"torch": torch.__version__, "capture": capture_speed(a.reps),
           "streaming": streaming_memory(), "transformer_lens": transformer_lens(a.reps)}
    if out["transformer_lens"]:  # same shape, same input size: whose capture is faster
        out["transformer_lens"]["lenslab_capture_over_tl_capture"] = (
            out["capture"]["capture_s"] / out["transformer_lens"]["run_with_cache_s"])
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

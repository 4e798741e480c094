"""Throughput of the guarded trainer against a minimal plain PyTorch loop.

Both train the same model (same initial weights) on the same batches with the same optimizer
and clipping; they are timed alternately in one process (chunks of steps, interleaved), so
machine noise hits both alike. Prints JSON: tokens/s of each, their ratio (median over interleaved rounds; target: the guard
costs at most 3%, ratio >= 0.97), and an MFU estimate (6 * N * tokens/s over the peak matmul
rate measured on this machine).

    python benchmarks/train_throughput.py [--rounds 6] [--chunk 20] [--threads-sweep]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from lenslab.config import config_from_dict
from lenslab.data import IGNORE
from lenslab.models import build_model
from lenslab.training.clip import clip_global_norm
from lenslab.training.trainer import Trainer

CONFIGS = {
    "2L-d128": {"n_layer": 2, "n_head": 4, "d_model": 128},
    "4L-d256": {"n_layer": 4, "n_head": 8, "d_model": 256},
    # nanoGPT's shakespeare_char CPU recipe (`lenslab init shakespeare`): its own batch, context
    # and 65-character vocabulary; tokens are synthetic, which does not change the arithmetic
    "shakespeare-char": {"n_layer": 4, "n_head": 4, "d_model": 128, "bias": False,
                         "batch": 12, "ctx": 64, "vocab": 65},
}


def peak_matmul_flops(device: torch.device, n: int = 2048, reps: int = 5) -> float:
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    a @ b
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    if device.type == "cuda":
        torch.cuda.synchronize()
    return 2 * n**3 * reps / (time.perf_counter() - t)


def make_cfg(shape: dict, device: str, threads: int, batch: int, ctx: int):
    shape = dict(shape)
    batch, ctx = shape.pop("batch", batch), shape.pop("ctx", ctx)
    vocab = shape.pop("vocab", 256)
    return config_from_dict({
        "name": "bench", "seed": 0,
        "model": {"kind": "gpt", "n_ctx": ctx, **shape},
        "data": {"task": "induction", "vocab_size": vocab, "seq_len": ctx, "period_min": 8,
                 "period_max": 32},
        "optim": {"lr": 3e-4, "batch_size": batch, "grad_clip": 1.0, "warmup_steps": 10},
        "train": {"max_steps": 10**9, "eval_every": 0, "checkpoint_every": 0,
                  "threads": threads, "device": device},
    })


class PlainLoop:
    """The loop everyone writes first: forward, backward, clip, step. No guard, no logging."""

    def __init__(self, cfg, task, device):
        torch.manual_seed(cfg.seed)
        self.model = build_model(cfg.model).to(device)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.optim.lr, betas=cfg.optim.betas)
        self.task, self.cfg, self.dev, self.i = task, cfg, device, 0
        self.amp = torch.bfloat16 if device.type == "cuda" else None

    def step(self) -> int:
        x, y = self.task.batch(self.i, self.cfg.optim.batch_size)
        self.i += 1
        x, y = x.to(self.dev), y.to(self.dev)
        with torch.autocast(self.dev.type, dtype=self.amp, enabled=self.amp is not None):
            logits = self.model(x)
        loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1),
                               ignore_index=IGNORE)
        loss.backward()
        clip_global_norm([p for p in self.model.parameters() if p.grad is not None], 1.0)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        return x.numel()


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


def measure(name, shape, args, threads, tmp: Path) -> dict:
    cfg = make_cfg(shape, args.device, threads, args.batch, args.ctx)
    trainer = Trainer.create(cfg, tmp / f"{name}-{threads}", progress=False)
    trainer.save_checkpoint()  # what fit() does first; keeps the loop body identical
    torch.set_num_threads(threads if threads > 0 else torch.get_num_threads())
    plain = PlainLoop(trainer.cfg, trainer.task, trainer.dev)
    dev = trainer.dev
    for _ in range(3):  # warm-up both
        trainer.iteration()
        plain.step()
    t_guard = t_plain = 0.0
    tok_guard = tok_plain = 0
    ratios = []
    for r in range(args.rounds):
        # alternate which loop goes first, so slow drifts do not favour one side
        order = ("guard", "plain") if r % 2 == 0 else ("plain", "guard")
        dt = {}
        for which in order:
            sync(dev); t = time.perf_counter()
            for _ in range(args.chunk):
                if which == "guard":
                    tok0 = trainer.tokens
                    trainer.iteration()
                    tok_guard += trainer.tokens - tok0
                else:
                    tok_plain += plain.step()
            sync(dev); dt[which] = time.perf_counter() - t
        t_guard += dt["guard"]
        t_plain += dt["plain"]
        ratios.append(dt["plain"] / dt["guard"])  # same tokens per chunk on both sides
    ratios.sort()
    n = trainer.n_params
    return {"non_embedding_params": n, "threads": torch.get_num_threads(),
            "batch": cfg.optim.batch_size, "ctx": cfg.model.n_ctx,
            "lenslab_tok_per_s": tok_guard / t_guard, "plain_tok_per_s": tok_plain / t_plain,
            "ratio": ratios[len(ratios) // 2], "ratio_of_totals": (tok_guard / t_guard) / (tok_plain / t_plain),
            "ratio_per_round_min_max": [ratios[0], ratios[-1]]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--chunk", type=int, default=8)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--ctx", type=int, default=128)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads-sweep", action="store_true",
                    help="also measure 1 thread vs all cores (justifies train.threads = 0)")
    args = ap.parse_args()
    dev = torch.device("cuda" if (args.device in ("auto", "cuda") and torch.cuda.is_available()) else "cpu")
    args.device = dev.type
    peak = peak_matmul_flops(dev)
    out = {"device": torch.cuda.get_device_name() if dev.type == "cuda" else platform.processor() or "cpu",
           "torch": torch.__version__, "default_batch": args.batch, "default_ctx": args.ctx,
           "peak_matmul_flops": peak, "configs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name, shape in CONFIGS.items():
            r = measure(name, shape, args, 0, Path(tmp))
            r["mfu"] = 6 * r["non_embedding_params"] * r["lenslab_tok_per_s"] / peak
            r["target_ratio"] = 0.97
            r["pass"] = r["ratio"] >= 0.97
            if args.threads_sweep and dev.type == "cpu":
                import os

                r["threads_sweep_tok_per_s"] = {
                    str(k): measure(name, shape, args, k, Path(tmp))["lenslab_tok_per_s"]
                    for k in sorted({1, os.cpu_count() or 1})}
            out["configs"][name] = r
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

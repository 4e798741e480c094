"""Before a run starts: the device, the precision, the threads, and what a config can fail on
(:func:`preflight`), so that it fails before a run folder exists."""

from __future__ import annotations

import os
from typing import Optional

import torch

from lenslab.config import RunConfig
from lenslab.errors import ConfigError
from lenslab.run import tensorboard
from lenslab.training.memory import check_memory


def pick_threads(requested: int, n_params: int, tokens_per_step: int) -> int:
    """Intra-op threads. 0 = auto: on tiny steps, thread hand-offs cost more than they save.

    Measured on the 2-core dev machine (``benchmarks/train_throughput.py --threads-sweep`` and
    the README): the tour's induction model (33k non-embedding parameters, 4096 tokens per step,
    ~0.8 GFLOP per step) runs 10-30% faster on one thread; the 2-layer d=128 model at 2048
    tokens per step (~5 GFLOP) runs ~45% faster on two. The switch sits between them.
    """
    if requested > 0:
        return requested
    env = os.environ.get("LENSLAB_THREADS", "")
    if env.isdigit() and int(env) > 0:  # e.g. test suites and sweeps that share the cores
        return int(env)
    flops = 6 * n_params * tokens_per_step
    local_procs = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))  # torchrun: share the cores
    return 1 if flops < 2e9 else max(1, (os.cpu_count() or 1) // local_procs)


def device_for(cfg: RunConfig, local_rank: int) -> torch.device:
    want = cfg.train.device
    if want == "auto":
        want = "cuda" if torch.cuda.is_available() else "cpu"
    if want.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError("train.device asks for CUDA but no GPU is visible; use "
                              "train.device = \"cpu\" (or \"auto\")")
        if ":" in want and int(want.split(":")[1]) >= torch.cuda.device_count():
            raise ConfigError(f"train.device = {want!r} but this machine has "
                              f"{torch.cuda.device_count()} GPU(s)")
        return torch.device("cuda", local_rank) if want == "cuda" else torch.device(want)
    if want == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("train.device asks for MPS but it is not available; use \"cpu\"")
    return torch.device(want)


def preflight(cfg: RunConfig, memory_check: bool = True) -> None:
    """What can fail on a config before a run folder exists fails here, before it does: the
    device is there, and the model and one step fit in its memory (see ``training/memory.py``).
    The task, its data and the model's sizes are checked by :meth:`Run.create`."""
    dev = device_for(cfg, 0)
    if cfg.train.tensorboard:
        tensorboard.require()  # a missing package is a config error, before any write
    if memory_check:
        check_memory(cfg, str(dev))


def precision_for(cfg: RunConfig, device: torch.device) -> Optional[torch.dtype]:
    p = cfg.train.precision
    if p == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return None
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[p]



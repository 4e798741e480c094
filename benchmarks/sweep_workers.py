"""The local sweep's workers forked from a server that imported torch once, against workers
started as new ``python -m lenslab`` processes; print JSON.

    python benchmarks/sweep_workers.py [--points 8] [--steps 30]

The same sweep of tiny induction GPTs (2 workers of 1 thread) runs twice into fresh folders,
each time in a new Python (so the fork server's own start-up is counted): once with
``LENSLAB_FORK=0`` and once as lenslab runs it by default. Wall time and the CPU time of the
whole process tree (from /proc/stat, so it includes the workers; run it on an idle machine)
side by side, and whether the two results tables agree on every loss.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SWEEP = """
import sys
sys.path.insert(0, {src!r})
from lenslab.scaling.sweep import run_sweep
base = {{"name": "b", "seed": 0,
        "model": {{"kind": "gpt", "n_layer": 2, "n_head": 2, "d_model": 32, "n_ctx": 24}},
        "data": {{"task": "induction", "vocab_size": 16, "seq_len": 24}},
        "optim": {{"lr": 3e-3, "batch_size": 8, "warmup_steps": 5}},
        "train": {{"max_steps": {steps}, "eval_every": 0, "checkpoint_every": 0,
                  "device": "cpu"}}}}
res = run_sweep({{"name": "w", "workers": 2, "threads": 1, "predictions": 0, "base": base,
                 "grid": {{"d_model": [16, 32], "seeds": list(range({seeds}))}}}},
                sys.argv[1], progress=False)
sys.exit(res.exit_code)
"""


def busy_cpu_s() -> float:
    fields = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def one(fork: bool, out: Path, steps: int, seeds: int) -> dict:
    env = dict(os.environ, LENSLAB_FORK="1" if fork else "0")
    code = SWEEP.format(src=str(ROOT / "src"), steps=steps, seeds=seeds)
    c0, t0 = busy_cpu_s(), time.perf_counter()
    subprocess.run([sys.executable, "-c", code, str(out)], env=env, check=True)
    wall, cpu = time.perf_counter() - t0, busy_cpu_s() - c0
    with open(out / "results.csv", newline="") as f:
        losses = [(r["name"], r["loss"], r["val_loss"]) for r in csv.DictReader(f)]
    return {"wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "losses": losses}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=8, help="grid points (even: 2 widths)")
    ap.add_argument("--steps", type=int, default=30)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        new = one(False, Path(tmp) / "subprocess", a.steps, a.points // 2)
        forked = one(True, Path(tmp) / "forked", a.steps, a.points // 2)
    print(json.dumps({
        "points": a.points, "steps": a.steps, "cores": os.cpu_count(),
        "subprocess": {k: new[k] for k in ("wall_s", "cpu_s")},
        "forked": {k: forked[k] for k in ("wall_s", "cpu_s")},
        "wall_ratio": round(new["wall_s"] / forked["wall_s"], 2),
        "cpu_ratio": round(new["cpu_s"] / forked["cpu_s"], 2),
        "same_losses": new["losses"] == forked["losses"],
    }, indent=2))


if __name__ == "__main__":
    main()

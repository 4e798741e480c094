"""A real small sweep with deliberately repeated data, diagnosed; print JSON.

    python benchmarks/sweep_repeated_data.py [--out runs/repeat] [--corpus FILE] [--steps 500]

Eight 2-layer GPTs (d_model 8 to 128, heads 8 wide; 1.8k to 400k non-embedding parameters)
train for the same number of steps on a small character-level corpus (by default the GPL-3
text shipped with Debian/Ubuntu, 35 kB: at 500 steps of 16 x 64 characters every model sees
its 31.6k training characters about 16 times). ``lenslab.scaling.diagnose`` then judges the
final training and validation losses against N. About 2.5 minutes on 2 cores; resumable
(run it again to finish an interrupted sweep).

What to look for: the causes the runs' records support. Every run repeats its data equally
often, so "repeated data" can explain a difference between large and small runs only through
its interaction with size (the train-validation gap that grows with N is that interaction);
compare the ``repeated_data`` and ``train_val_gap`` checks.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from lenslab.scaling.diagnose import diagnose  # noqa: E402
from lenslab.scaling.sweep import run_sweep  # noqa: E402

WIDTHS = [8, 16, 24, 32, 48, 64, 96, 128]


def sweep_config(corpus: Path, steps: int) -> dict:
    return {
        "name": "repeat", "workers": 2, "threads": 1, "predictions": 0,
        "base": {
            "name": "repeat", "seed": 0,
            "model": {"kind": "gpt", "n_layer": 2, "n_ctx": 64, "dropout": 0.0},
            "data": {"task": "text", "paths": [str(corpus)], "level": "char", "seq_len": 64, "val_fraction": 0.1},
            "optim": {"lr": 3e-3, "warmup_steps": 20, "batch_size": 16},
            "train": {"max_steps": steps, "eval_every": steps, "eval_batches": 8,
                      "checkpoint_every": max(steps // 2, 1), "device": "cpu"},
        },
        "grid": {"d_model": WIDTHS, "d_head": [8]},
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-repeat")
    ap.add_argument("--corpus", type=Path, default=Path("/usr/share/common-licenses/GPL-3"))
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--bootstrap", type=int, default=200)
    args = ap.parse_args()
    if not args.corpus.is_file():
        print(json.dumps({"skipped": f"corpus {args.corpus} not found; pass --corpus FILE"}))
        return 0
    t0 = time.perf_counter()
    res = run_sweep(sweep_config(args.corpus, args.steps), args.out, progress=False)
    if res.exit_code:
        print(json.dumps({"error": f"sweep unfinished: {res.unfinished}"}))
        return 1
    out: dict = {"sweep_s": round(time.perf_counter() - t0, 1), "out": str(args.out),
                 "runs": [{k: r[k] for k in ("name", "N", "D", "epochs", "loss", "val_loss")} for r in res.rows]}
    for y in ("loss", "val_loss"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dg = diagnose(args.out, y=y, n_boot=args.bootstrap)
        out[y] = {"bend": dg.bend.to_dict()["status"], "reason": dg.bend.reason,
                  "causes": {c.name: {"status": c.status, "evidence": c.evidence} for c in dg.checks}}
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

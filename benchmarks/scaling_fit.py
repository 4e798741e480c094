"""Time the Chinchilla fit on the shared Chinchilla points and its bootstrap; print JSON.

    python benchmarks/scaling_fit.py [--bootstrap 1000] [--data ../shared/data]

Fits the 240 points left after dropping the 5 highest losses (as Besiroglu et al. 2024 did)
from Epoch's grid of 4500 starts (plus 54 data-anchored ones), then refits 1000 bootstrap
resamples. Targets on 2 CPU cores: grid fit under 5 s, 1000-resample bootstrap under 60 s.
Reports the fitted values next to Epoch's published ones.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from lenslab.scaling.fit import bootstrap, fit_chinchilla  # noqa: E402
from lenslab.scaling.laws import chinchilla_starts  # noqa: E402

EPOCH = {"A": 477.8, "B": 2143.9, "E": 1.8172, "alpha": 0.3473, "beta": 0.3672}
EPOCH_INTERVALS = {"A": (285.2, 743.6), "B": (1042.4, 5810.3), "E": (1.769, 1.871),
                   "alpha": (0.317, 0.373), "beta": (0.331, 0.415)}


def load(data: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    with open(data / "chinchilla_svg_extracted_data.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    N = np.array([float(r["Model Size"]) for r in rows])
    C = np.array([float(r["Training FLOP"]) for r in rows])
    L = np.array([float(r["loss"]) for r in rows])
    keep = L < np.sort(L)[-5]  # Epoch: drop the 5 highest losses
    return N[keep], (C / (6 * N))[keep], L[keep]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    args = ap.parse_args()
    if not (args.data / "chinchilla_svg_extracted_data.csv").is_file():
        sys.exit(f"no Chinchilla points under {args.data}")
    N, D, L = load(args.data)

    t0 = time.perf_counter()
    fit = fit_chinchilla(N, D, L)  # Epoch's 4500-start grid, polished with scipy's L-BFGS-B
    t_fit = time.perf_counter() - t0

    t0 = time.perf_counter()
    bootstrap(fit, args.bootstrap, seed=0)  # every resample refitted from the optimum, batched
    t_boot = time.perf_counter() - t0

    params = fit.params
    print(json.dumps({
        "points": int(L.size),
        "starts": {"epoch_grid": 4500,
                   "total": len(chinchilla_starts(np.log(N), np.log(D), np.log(L), tie=False))},
        "grid_fit_s": round(t_fit, 3),
        "grid_fit_target_s": 5.0,
        "bootstrap_resamples": args.bootstrap,
        "bootstrap_s": round(t_boot, 3),
        "bootstrap_target_s": 60.0,
        "cpu_count": os.cpu_count(),
        "params": {k: round(v, 5) for k, v in params.items()},
        "epoch_params": EPOCH,
        "relative_difference": {k: round(params[k] / v - 1, 5) for k, v in EPOCH.items()},
        "intervals_95": {k: [round(x, 4) for x in fit.intervals[k]] for k in EPOCH},
        "epoch_intervals_95": EPOCH_INTERVALS,
        "compute_optimal": {k: fit.to_dict()["compute_optimal"][k]
                            for k in ("exponent_a", "tokens_per_parameter", "reference_compute", "intervals")},
    }, indent=2))


if __name__ == "__main__":
    main()

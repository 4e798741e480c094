"""The data-constrained law (Muennighoff et al. 2023): recovery, gradients, the authors' runs, CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import cli
from typer.testing import CliRunner

from lenslab.errors import ConfigError, DataError, LensError
from lenslab.scaling import fit_table
from lenslab.scaling.constrained import (
    MUENNIGHOFF_2023,
    DataConstrainedLaw,
    fit_data_constrained,
    parse_base,
    repetition,
)
from lenslab.scaling.optim import HuberObjective

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SUBSET = DATA / "datablations_c4_fit_subset_182.csv"
needs_data = pytest.mark.skipif(not SUBSET.is_file(), reason=f"published reference data not found at "
                                f"{DATA} (clone the shared data beside the repo)")

BASE = {"A": 400.0, "B": 1200.0, "E": 1.8, "alpha": 0.34, "beta": 0.34}
TRUE = {"R_D_star": 8.0, "R_N_star": 3.0}


def _law_loss(N, D, U, base, rd, rn):
    U_D, R_D, U_N, R_N = repetition(N, D, U, base)
    Dp = U_D * (1 + rd * (1 - np.exp(-R_D / rd)))
    Np = U_N * (1 + rn * (1 - np.exp(-R_N / rn)))
    return base["E"] + base["A"] / Np ** base["alpha"] + base["B"] / Dp ** base["beta"]


@pytest.fixture(scope="module")
def synthetic():
    """A grid of runs from 1 to 300 epochs, sizes from under to far over what U can feed."""
    rng = np.random.default_rng(0)
    N, D, U = (a.ravel() for a in np.meshgrid(np.geomspace(1e7, 3e9, 6), np.geomspace(1e9, 3e11, 6),
                                              np.geomspace(1e9, 3e10, 3), indexing="ij"))
    L = _law_loss(N, D, U, BASE, TRUE["R_D_star"], TRUE["R_N_star"])
    return N, D, U, L * np.exp(rng.normal(0, 0.001, L.size))


def test_recovers_the_repetition_constants_with_the_base_given(synthetic):
    N, D, U, L = synthetic
    fit = fit_data_constrained(N, D, U, L, base=BASE, bootstrap=50)
    p, iv = fit.params, fit.intervals
    assert p["R_D_star"] == pytest.approx(TRUE["R_D_star"], rel=0.1)
    assert p["R_N_star"] == pytest.approx(TRUE["R_N_star"], rel=0.2)
    for k, v in TRUE.items():
        assert iv[k][0] <= v <= iv[k][1], k
    assert fit.predict(np.stack([N, D, U], 1)) == pytest.approx(L, rel=0.01)


def test_fits_the_base_on_single_epoch_runs_when_none_is_given(synthetic):
    N, D, U, L = synthetic
    fit = fit_data_constrained(N, D, U, L, tie=True)
    assert "at most one epoch" in fit.notes[0]
    assert fit.law.base["alpha"] == pytest.approx(0.34, rel=0.05)
    assert fit.law.base["E"] == pytest.approx(1.8, rel=0.05)
    assert fit.params["R_D_star"] == pytest.approx(TRUE["R_D_star"], rel=0.25)


def test_r_n_star_is_held_when_no_run_has_surplus_parameters(synthetic):
    """Small models only (N below what their unique data can feed): R_N* has no influence on
    any prediction, so it is held at the published value, said in a note, not 'fitted'."""
    N, D, U, L = synthetic
    U_D, R_D, U_N, R_N = repetition(N, D, U, BASE)
    small = R_N == 0
    # a mapping that also carries the constants is accepted as a base (they are ignored)
    base = {**BASE, "R_D_star": 1.0, "R_N_star": 2.0}
    fit = fit_data_constrained(N[small], D[small], U[small], L[small], base=base, bootstrap=20)
    assert fit.params["R_N_star"] == MUENNIGHOFF_2023["R_N_star"]
    assert "cannot be fitted" in " ".join(fit.notes)
    assert fit.law.describe()["R_N_star_held_at"] == MUENNIGHOFF_2023["R_N_star"]
    assert fit.params["R_D_star"] == pytest.approx(TRUE["R_D_star"], rel=0.15)


def test_large_constants_keep_their_precision():
    # 1 - exp(-R/R*) must not round to 0 when R* is huge: D'/U tends to R + 1, not back to 1
    eff = DataConstrainedLaw.effective_data(np.log([[1e16, 1.0], [1e18, 1.0]]), np.array([3.0]))
    assert eff[:, 0] == pytest.approx([4.0, 4.0], rel=1e-6)


def test_repeated_data_is_worth_less_than_fresh_data():
    # 1 epoch: D' = U; R_D* = 10 epochs' worth at most: D' < 1 + R_D* however long one trains
    theta = np.log([[10.0, 3.0]])
    eff = DataConstrainedLaw.effective_data(theta, np.array([0.0, 1.0, 10.0, 1e4]))[0]
    assert eff[0] == pytest.approx(1.0)
    assert 1.9 < eff[1] < 2.0  # the second epoch is worth almost a fresh one
    assert eff[2] < 11.0 and eff[3] == pytest.approx(11.0, rel=1e-3)


def test_gradient_matches_finite_differences(synthetic):
    N, D, U, L = synthetic
    law = DataConstrainedLaw(np.log(np.stack([N, D, U])), BASE)
    obj = HuberObjective(law, np.log(L) + 0.01, np.ones(L.size))
    theta = np.array([[1.7, 0.4]])
    f, g = obj.value_and_grad(theta)
    for i in range(2):
        step = np.zeros_like(theta)
        step[0, i] = 1e-6
        fd = (obj.value(theta + step)[0] - obj.value(theta - step)[0]) / 2e-6
        assert g[0, i] == pytest.approx(fd, rel=1e-4, abs=1e-9)


# ------------------------------------------------------------------------------------------------
# The authors' 182 runs, with the published base held fixed (their procedure)
# ------------------------------------------------------------------------------------------------


def _subset():
    with open(SUBSET, encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return tuple(np.array([float(r[c]) for r in rows])
                 for c in ("params_N", "tokens_D", "unique_tokens_U", "val_loss"))


@needs_data
def test_on_the_authors_runs_the_fit_is_as_good_as_the_published_constants():
    """On the 182 runs the authors fitted, with their base law held fixed: lenslab's R_D*, R_N*
    score no worse on the authors' objective than the published 15.39 and 5.31, the published
    constants lie inside lenslab's 95% intervals, and the losses predicted with the two pairs of
    constants differ by at most 2% (median relative difference). The intervals are wide: these
    runs identify the constants weakly (the objective is nearly flat along a ridge), so the
    test compares fit quality, coverage and predictions, not the constants' digits."""
    N, D, U, L = _subset()
    base = {k: MUENNIGHOFF_2023[k] for k in ("A", "B", "E", "alpha", "beta")}
    fit = fit_data_constrained(N, D, U, L, base=base, bootstrap=100)
    obj = HuberObjective(fit.law, np.log(L), np.ones(L.size))
    published = np.log([[MUENNIGHOFF_2023["R_D_star"], MUENNIGHOFF_2023["R_N_star"]]])
    assert obj.value(fit.theta[None])[0] <= obj.value(published)[0]
    for k in ("R_D_star", "R_N_star"):
        lo, hi = fit.intervals[k]
        assert lo <= MUENNIGHOFF_2023[k] <= hi, k
    # predictions under our constants and the published ones: same law, same runs
    ours = fit.predict(np.stack([N, D, U], 1))
    theirs = np.exp(fit.law.predict(published)[0])
    assert np.median(np.abs(ours / theirs - 1)) <= 0.02


# ------------------------------------------------------------------------------------------------
# Bad input and the CLI
# ------------------------------------------------------------------------------------------------


def test_bad_base_and_missing_repetition():
    with pytest.raises(ConfigError, match="missing E, alpha, beta"):
        parse_base("A=1,B=2")
    with pytest.raises(ConfigError, match="NAME=VALUE"):
        parse_base("A=1,B")
    with pytest.raises(ConfigError, match="positive"):
        parse_base({"A": 1, "B": 1, "E": -1, "alpha": 0.3, "beta": 0.3})
    N = np.geomspace(1e7, 1e9, 8)
    with pytest.raises(DataError, match="no run repeats its data"):
        fit_data_constrained(N, 20 * N, 40 * N, 2 + 100 * N ** -0.3, base=BASE)
    with pytest.raises(DataError, match="at most one epoch"):
        fit_data_constrained(N, 20 * N, 2 * N, 2 + 100 * N ** -0.3)


def test_cli_fit_data_constrained(tmp_path, synthetic):
    N, D, U, L = synthetic
    path = tmp_path / "runs.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["N", "D", "U", "loss"])
        w.writerows(zip(N, D, U, L))
    from lenslab.cli import app
    base = ",".join(f"{k}={v}" for k, v in BASE.items())
    code, _, err = cli("fit", path, "--form", "data-constrained", "--base", base, "--bootstrap",
                       "20", "--holdout-last", "3", "--out", tmp_path / "o")
    assert code == 0, err
    d = json.loads((tmp_path / "o" / "fit.json").read_text())
    assert set(d["params"]) == {"R_D_star", "R_N_star"}
    assert d["law"]["base"] == BASE
    assert d["holdout"]["rmsle"] < 0.01
    assert "--base" in d["command"]
    assert (tmp_path / "o" / "fit.png").read_bytes()[:4] == b"\x89PNG"
    r = CliRunner().invoke(app, ["fit", str(path), "--form", "data-constrained", "--x", "N,D",
                                 "--out", str(tmp_path / "o2")])
    assert isinstance(r.exception, LensError) and "three columns" in str(r.exception)
    res = fit_table(path, "data-constrained", base=BASE)
    assert res.params["R_D_star"] == pytest.approx(TRUE["R_D_star"], rel=0.1)

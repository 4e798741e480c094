"""IsoFLOP profiles (Hoffmann et al.'s Approach 2): minima per budget, the exponent, bad input."""

from __future__ import annotations

import csv
import json
import warnings

import numpy as np
import pytest
from typer.testing import CliRunner

from lenslab.errors import ConfigError, DataError, LensError
from lenslab.scaling import fit_table
from lenslab.scaling.isoflop import fit_isoflop, group_budgets
from lenslab.table import DataWarning

A, B, E, ALPHA, BETA = 400.0, 1200.0, 1.8, 0.34, 0.28


def _profiles(budgets=np.geomspace(1e18, 1e21, 4), per=11, span=2.0, noise=0.002, seed=0):
    """Runs along each budget's valley: sizes within ``span`` decades around the optimum of the
    Chinchilla law above (whose compute-optimal exponent is beta / (alpha + beta))."""
    rng = np.random.default_rng(seed)
    G = (ALPHA * A / (BETA * B)) ** (1 / (ALPHA + BETA))
    rows = []
    for C in budgets:
        n_opt = G * (C / 6) ** (BETA / (ALPHA + BETA))
        for N in n_opt * np.logspace(-span / 2, span / 2, per):
            D = C / (6 * N)
            rows.append((N, C * (1 + rng.uniform(-0.002, 0.002)),
                         (E + A * N ** -ALPHA + B * D ** -BETA) * np.exp(rng.normal(0, noise))))
    return tuple(np.array(c) for c in zip(*rows))


def test_recovers_the_compute_optimal_exponent_with_an_interval():
    N, C, L = _profiles()
    fit = fit_isoflop(N, C, L, bootstrap=100)
    truth = BETA / (ALPHA + BETA)
    assert fit.params["a_N"] == pytest.approx(truth, abs=0.02)
    lo, hi = fit.intervals["a_N"]
    assert lo <= truth <= hi and hi - lo < 0.1
    assert fit.params["b_D"] == pytest.approx(1 - fit.params["a_N"])
    assert all(b["used"] for b in fit.budgets) and len(fit.budgets) == 4
    d = json.loads(json.dumps(fit.to_dict()))
    assert d["compute_optimal"]["exponent_a"] == pytest.approx(fit.params["a_N"])
    assert "<svg" in fit._repr_html_()


# Hoffmann et al.'s A, B, E; the exponent pairs of the issue
HOFFMANN = (406.4, 410.7, 1.69)
PAIRS = ((0.34, 0.28), (0.5, 0.25), (0.25, 0.5))


def _drifting(alpha, beta, span, per=15):
    """Noise-free Chinchilla surface: 15 sizes per budget at five budgets from 1e17 to 1e21,
    over +-``span``x around centres that drift from the optimum to 10x off it."""
    A_, B_, E_ = HOFFMANN
    G = (alpha * A_ / (beta * B_)) ** (1 / (alpha + beta))
    rows = []
    for j, C in enumerate(np.geomspace(1e17, 1e21, 5)):
        centre = G * (C / 6) ** (beta / (alpha + beta)) * 10 ** (j / 4)
        for N in centre * np.geomspace(1 / span, span, per):
            rows.append((N, C, E_ + A_ * N ** -alpha + B_ * (C / (6 * N)) ** -beta))
    return tuple(np.array(c) for c in zip(*rows))


def test_a_window_near_each_minimum_is_robust_to_how_the_profiles_were_sampled():
    """The whole-profile parabola is pulled by runs far from the valley's bottom (by up to
    0.10 in a_N here); a five-size window around each best run, and the variable-projection
    fit of the Chinchilla form, recover beta / (alpha + beta) within 0.01 in every setting."""
    missed = 0
    for alpha, beta in PAIRS:
        truth = beta / (alpha + beta)
        for span in (10, 100):
            N, C, L = _drifting(alpha, beta, span)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DataWarning)  # an edge minimum is left out
                fit = fit_isoflop(N, C, L)
                whole = fit_isoflop(N, C, L, window=0)
            assert abs(fit.a_N - truth) <= 0.01, (alpha, beta, span, fit.a_N)
            assert abs(fit.cross_check["a_N"] - truth) <= 0.01, (alpha, beta, span)
            missed += abs(whole.a_N - truth) > 0.01
    assert missed >= 5  # of 6: the test can tell a robust fit from a biased one
    d = json.loads(json.dumps(fit.to_dict()))
    assert d["window"]["sizes"] == 5 and "5 distinct sizes nearest" in d["window"]["rule"]
    assert d["budgets"][0]["window_N_low"] < d["budgets"][0]["window_N_high"]
    assert "variable projection" in fit._repr_html_()
    with pytest.raises(ConfigError, match="at least 3 sizes"):
        fit_isoflop(N, C, L, window=2)


def test_budgets_group_within_one_percent():
    assert group_budgets(np.array([1e18, 1.004e18, 3e18, 2.995e18, 1e19])).tolist() == [0, 0, 1, 1, 2]


def test_unusable_budgets_are_left_out_with_a_warning_that_says_why():
    N, C, L = _profiles()
    # a budget with two sizes, and one whose runs all sit on one side of its optimum
    N = np.concatenate([N, [1e8, 2e8], np.geomspace(1e6, 3e6, 4)])
    C = np.concatenate([C, [5e19, 5e19], [2e22] * 4])
    L = np.concatenate([L, [3.0, 2.9], [4.0, 3.9, 3.8, 3.7]])
    with pytest.warns(DataWarning, match=r"C = 5e\+19: 2 sizes .*C = 2e\+22: its minimum lies outside"):
        fit = fit_isoflop(N, C, L)
    assert [b["used"] for b in fit.budgets] == [True, True, False, True, True, False]  # by compute
    with pytest.raises(DataError, match="at least 2 compute budgets"), pytest.warns(DataWarning):
        fit_isoflop(N[-6:], C[-6:], L[-6:])


def test_cli_isoflop_from_a_table_with_D(tmp_path):
    N, C, L = _profiles()
    path = tmp_path / "runs.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["N", "D", "loss"])
        w.writerows(zip(N, C / (6 * N), L))
    from lenslab.cli import app
    r = CliRunner().invoke(app, ["fit", str(path), "--form", "isoflop", "--bootstrap", "30",
                                 "--out", str(tmp_path / "o")])
    assert r.exit_code == 0, r.output
    d = json.loads((tmp_path / "o" / "fit.json").read_text())
    assert set(d["params"]) == {"a_N", "b_D", "k"} and "C was derived as 6 N D" in d["notes"]
    assert (tmp_path / "o" / "fit.png").read_bytes()[:4] == b"\x89PNG"
    r = CliRunner().invoke(app, ["fit", str(path), "--form", "isoflop", "--holdout-last", "2",
                                 "--out", str(tmp_path / "o2")])
    assert isinstance(r.exception, ConfigError) and "holdout" in str(r.exception)
    with pytest.raises(LensError, match="two columns"):
        fit_table(path, "isoflop", x="N")

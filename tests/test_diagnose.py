"""Where a law bends and why: bend detection, each cause's check, inputs, CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from lenslab.errors import DataError, LensError
from lenslab.scaling.diagnose import diagnose, find_bend


def _write(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


def _bent_sweep(seed: int = 1) -> list[dict]:
    """12 sizes at a fixed 2e8 tokens; past N = 5e7 the exponent drops from 0.3 to 0.1
    (Caballero et al.'s form, width 0.3 in log N).

    The records carry the textbook causes: repeated data and under-training in the large runs,
    one learning rate and warmup for all sizes, guard events only in the large runs, a
    constant train-validation gap.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for N in np.geomspace(1e6, 1e9, 12):
        D = 2e8
        L = 2.0 + 150 * N ** -0.3 * (1 + (N / 5e7) ** (1 / 0.3)) ** (0.2 * 0.3)
        L *= np.exp(rng.normal(0, 0.002))
        rows.append({"N": N, "D": D, "loss": L, "train_loss": 0.98 * L, "val_loss": L, "lr": 3e-4,
                     "warmup": 100, "epochs": 2.0 if N > 5e7 else 1.0, "guard_events": 3 if N > 1e8 else 0})
    return rows


def _straight_sweep(seed: int = 2) -> list[dict]:
    """One power law with floor; large runs trained at ~20 tokens per parameter, LR retuned."""
    rng = np.random.default_rng(seed)
    rows = []
    for N in np.geomspace(1e6, 1e9, 12):
        L = (2.0 + 30 * N ** -0.3) * np.exp(rng.normal(0, 0.002))
        rows.append({"N": N, "D": 20 * N, "loss": L, "train_loss": L * 0.995, "val_loss": L,
                     "lr": 1e-3 * (1e6 / N) ** 0.3, "warmup": 100 * (N / 1e6) ** 0.2, "epochs": 1.0,
                     "guard_events": 0})
    return rows


@pytest.fixture(scope="module")
def bent(tmp_path_factory):
    path = _write(tmp_path_factory.mktemp("bent") / "results.csv", _bent_sweep())
    return diagnose(path, n_boot=60)


def test_bend_is_found_with_location_and_confidence(bent):
    b = bent.bend
    assert b.status == "single law rejected" and b.rejected is True
    assert 2e7 < b.break_x < 2e8
    lo, hi = b.break_interval
    assert lo <= b.break_x <= hi
    assert b.confidence >= 0.9
    assert b.alpha_after < b.alpha_before
    assert b.to_dict()["break"]["direction"] == "flattens"


def test_causes_are_checked_and_ranked(bent):
    status = {c.name: c.status for c in bent.checks}
    assert status == {
        "repeated_data": "supported",
        "tokens_per_param": "supported",
        "lr_not_retuned": "supported",
        "warmup_not_retuned": "supported",
        "guard_events": "supported",
        "train_val_gap": "not supported",
        "near_floor": "not supported",
    }
    order = [c.status for c in bent.checks]
    assert order == sorted(order, key=["supported", "cannot tell", "not supported"].index)
    tpp = next(c for c in bent.checks if c.name == "tokens_per_param")
    assert "under-trained" in tpp.evidence
    rep = next(c for c in bent.checks if c.name == "repeated_data")
    share = rep.values["effective_data_share_at_max"]
    R = rep.values["max_epochs_large"] - 1  # D'/D = (1 + R*(1 - exp(-R/R*))) / (R + 1)
    assert share == pytest.approx((1 + 15.39 * (1 - np.exp(-R / 15.39))) / (R + 1))
    assert 0 < share < 1 and f"worth {share:.0%} of as many fresh tokens" in rep.evidence
    d = json.loads(json.dumps(bent.to_dict()))
    assert d["law"]["single_law_rejected"] is True and len(d["causes"]) == 7


def test_straight_law_holds_and_records_clear_the_causes(tmp_path):
    dg = diagnose(_write(tmp_path / "r.csv", _straight_sweep()), n_boot=0)
    assert dg.bend.status == "single law holds" and dg.bend.rejected is False
    assert "largest third" in dg.large_rule
    status = {c.name: c.status for c in dg.checks}
    for name in ("repeated_data", "tokens_per_param", "lr_not_retuned", "warmup_not_retuned",
                 "train_val_gap", "guard_events"):
        assert status[name] == "not supported", name


def test_missing_columns_cannot_tell(tmp_path):
    rows = [{"N": r["N"], "loss": r["loss"]} for r in _bent_sweep()]
    dg = diagnose(_write(tmp_path / "r.csv", rows), n_boot=0)
    status = {c.name: c.status for c in dg.checks}
    assert status.pop("near_floor") in ("supported", "not supported")
    assert set(status.values()) == {"cannot tell"}
    assert "no lr column" in next(c.evidence for c in dg.checks if c.name == "lr_not_retuned")


def test_epochs_from_unique_tokens_and_guard_columns(tmp_path):
    rows = []
    for r in _bent_sweep():
        r = dict(r)
        r["unique_tokens"] = 1e8 if r.pop("epochs") > 1 else 2e8
        r["guard_spike"] = r.pop("guard_events")
        r["guard_nonfinite"] = 1 if r["N"] > 1e8 else 0
        rows.append(r)
    dg = diagnose(_write(tmp_path / "r.csv", rows), n_boot=0)
    status = {c.name: c.status for c in dg.checks}
    assert status["repeated_data"] == "supported" and status["guard_events"] == "supported"


def test_sweep_folder_and_best_run_per_size(tmp_path):
    rows = _straight_sweep()
    extra = [dict(r, loss=r["loss"] * 1.2) for r in rows]  # a worse second run at every size
    _write(tmp_path / "results.csv", rows + extra)
    dg = diagnose(tmp_path, n_boot=0)
    assert dg.n_rows == 24
    assert dg.bend.single.n_points == 12
    assert "best loss at each size" in " ".join(dg.notes)


def test_too_few_sizes_cannot_tell():
    b = find_bend(np.geomspace(1e6, 1e8, 5), 2 + 30 * np.geomspace(1e6, 1e8, 5) ** -0.3, n_boot=0)
    assert b.status == "cannot tell" and b.rejected is None and "at least 8" in b.reason


def test_bad_input(tmp_path):
    with pytest.raises(DataError, match=r"missing columns N, loss .*\(it has: size, acc\)"):
        diagnose(_write(tmp_path / "a.csv", [{"size": 1, "acc": 0.5}]))
    with pytest.raises(DataError, match="does not exist"):
        diagnose(tmp_path / "missing")
    with pytest.raises(DataError, match="N must be a positive number"):
        diagnose(_write(tmp_path / "b.csv", [{"N": -1, "loss": 3.0}, {"N": 2, "loss": 2.9}]))


def test_cli_diagnose_writes_outputs(tmp_path):
    from lenslab.cli import app
    src = _write(tmp_path / "r.csv", _bent_sweep())
    r = CliRunner().invoke(app, ["diagnose", str(src), "--bootstrap", "30", "--out", str(tmp_path / "o")])
    assert r.exit_code == 0, r.output
    assert "single law rejected" in r.output and "Repeated data" in r.output
    d = json.loads((tmp_path / "o" / "diagnosis.json").read_text())
    assert d["law"]["status"] == "single law rejected" and d["causes"][0]["status"] == "supported"
    assert "<svg" in (tmp_path / "o" / "diagnosis.html").read_text()
    assert (tmp_path / "o" / "diagnosis.png").read_bytes()[:4] == b"\x89PNG"
    bad = CliRunner().invoke(app, ["diagnose", str(tmp_path / "nope.csv")])
    assert isinstance(bad.exception, LensError) and "does not exist" in str(bad.exception)


@pytest.mark.parametrize("n", [3, 4])
def test_three_or_four_sizes_are_a_clear_cannot_tell_not_a_crash(tmp_path, n):
    N = np.geomspace(1e3, 3e4, n)
    rows = [{"N": x, "D": 1e6, "loss": 2 + 30 * x ** -0.3} for x in N]
    d = diagnose(_write(tmp_path / "r.csv", rows), n_boot=0)
    assert d.bend.status == "cannot tell" and f"only {n} distinct sizes" in d.bend.reason


def test_repetition_shared_by_small_runs_does_not_explain_the_large_ones(tmp_path):
    rows = _bent_sweep()
    for r in rows:
        r["epochs"] = 16.0  # every run saw its data 16 times
    d = diagnose(_write(tmp_path / "r.csv", rows), n_boot=0)
    rep = next(c for c in d.checks if c.name == "repeated_data")
    assert rep.status == "cannot tell" and "small runs repeated" in rep.evidence


def test_losses_below_the_fitted_floor_do_not_support_near_floor(tmp_path):
    from lenslab.scaling.diagnose import check_floor

    class _Fit:
        params = {"E": 2.5}

    loss = np.array([3.0, 2.8, 2.4, 2.3])
    large = np.array([False, False, True, True])
    c = check_floor(loss, large, _Fit())
    assert c.status == "cannot tell" and "below the fitted floor" in c.evidence


def test_a_steepening_bend_supports_none_of_the_flattening_causes(tmp_path):
    rng = np.random.default_rng(3)
    rows = []
    for N in np.geomspace(1e6, 1e9, 12):  # exponent 0.1, then 0.4 past N = 5e7
        L = 2.0 + 30 * N ** -0.1 * (1 + (N / 5e7) ** (1 / 0.3)) ** (-0.3 * 0.3)
        L *= np.exp(rng.normal(0, 0.002))
        rows.append({"N": N, "D": 2e8, "loss": L, "lr": 3e-4, "warmup": 100, "epochs": 4.0,
                     "guard_events": 0})
    d = diagnose(_write(tmp_path / "r.csv", rows), n_boot=0)
    assert d.bend.rejected and d.bend.alpha_after > d.bend.alpha_before
    assert not [c for c in d.checks if c.status == "supported"]
    assert any("steepens" in n for n in d.notes)

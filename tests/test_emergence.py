"""Emergence: per-example metrics, BIG-bench scores, jump vs smooth, verdicts, inputs, CLI."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from lenslab.emergence import (
    analyze,
    analyze_csv,
    analyze_table,
    breakthroughness,
    edit_distance,
    forecast_surprise,
    linearity,
    parse_metric,
    score_examples,
)
from lenslab.errors import DataError, LensError

SCALES = np.geomspace(1e6, 1e6 * 4 ** 5, 6)


def synthetic(per_digit: list[float], digits: int = 8, examples: int = 300, seed: int = 0):
    """Answers of six models to the same ``digits``-digit questions.

    At scale k every digit is right with probability ``per_digit[k]`` independently, so per-digit
    accuracy follows ``per_digit`` and exact match follows ``per_digit ** digits``. ``logprob`` is
    the log-probability of the whole target under that per-digit model.
    """
    rng = np.random.default_rng(seed)
    targets = ["".join(rng.choice(list("0123456789"), digits)) for _ in range(examples)]
    cols: dict[str, list] = {"scale": [], "example": [], "target": [], "prediction": [], "logprob": []}
    for s, p in zip(SCALES, per_digit):
        for i, t in enumerate(targets):
            pred = "".join(c if rng.random() < p else str((int(c) + 1) % 10) for c in t)
            cols["scale"].append(s)
            cols["example"].append(f"q{i}")
            cols["target"].append(t)
            cols["prediction"].append(pred)
            cols["logprob"].append(digits * math.log(p))
    return cols


SMOOTH_DIGITS = [0.3, 0.5, 0.68, 0.82, 0.92, 0.97]  # per-digit accuracy rises steadily
JUMP_DIGITS = [0.1, 0.1, 0.12, 0.85, 0.95, 0.97]  # the model itself changes abruptly
GENTLE_DIGITS = [0.6, 0.7, 0.78, 0.85, 0.9, 0.94]  # exact match rises gently too


def _run(per_digit, **kw):
    c = synthetic(per_digit)
    return analyze(c["scale"], c["example"], c["target"], c["prediction"], c["logprob"], n_boot=200, **kw)


# ------------------------------------------------------------------------------------------------
# Metrics
# ------------------------------------------------------------------------------------------------


def test_per_example_metrics():
    s = score_examples(["1234", "1234", "12", "ab cd"], ["1234", "1243", "125", " ab cd "], [0.0, -1.0, -2.0, -0.5])
    assert s["exact_match"].tolist() == [1, 0, 0, 1]
    assert s["token_accuracy"].tolist() == [1.0, 0.5, 1.0, 1.0]
    assert s["edit_distance"].tolist() == [0, 2, 1, 0]
    assert s["log_likelihood"].tolist() == [0.0, -1.0, -2.0, -0.5]
    assert s["brier"][0] == 0.0 and s["brier"][1] == pytest.approx((1 - math.exp(-1)) ** 2)
    words = score_examples(["the cat sat"], ["the dog sat"], tokens="whitespace")
    assert words["token_accuracy"][0] == pytest.approx(2 / 3) and words["edit_distance"][0] == 1
    assert edit_distance("kitten", "sitting") == 3 and edit_distance("", "abc") == 3


def test_breakthroughness_and_linearity():
    steady = np.array([0.0, 0.1, 0.2, 0.3, 0.4])
    assert breakthroughness(steady) == pytest.approx(4.0) and linearity(steady) == pytest.approx(4.0)
    jump = np.array([0.0, 0.0, 0.0, 0.8, 0.8])
    assert linearity(jump) == pytest.approx(2.0)  # sqrt(K - 1)
    assert math.isinf(breakthroughness(jump))
    assert breakthroughness(-steady) == pytest.approx(-4.0)  # getting worse with scale


def test_forecast_surprise():
    u = np.log(SCALES)
    J, _ = forecast_surprise(u, np.linspace(0.1, 0.6, 6))
    assert J == pytest.approx(0.0, abs=1e-12)
    J, step = forecast_surprise(u, np.array([0.1, 0.1, 0.1, 0.9, 0.9, 0.9]))
    assert J == pytest.approx(1.0) and step == 2
    J, _ = forecast_surprise(u, 1 - np.exp(-np.arange(6.0)))  # saturating: always below the trend
    assert J < 0


# ------------------------------------------------------------------------------------------------
# Verdicts
# ------------------------------------------------------------------------------------------------


def test_thresholded_exact_match_over_smooth_digits_is_a_metric_artifact():
    res = _run(SMOOTH_DIGITS)
    assert res.verdict == "metric artifact", res.reason
    assert res.curves["exact_match"].shape == "jump"
    assert res.curves["token_accuracy"].shape == "smooth"
    assert res.curves["edit_distance"].shape == "smooth"
    em = res.curves["exact_match"]
    assert em.surprise_interval[0] >= 0.25 and np.all(em.low <= em.values) and np.all(em.values <= em.high)


def test_a_true_jump_is_emergent():
    res = _run(JUMP_DIGITS)
    assert res.verdict == "emergent", res.reason
    assert res.curves["token_accuracy"].shape == "jump"
    assert res.curves["token_accuracy"].jump_between == (SCALES[2], SCALES[3])


def test_gentle_curves_are_inconclusive():
    """Exact match's surprise interval straddles the threshold: the data cannot tell."""
    res = _run(GENTLE_DIGITS)
    assert res.curves["exact_match"].shape == "unclear"
    assert res.verdict == "inconclusive"
    assert "does not jump" in res.reason


def test_exact_match_rising_smoothly_is_not_emergent():
    """Nothing to explain is not 'cannot tell': exact match itself rises on its trend."""
    em = np.linspace(0.1, 0.85, 6)  # straight in log scale
    res = _run((em ** (1 / 8)).tolist())
    assert res.curves["exact_match"].shape == "smooth"
    assert res.verdict == "smooth: not emergent", res.reason
    assert "rises smoothly" in res.reason


def test_against_pretraining_loss():
    c = synthetic(SMOOTH_DIGITS)
    loss_of = {s: 4.0 - 0.3 * k for k, s in enumerate(SCALES)}
    losses = [loss_of[s] for s in c["scale"]]
    res = analyze(c["scale"], c["example"], c["target"], c["prediction"], c["logprob"], losses, n_boot=100)
    d = res.to_dict()["against_loss"]
    assert d["losses"] == sorted(d["losses"], reverse=True)
    from lenslab.emergence.verdict import VERDICTS
    assert d["verdict"] in VERDICTS
    assert set(d["metrics"]) == set(res.curves)


def test_metric_table_input(tmp_path):
    path = tmp_path / "table.csv"
    em = np.array(SMOOTH_DIGITS) ** 8
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["scale", "exact_match", "token_accuracy"])
        for s, a, b in zip(SCALES[::-1], em[::-1], SMOOTH_DIGITS[::-1]):  # any row order
            w.writerow([s, a, b])
    res = analyze_csv(path)
    assert res.source == "table" and res.n_boot == 0
    assert res.verdict == "metric artifact"
    assert res.curves["exact_match"].low is None


def test_a_published_style_table_with_declared_columns(tmp_path):
    """A benchmark table as papers publish it: model names that carry their size, several
    setups per model, an accuracy and a perplexity. --where picks one row per model, --scale
    reads the sizes from the names, --metric declares what each column is."""
    acc = np.array(SMOOTH_DIGITS) ** 8  # thresholded: jumps while the per-digit curve is smooth
    ppl = np.exp(-np.log(np.array(SMOOTH_DIGITS)) * 4)  # a smooth function of the same skill
    names = ["toy-70m", "toy-160m", "toy-410m", "toy-1b", "toy-2.8b", "toy-12b"]
    rows = {"model": [], "shots": [], "acc": [], "ppl": []}
    for name, a, p in zip(names, acc, ppl):
        for shots, bump in (("zero", 0.0), ("five", 0.05)):
            rows["model"].append(name)
            rows["shots"].append(shots)
            rows["acc"].append(min(a + bump, 1.0))
            rows["ppl"].append(p)
    path = _write(tmp_path / "evals.csv", rows)
    res = analyze_csv(path, scale="model", where=["shots=zero"],
                      metrics=["acc:discrete", "ppl:continuous:lower"])
    assert res.scales.tolist() == [7e7, 1.6e8, 4.1e8, 1e9, 2.8e9, 1.2e10]
    assert res.curves["acc"].continuous is False and res.curves["ppl"].higher_is_better is False
    assert res.verdict == "metric artifact"
    with pytest.raises(DataError, match="each model must appear once.*--where"):
        analyze_csv(path, scale="model", metrics=["acc:discrete"])
    with pytest.raises(DataError, match=r"no row has shots=one \(shots has: five, zero\)"):
        analyze_csv(path, scale="model", where=["shots=one"], metrics=["acc:discrete"])
    with pytest.raises(DataError, match="unknown metric column.*declare others with --metric"):
        analyze_table([1, 2, 3], {"acc": [0.1, 0.2, 0.3]})
    from lenslab.errors import ConfigError

    with pytest.raises(ConfigError, match="COLUMN:discrete"):
        analyze_csv(path, scale="model", metrics=["acc"])
    with pytest.raises(DataError, match="share in .0, 1. .* has 25.1; a percentage"):
        analyze_table([1, 2, 3], {"acc": [25.1, 24.9, 27.0]}, kinds={"acc": parse_metric("acc:discrete")[1]})
    from lenslab.table import Table, size_values

    names = ["Yi-6B-200K", "Llama-2-7b-32k", "gpt2-774M", "bert-110k", "pythia-1b-0.5MtokBS"]
    assert size_values(Table("t", {"m": names}, list(range(2, 7))), "m").tolist() == [
        6e9, 7e9, 7.74e8, 1.1e5, 1e9]


def test_result_serialises_and_renders():
    res = _run(SMOOTH_DIGITS)
    d = json.loads(json.dumps(res.to_dict()))
    assert d["verdict"] == "metric artifact"
    assert len(d["metrics"]["exact_match"]["values"]) == 6
    assert "forecast_surprise_interval" in d["metrics"]["token_accuracy"]
    assert "<svg" in res._repr_html_()


def test_too_few_scales_is_inconclusive():
    c = synthetic(SMOOTH_DIGITS)
    keep = [i for i, s in enumerate(c["scale"]) if s <= SCALES[2]]
    res = analyze(*[[c[k][i] for i in keep] for k in ("scale", "example", "target", "prediction")], n_boot=50)
    assert res.verdict == "inconclusive"
    assert res.curves["exact_match"].shape == "too few scales"


# ------------------------------------------------------------------------------------------------
# Bad input and CLI
# ------------------------------------------------------------------------------------------------


def _write(path: Path, cols: dict[str, list]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(list(cols))
        w.writerows(zip(*cols.values()))
    return path


def test_bad_input(tmp_path):
    with pytest.raises(DataError, match=r"missing columns example, prediction for per-example predictions"):
        analyze_csv(_write(tmp_path / "a.csv", {"scale": [1], "target": ["1"]}))
    with pytest.raises(DataError, match="appears twice at scale 2"):
        analyze(["2", "2"], ["q", "q"], ["1", "1"], ["1", "2"], n_boot=0)
    with pytest.raises(DataError, match="scale must be a positive number"):
        analyze_csv(_write(tmp_path / "b.csv", {"scale": [0], "example": [1], "target": ["1"], "prediction": ["1"]}))
    with pytest.raises(DataError, match="log-probability"):
        analyze([1, 2], ["a", "a"], ["1", "1"], ["1", "1"], [0.5, -0.1], n_boot=0)
    with pytest.raises(DataError, match="neither per-example columns"):
        analyze_csv(_write(tmp_path / "c.csv", {"scale": [1], "acc": [0.1]}))
    with pytest.raises(DataError, match="not UTF-8"):
        p = tmp_path / "d.csv"
        p.write_bytes(b"scale,example,target,prediction\n1,\xff,1,1\n")
        analyze_csv(p)


def test_cli_emergence(tmp_path):
    from lenslab.cli import app
    src = _write(tmp_path / "predictions.csv", synthetic(SMOOTH_DIGITS, examples=200))
    out = tmp_path / "o"
    r = CliRunner().invoke(app, ["emergence", str(src), "--bootstrap", "100", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "metric artifact" in r.output
    d = json.loads((out / "emergence.json").read_text())
    assert d["verdict"] == "metric artifact"
    assert {"exact_match", "token_accuracy", "edit_distance", "log_likelihood", "brier"} <= set(d["metrics"])
    assert "<svg" in (out / "emergence.html").read_text()
    assert (out / "emergence.png").read_bytes()[:4] == b"\x89PNG"
    bad = CliRunner().invoke(app, ["emergence", str(tmp_path / "none.csv"), "--out", str(out)])
    assert isinstance(bad.exception, LensError) and "does not exist" in str(bad.exception)


def test_a_negligible_move_of_exact_match_is_flat_not_a_jump():
    """4 right answers out of 512 at the largest scale: relative to its own range that is a
    huge surprise, but no capability appeared."""
    from lenslab.emergence.verdict import analyze_table

    res = analyze_table([1e3, 3e3, 1e4, 3e4, 1e5],
                        {"exact_match": [0.0, 0.0, 0.0, 0.0, 4 / 512],
                         "token_accuracy": [0.30, 0.31, 0.33, 0.34, 0.36]})
    assert res.curves["exact_match"].shape == "flat"
    assert res.verdict == "flat: not emergent"

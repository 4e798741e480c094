"""One shape for every result: written and read back through the registry, files of lenslab 0.1
still open, and the run report is a loop over analysis/ that knows no lab."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import cli

from lenslab.attention.classes import HeadClass
from lenslab.errors import DataError
from lenslab.report.run import write_run_report
from lenslab.result import (
    KINDS,
    current_command,
    envelope,
    from_data,
    read_result,
    result_class,
    write_result,
)

V01 = Path(__file__).parent / "fixtures" / "v0.1"


def _legacy(name: str) -> dict:
    return json.loads((V01 / name).read_text())


@pytest.mark.parametrize("path, kind", [
    ("ind/analysis/heads.json", "heads"), ("ind/analysis/icl.json", "icl"),
    ("rep/analysis/probe.json", "probe"), ("rep/analysis/probe-checkpoints.json", "probe-checkpoints"),
    ("results/length/probe.json", "probe"), ("results/counterfactual/probe.json", "probe"),
    ("results/algorithms.json", "algorithms"), ("results/paraphrase.json", "paraphrase")])
def test_files_of_lenslab_0_1_read_back_and_round_trip(path, kind, tmp_path):
    res = read_result(V01 / path)
    assert res.kind == kind and res.command.startswith("lenslab ")
    html = res.to_html()
    assert html and "could not be read" not in html
    # written again in today's shape, it reads back to the same data
    again = read_result(write_result(res, tmp_path))
    assert envelope(again) == envelope(res)
    assert (tmp_path / f"{res.kind}.html").is_file()


def test_a_run_folder_of_lenslab_0_1_reports_every_result(tmp_path):
    run = tmp_path / "ind"
    shutil.copytree(V01 / "ind", run)
    html = write_run_report(run).read_text()
    assert "could not be read" not in html
    assert "<h2>Heads of" in html and "<h2>In-context learning" in html
    # the heads' classes of 0.1 ("positional(3)") are typed now, the offset a field of its own
    res = read_result(run / "analysis" / "heads.json")
    assert all(isinstance(h["class"], HeadClass) for h in res.heads)


def test_the_report_shows_a_damaged_result_as_a_note_and_the_rest(tmp_path):
    run = tmp_path / "rep"
    shutil.copytree(V01 / "rep", run)
    (run / "analysis" / "probe.json").write_text('{"kind": "probe", "probe": "rules"}')
    (run / "analysis" / "notes.json").write_text("[]")  # not a result: left alone
    html = write_run_report(run).read_text()
    assert "probe.json could not be read" in html
    assert "across checkpoints" in html  # the other result is still there
    assert "notes.json" not in html


def test_every_registered_kind_names_a_loader():
    for kind in KINDS:
        loader = result_class(kind)
        assert hasattr(loader, "from_dict") or callable(loader), kind


def test_unknown_kinds_and_broken_files_are_one_line_errors(tmp_path):
    with pytest.raises(DataError, match="unknown result kind"):
        from_data({"x": 1}, "nonsense")
    bad = tmp_path / "heads.json"
    bad.write_bytes(b"\xff\xfe")
    with pytest.raises(DataError, match="not a readable result"):
        read_result(bad)


def test_the_cli_records_its_command_line_once(tmp_path):
    run = tmp_path / "rep"
    shutil.copytree(V01 / "rep", run)
    code, _, err = cli("report", run)
    assert code == 0, err
    assert current_command() == f"lenslab report {run}"
    res = read_result(run / "analysis" / "probe.json")
    # written from the CLI, a result carries the command line that made it ...
    assert read_result(write_result(res, tmp_path / "a")).command == f"lenslab report {run}"
    # ... and from Python, the page says so
    path = write_result(res, tmp_path / "b", command="")
    assert read_result(path).command == ""
    assert "Computed in Python" in path.with_suffix(".html").read_text()


def _round_trip(res, tmp_path):
    path = write_result(res, tmp_path)
    back = read_result(path)
    assert type(back) is type(res) and envelope(back) == envelope(res)
    assert "<svg" in back.to_html()  # drawn again from the file alone
    return back


@pytest.mark.parametrize("form", ["power", "broken", "chinchilla", "isoflop"])
def test_scaling_fits_round_trip_with_their_points_and_refits(form, tmp_path):
    import numpy as np

    from lenslab.scaling.forms import fit_table
    from lenslab.table import Table

    rng = np.random.default_rng(0)
    if form in ("power", "broken"):
        N = np.geomspace(1e5, 1e9, 12)
        cols = {"N": N, "loss": 2 + 40 * N ** -0.3 * np.exp(rng.normal(0, 0.01, N.size))}
    else:  # five budgets, seven sizes each, around the optimum of a Chinchilla surface
        C = np.repeat(np.geomspace(1e17, 1e19, 5), 7)
        N = np.sqrt(C / 120) * np.tile(np.geomspace(0.1, 10, 7), 5)
        D = C / (6 * N)
        cols = {"N": N, "D": D, "C": C, "loss": 1.69 + 406.4 / N ** 0.34 + 410.7 / D ** 0.28}
    n = len(cols["loss"])
    table = Table("synthetic", {k: [repr(float(v)) for v in vs] for k, vs in cols.items()},
                  list(range(2, n + 2)))
    res = fit_table(table, form, bootstrap=20, holdout_last=0 if form == "isoflop" else 2)
    back = _round_trip(res, tmp_path)
    assert back.params == pytest.approx(res.params)
    assert set(back.intervals) == set(res.intervals)
    for k, (lo, hi) in res.intervals.items():
        assert back.intervals[k] == pytest.approx((lo, hi))

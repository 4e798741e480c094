"""RUN_DIR/report.html gathers the run's training curve and the analyses in its folder."""

from __future__ import annotations

import re
import shutil

from conftest import cli

from lenslab.attention.lab import run_heads
from lenslab.icl.score import measure_icl
from lenslab.result import write_result
from lenslab.run import Run


def test_report_reads_the_run_folder(induction_runs, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(induction_runs[2], run)
    code, _, err = cli("report", run)
    assert code == 0, err
    html = (run / "report.html").read_text()
    assert "<h2>Training</h2>" in html and "<h2>Heads" not in html  # no analyses yet
    run_heads(str(run), progress=False, command="lenslab heads run")
    write_result(measure_icl(run, with_phase=False), Run(run), "lenslab icl run")
    assert cli("report", run)[0] == 0
    html = (run / "report.html").read_text()
    assert "<h2>Heads of" in html and "<h2>In-context learning" in html
    assert html.count("<svg") >= 3
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    code, _, err = cli("report", tmp_path / "nothing")
    assert code == 2 and "not a lenslab run folder" in err


def test_every_evaluation_is_logged_whatever_log_every(tmp_path):
    from conftest import metrics, tiny_config

    import lenslab

    run = tmp_path / "run"
    lenslab.train(tiny_config(train={"max_steps": 30, "log_every": 7, "eval_every": 10,
                                     "checkpoint_every": 0}), run, progress=False)
    recs = metrics(run)
    assert [r["step"] + 1 for r in recs if "val_loss" in r] == [10, 20, 30]
    assert {r["step"] for r in recs if "val_loss" not in r} == {0, 7, 14, 21, 28}

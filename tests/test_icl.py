"""In-context learning measures: ICL score, per-position loss, phase change, comparisons."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from conftest import cli_proc

import lenslab
from lenslab.errors import DataError, RunDirError
from lenslab.icl.score import (
    compare,
    default_positions,
    detect_jump,
    measure_icl,
    phase_change,
)


def test_default_positions_scale_olssons_50_and_500():
    assert default_positions(512) == (49, 499)
    e, l_ = default_positions(64)
    assert 0 < e < l_ < 64


def test_icl_score_of_an_induction_model(induction_runs):
    rep = measure_icl(induction_runs[2], with_phase=False)
    c = np.array(rep.curve)
    assert rep.score["icl_score"] < -1.0  # late tokens are far easier than early ones
    assert c[-8:].mean() < c[:4].mean()
    control = measure_icl(induction_runs[1], with_phase=False)
    assert rep.score["icl_score"] < control.score["icl_score"]  # induction beats copying


def test_phase_change_is_detected_across_checkpoints(induction_runs):
    ph = phase_change(induction_runs[2])
    assert ph.steps[0] == 0 and ph.steps[-1] == 400 and len(ph.steps) >= 8
    assert ph.induction[0] < 0.1 and ph.induction[-1] > 0.6
    assert ph.detected and ph.jump_from < ph.jump_step < ph.jump_to
    assert ph.repeat_loss[-1] < 0.5 * ph.repeat_loss[0]
    control = phase_change(induction_runs[1])
    assert not control.detected and max(control.induction) < 0.2


def test_detect_jump_on_a_known_curve():
    steps = [0, 100, 200, 300, 400]
    assert detect_jump(steps, [0.02, 0.05, 0.4, 0.8, 0.85]) == (250, 100, 300)
    assert detect_jump(steps, [0.02, 0.03, 0.03, 0.04, 0.05])[2] is None


def test_transformer_against_lstm_on_the_same_data(induction_runs, tmp_path):
    cfg = lenslab.example_config("lstm")
    cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"max_steps": 60,
                                                                     "eval_every": 0})})
    assert lenslab.train(cfg, tmp_path / "lstm", progress=False).status == "completed"
    cmp_ = compare(induction_runs[2], tmp_path / "lstm")
    assert len(cmp_.names) == 2 and all(len(c) == 64 for c in cmp_.curves.values())
    gpt, lstm = cmp_.names
    assert cmp_.scores[gpt]["loss_late"] < cmp_.scores[lstm]["loss_late"]
    other = cfg.model_copy(update={"seed": 9})
    lenslab.train(other.model_copy(update={"train": other.train.model_copy(update={"max_steps": 2})}),
                  tmp_path / "lstm9", progress=False)
    with pytest.raises(DataError, match="different data"):
        compare(induction_runs[2], tmp_path / "lstm9")


def test_icl_cli_and_bad_input(induction_runs, tmp_path):
    r = cli_proc("icl", str(induction_runs[2]), "--out", str(tmp_path / "icl"))
    assert r.returncode == 0, r.stderr
    data = json.loads((tmp_path / "icl" / "icl.json").read_text())
    assert data["icl_score"] < 0 and data["phase_change"]["detected"]
    assert "<svg" in (tmp_path / "icl" / "icl.html").read_text()
    r = cli_proc("icl", str(induction_runs[2]), "--out", str(tmp_path / "x"), "--late", "200")
    assert r.returncode == 2 and "do not fit" in r.stderr and "Traceback" not in r.stderr
    bare = tmp_path / "bare"
    shutil.copytree(induction_runs[1], bare)
    shutil.rmtree(bare / "checkpoints")
    with pytest.raises(RunDirError, match="no verified checkpoint"):
        measure_icl(bare)
    r = cli_proc("replicate", "nonsense")
    assert r.returncode == 2 and "induction" in r.stderr

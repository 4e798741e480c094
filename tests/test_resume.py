"""Exact resume: a run killed with SIGKILL anywhere and resumed equals the uninterrupted run,
bit for bit (per-step losses and final weights), on CPU in float32."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
from conftest import (
    ROOT,
    cli_proc,
    events,
    final_weights,
    metrics,
    run_cli,
    write_config,
)

OVER = dict(optim={"grad_accum": 2}, train={"max_steps": 40, "checkpoint_every": 10})


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run (with a NaN on batch 12, which resume must replay too)."""
    d = tmp_path_factory.mktemp("ref")
    cfg = write_config(d / "c.toml", **OVER)
    r = run_cli("train", str(cfg), "--out", str(d / "run"), "--inject", "nan@12", "-q")
    assert r.returncode == 0, r.stderr
    return cfg, d / "run"


@pytest.mark.parametrize("kill", ["kill@17", "kill@25:accum", "kill@30:ckpt"])
def test_sigkill_then_resume_is_bitwise_identical(tmp_path, reference, kill):
    cfg, ref = reference
    run = tmp_path / "run"
    r = run_cli("train", str(cfg), "--out", str(run), "--inject", f"nan@12,{kill}", "-q")
    assert r.returncode == -signal.SIGKILL, r.stderr
    if kill.endswith(":ckpt"):  # the half-written checkpoint never got its final name
        assert any(p.name.startswith(".tmp-") for p in (run / "checkpoints").iterdir())
        assert not (run / "checkpoints" / "step-000030").exists()
    r = cli_proc("resume", str(run), "-q")  # in-process: a resume needs no fresh interpreter
    assert r.returncode == 0, r.stderr
    assert metrics(run) == metrics(ref)
    assert final_weights(run) == final_weights(ref)
    assert not any(p.name.startswith(".tmp-") for p in (run / "checkpoints").iterdir())
    assert [e["type"] for e in events(run)].count("resume") == 1


def test_sigterm_writes_a_checkpoint_and_exits_75(tmp_path, reference):
    cfg, ref = reference
    run = tmp_path / "run"
    r = run_cli("train", str(cfg), "--out", str(run), "--inject", "nan@12,term@23", "-q")
    assert r.returncode == 75, r.stderr
    assert (run / "checkpoints" / "step-000023" / "MANIFEST.json").exists()
    assert "lenslab resume" in r.stderr
    assert [e["type"] for e in events(run)][-1] == "preempt"
    r = cli_proc("resume", str(run), "-q")  # in-process: a resume needs no fresh interpreter
    assert r.returncode == 0, r.stderr
    assert metrics(run) == metrics(ref)
    assert final_weights(run) == final_weights(ref)
    types = [e["type"] for e in events(run)]  # the stop stays on record after the resume
    assert types[types.index("preempt") + 1] == "resume"


def test_external_sigterm_during_training(tmp_path):
    cfg = write_config(tmp_path / "c.toml", train={"max_steps": 100000, "checkpoint_every": 0,
                                                   "eval_every": 0})
    run = tmp_path / "run"
    p = subprocess.Popen([sys.executable, "-m", "lenslab", "train", str(cfg), "--out", str(run), "-q"],
                         cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline:
        m = run / "metrics.jsonl"
        if m.exists() and m.read_text().count("\n") > 20:
            break
        time.sleep(0.1)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 75, err
    from lenslab import load_run

    info = load_run(run)
    assert info.status == "preempted" and info.checkpoints()[0].step == info.step > 20


def test_corrupted_newest_checkpoint_falls_back_to_the_previous_one(tmp_path, reference):
    cfg, ref = reference
    run = tmp_path / "run"
    assert cli_proc("train", str(cfg), "--out", str(run), "--inject", "nan@12", "-q").returncode == 0
    newest = run / "checkpoints" / "step-000040" / "model.safetensors"
    data = bytearray(newest.read_bytes())
    data[-5] ^= 0xFF  # one flipped bit pattern in the weights
    newest.write_bytes(bytes(data))
    r = cli_proc("resume", str(run), "-q")  # in-process: a resume needs no fresh interpreter
    assert r.returncode == 0, r.stderr
    assert "step-000040" in r.stderr and "sha256" in r.stderr  # the warning says which and why
    assert any(e["type"] == "checkpoint_invalid" for e in events(run))
    assert final_weights(run) == final_weights(ref)  # replayed 30 -> 40 exactly

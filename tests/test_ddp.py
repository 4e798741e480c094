"""DDP over gloo with 2 CPU processes through torchrun: same curve as one process with the
same global batch, and exact kill-and-resume."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import ROOT, events, final_weights, metrics, run_cli, write_config

OVER = dict(model={"dropout": 0.0}, optim={"grad_accum": 2, "batch_size": 8},
            train={"max_steps": 30, "checkpoint_every": 10, "eval_every": 10})


def torchrun(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone",
           "-m", "lenslab", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, cwd=ROOT)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    d = tmp_path_factory.mktemp("ddp")
    cfg = write_config(d / "c.toml", **OVER)
    single = run_cli("train", str(cfg), "--out", str(d / "single"), "--inject", "nan@12", "-q")
    assert single.returncode == 0, single.stderr
    ddp = torchrun("train", str(cfg), "--out", str(d / "ddp"), "--inject", "nan@12", "-q")
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    return cfg, d


def test_two_process_curve_matches_one_process(runs):
    _, d = runs
    one, two = metrics(d / "single"), metrics(d / "ddp")
    assert [r["step"] for r in one] == [r["step"] for r in two]
    assert [r["skipped"] for r in one] == [r["skipped"] for r in two]  # NaN skip agreed, no hang
    for a, b in zip(one, two):
        if a["skipped"]:
            continue
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4, abs=1e-5)
        assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=1e-3, abs=1e-6)
    assert [e["type"] for e in events(d / "ddp")] == ["nonfinite", "skip"]
    import json

    assert json.loads((d / "ddp" / "run.json").read_text())["world_size"] == 2


def test_two_process_kill_and_resume_is_exact(runs, tmp_path):
    cfg, d = runs
    run = tmp_path / "run"
    r = torchrun("train", str(cfg), "--out", str(run), "--inject", "nan@12,kill@25:accum", "-q")
    assert r.returncode != 0
    r = torchrun("resume", str(run), "-q")
    assert r.returncode == 0, r.stderr[-3000:]
    assert metrics(run) == metrics(d / "ddp")
    assert final_weights(run) == final_weights(d / "ddp")

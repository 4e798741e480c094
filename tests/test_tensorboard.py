"""TensorBoard logs read back with TensorBoard's own reader: a rolled-back run and a run killed
and resumed have exactly one value per step, the one the run kept; guard events, evaluations
and a sweep's grid values (HParams) are there."""

from __future__ import annotations

import signal

import pytest
from conftest import cli_proc, metrics, run_cli, tiny_config, tiny_dict, write_config

import lenslab

pytest.importorskip("tensorboard", reason="the test extra installs tensorboard")
from tensorboard.backend.event_processing.event_accumulator import (  # noqa: E402
    EventAccumulator,
)


def _read(run_dir):
    acc = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def _kept(run_dir, key="loss"):
    """Per step, the value of the last record written for it (replays come later)."""
    out = {}
    for r in metrics(run_dir, drop=()):
        if key in r:
            out[r["step"]] = r[key]
    return out


def test_a_rolled_back_run_has_one_value_per_step(tmp_path):
    cfg = tiny_config(train={"max_steps": 60, "checkpoint_every": 10, "eval_every": 20,
                             "tensorboard": True},
                      optim={"schedule": "constant", "warmup_steps": 0})
    res = lenslab.train(cfg, tmp_path / "run", inject="spike@34-36", progress=False)
    assert res.status == "completed" and res.events["rollback"] == 1
    acc = _read(tmp_path / "run")
    loss = acc.Scalars("train/loss")
    assert [e.step for e in loss] == list(range(60))  # steps 30-37 written twice, kept once
    kept = _kept(tmp_path / "run")
    assert all(e.value == pytest.approx(kept[e.step], rel=1e-6) for e in loss)
    assert [e.step for e in acc.Scalars("eval/val_loss")] == [19, 39, 59]
    tags = acc.Tags()["scalars"]
    # the guard's events stay visible though their steps were replayed
    assert [e.value for e in acc.Scalars("guard/spike")] == [1, 2, 3]
    assert [(e.step, e.value) for e in acc.Scalars("guard/rollback")] == [(37, 1)]
    assert {"train/lr", "train/grad_norm", "guard/lr_backoff"} <= set(tags)


def test_a_run_killed_and_resumed_has_one_value_per_step(tmp_path):
    cfg = write_config(tmp_path / "c.toml", train={"max_steps": 40, "checkpoint_every": 10,
                                                   "tensorboard": True})
    run = tmp_path / "run"
    r = run_cli("train", str(cfg), "--out", str(run), "--inject", "kill@25", "-q")
    assert r.returncode == -signal.SIGKILL, r.stderr
    assert max(e.step for e in _read(run).Scalars("train/loss")) == 24  # 20-24 get replayed
    # in-process, so the resumed writer's pid is the (older, smaller) test process's: its event
    # file must still sort after the killed run's, or the purged steps come back
    r = cli_proc("resume", str(run), "-q")
    assert r.returncode == 0, r.stderr
    loss = _read(run).Scalars("train/loss")
    assert [e.step for e in loss] == list(range(40))
    kept = _kept(run)
    assert all(e.value == pytest.approx(kept[e.step], rel=1e-6) for e in loss)


def test_a_sweep_lists_its_grid_in_the_hparams_table(tmp_path):
    from tensorboard.plugins.hparams import plugin_data_pb2

    from lenslab.scaling import run_sweep

    base = tiny_dict(train={"max_steps": 6, "tensorboard": True})
    sweep = {"name": "t", "workers": 1, "threads": 1, "predictions": 0, "base": base,
             "grid": {"d_model": [32], "n_layer": [1]}}
    assert run_sweep(sweep, tmp_path / "out", progress=False).exit_code == 0
    (run,) = (tmp_path / "out" / "runs").iterdir()
    plugin = _read(run).PluginTagToContent("hparams")
    info = plugin_data_pb2.HParamsPluginData.FromString(
        plugin["_hparams_/session_start_info"]).session_start_info
    assert info.hparams["d_model"].number_value == 32
    assert info.hparams["n_layer"].number_value == 1
    assert lenslab.load_run(run).config.model.d_model == 32

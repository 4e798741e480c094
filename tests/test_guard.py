"""The guard: skipped steps leave state bitwise unchanged, spikes roll back, clipping is right."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import events, metrics, run_cli, tiny_config, write_config

import lenslab
from lenslab.config import GuardConfig
from lenslab.run.inject import Injections
from lenslab.training.guard import Guard
from lenslab.training.trainer import Trainer


def _snapshot(t: Trainer):
    return (copy.deepcopy({k: v.clone() for k, v in t.model.state_dict().items()}),
            copy.deepcopy(t.opt.state_dict()))


def _assert_same(a, b):
    (wa, oa), (wb, ob) = a, b
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    for pid, st in oa["state"].items():
        for k, v in st.items():
            assert torch.equal(v, ob["state"][pid][k]), (pid, k)


def test_nan_step_is_skipped_and_leaves_state_bitwise_unchanged(tmp_path):
    snaps = {}

    def grab(trainer, rec):
        if rec["step"] in (11, 12, 13):
            snaps[rec["step"]] = (_snapshot(trainer), rec)

    cfg = tiny_config(train={"max_steps": 14})
    t = Trainer.create(cfg, tmp_path / "run", Injections.parse("nan@12"),
                       progress=False, callbacks=[grab])
    res = t.fit()
    assert res.status == "completed"
    (after11, _), (after12, rec12), (after13, _) = snaps[11], snaps[12], snaps[13]
    assert rec12["skipped"] and rec12["loss"] != rec12["loss"]  # NaN logged, step skipped
    _assert_same(after11, after12)  # the NaN step changed nothing, not even Adam's step count
    w11, w13 = after11[0], after13[0]
    assert any(not torch.equal(w11[k], w13[k]) for k in w11)  # training went on
    ev = events(tmp_path / "run")
    assert [e["type"] for e in ev] == ["nonfinite", "skip"]
    assert ev[0]["step"] == 12 and ev[0]["data_index"] == 12


def test_spike_rolls_back_skips_the_bad_batches_and_backs_off_the_lr(tmp_path):
    cfg = tiny_config(train={"max_steps": 60, "checkpoint_every": 10},
                      optim={"schedule": "constant", "warmup_steps": 0})
    res = lenslab.train(cfg, tmp_path / "run", inject="spike@34-36", progress=False)
    assert res.status == "completed" and res.events["rollback"] == 1
    ev = events(tmp_path / "run")
    types = [e["type"] for e in ev]
    assert types.count("spike") == 3
    rb = next(e for e in ev if e["type"] == "rollback")
    assert rb["to_step"] == 30 and rb["skip_batches"] == [34, 36] and rb["step"] == 37
    assert next(e for e in ev if e["type"] == "lr_backoff")["lr_scale"] == 0.5
    m = metrics(tmp_path / "run")
    replay = m[m.index(next(r for r in m if r["step"] == 30 and r["seq"] > 30)):]
    used = [r["data_index"] for r in replay]
    assert used[:5] == [30, 31, 32, 33, 37]  # the bad batches are never used again
    assert all(abs(r["lr"] - 0.5 * 3e-3) < 1e-12 for r in replay)  # backoff really applies
    assert all(r["lr"] == 3e-3 for r in m if r["seq"] < 30)
    assert not any(r["skipped"] for r in replay)


def test_logged_spikes_are_events_and_the_steps_are_applied(tmp_path):
    """on_spike = "log" (full-batch runs): an injected spike is recorded, but no step is
    skipped, nothing rolls back and the LR is untouched; NaN is still skipped. The applied
    spike joins the window (so a lasting rise is not logged forever), which hides the spikes
    right after it."""
    cfg = tiny_config(train={"max_steps": 50, "checkpoint_every": 10},
                      optim={"schedule": "constant", "warmup_steps": 0}, guard={"on_spike": "log"})
    res = lenslab.train(cfg, tmp_path / "run", inject="spike@34-36,nan@40", progress=False)
    assert res.status == "completed"
    assert res.events["spike"] >= 1 and res.events["rollback"] == 0 and res.events["nonfinite"] == 1
    ev = events(tmp_path / "run")
    spikes = [e for e in ev if e["type"] == "spike"]
    assert spikes[0]["data_index"] == 34 and {e["data_index"] for e in spikes} <= {34, 35, 36}
    assert all(e["action"] == "logged" and e["zscore"] > 6 for e in spikes)
    assert not any(e["type"] == "skip" and e["reason"] == "spike" for e in ev)
    from lenslab.report.training import describe_events

    assert "logged and the update applied" in describe_events(spikes)[0]
    m = metrics(tmp_path / "run")
    assert [r["data_index"] for r in m if r["skipped"]] == [40]
    assert all(r["lr"] == 3e-3 for r in m) and len(m) == 50


def test_repeated_failure_gives_up_with_exit_code_3(tmp_path):
    cfg = write_config(tmp_path / "c.toml", guard={"max_recoveries": 1})
    r = run_cli("train", str(cfg), "--out", str(tmp_path / "run"), "--inject", "nan@20-39", "-q")
    assert r.returncode == 3, r.stderr
    assert "gave up" in r.stderr and "step-0000" in r.stderr and "Traceback" not in r.stderr
    types = [e["type"] for e in events(tmp_path / "run")]
    assert types.count("rollback") == 1 and types[-1] == "give_up"
    from lenslab import load_run

    assert load_run(tmp_path / "run").status == "gave_up"


def test_skip_policy_gives_up_after_too_many_consecutive_anomalies(tmp_path):
    cfg = tiny_config(guard={"policy": "skip", "max_consecutive_skips": 4})
    res = lenslab.train(cfg, tmp_path / "run", inject="nan@5-30", progress=False)
    assert res.status == "gave_up" and res.exit_code == 3 and res.step == 9


@pytest.mark.parametrize("precision", ["fp32", "fp16", "bf16"])
def test_clipping_once_per_step_after_unscale(tmp_path, monkeypatch, precision):
    import lenslab.training.trainer as tr

    calls = []
    real = tr.clip_global_norm

    def counting(params, max_norm):
        calls.append(max_norm)
        return real(params, max_norm)

    monkeypatch.setattr(tr, "clip_global_norm", counting)
    max_norm = 0.05
    cfg = tiny_config(train={"max_steps": 12, "precision": precision, "eval_every": 0},
                      optim={"grad_clip": max_norm, "grad_accum": 4})
    t = Trainer.create(cfg, tmp_path / "run", progress=False)
    seen = []

    def at_step(opt, args, kwargs):  # what the optimizer really applies
        grads = [p.grad for g in opt.param_groups for p in g["params"] if p.grad is not None]
        seen.append(torch.nn.utils.get_total_norm(grads).item())

    t.opt.register_step_pre_hook(at_step)
    assert t.fit().status == "completed"
    assert len(calls) == 12  # once per optimizer step, not per micro-batch
    assert len(seen) >= 10
    assert max(seen) <= max_norm * (1 + 1e-4)
    logged = [r["grad_norm"] for r in metrics(tmp_path / "run") if not r["skipped"]]
    assert min(logged) > max_norm  # the logged norm is the pre-clip global norm: clipping was active
    if precision == "fp16":
        assert all(r["loss_scale"] > 1 for r in metrics(tmp_path / "run"))


def test_logged_spikes_follow_a_lasting_rise():
    g = Guard(GuardConfig(spike_warmup=5, spike_window=10, on_spike="log"))
    for i in range(10):
        assert g.check(i, i, 1.0 + 0.01 * (i % 2), 1.0).kind is None
    logged = [g.check(10 + i, 10 + i, 1.5, 1.0).kind for i in range(30)]
    assert logged[0] == "spike" and logged.count("spike") < 5 and logged[-10:] == [None] * 10
    assert g.consecutive == 0


def test_spike_detector_needs_warmup_and_ignores_noise():
    g = Guard(GuardConfig(spike_warmup=5, spike_window=10, spike_zscore=6.0))
    assert g.check(0, 0, 10.0, 1.0).ok  # no history: nothing is a spike yet
    for i, v in enumerate([2.0, 2.1, 1.9, 2.05, 1.95, 2.0]):
        assert g.check(i + 1, i + 1, v, 1.0).ok
    assert g.check(7, 7, 2.2, 1.0).ok  # within noise
    v = g.check(8, 8, 20.0, 1.0)
    assert not v.ok and v.kind == "spike" and v.zscore > 6
    assert not g.check(9, 9, float("inf"), 1.0).ok
    assert g.check(10, 10, 2.0, float("nan")).kind == "nonfinite"
    assert g.check(11, 11, 2.0, 1.0).ok  # a good step resets the streak

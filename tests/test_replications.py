"""Replications: registered, and their measures read what their targets say."""

from __future__ import annotations

from lenslab.replications.grokking import grokking_checks
from lenslab.replications.lsa_gd import lsa_gd_experiment


def test_shortened_lsa_gd_learns_towards_one_gd_step(tmp_path):
    exp = lsa_gd_experiment(tmp_path, steps=600, progress=False)
    assert exp["status"] == "completed"
    first, last = exp["curve"][0], exp["curve"][-1]
    assert first["step"] == 0 and last["step"] == 600
    assert last["mse"] < 0.6 * last["mse_zero"]  # well below predicting 0
    assert abs(last["rel_gap"]) < 0.05  # within 5% of the optimal GD step already
    assert last["sens_cos"] > first["sens_cos"] + 0.3 and last["sens_cos"] > 0.9


def test_replications_are_registered():
    from lenslab.replications import available

    names = available()
    assert {"lsa-gd", "icl-regression", "grokking"} <= set(names)


def _grok_metrics(acc_at):
    recs = []
    for s in range(0, 8000):
        r = {"step": s, "loss": 2.0 * 0.99 ** s, "skipped": False}
        if (s + 1) % 100 == 0:
            r.update(test_acc=acc_at(s + 1), train_acc=1.0, train_loss=r["loss"], test_loss=1.0)
        recs.append(r)
    return recs


def test_grokking_checks_read_the_targets_from_the_metrics():
    measured, short = grokking_checks(_grok_metrics(lambda s: 0.02 if s < 5000 else 0.97))
    assert short == []
    assert measured["first_step_train_loss_below_1e-3"] == 758  # 2 * 0.99^757 < 1e-3
    assert measured["first_step_test_acc_0.9"] == 5000
    measured, short = grokking_checks(_grok_metrics(lambda s: 0.3 if s < 7000 else 0.5))
    assert any("0.300 >= 0.15 before step 3500 (at step 100)" in s for s in short)
    assert any("did not reach 0.9 by step 8000 (final 0.500)" in s for s in short)
    assert measured["max_test_acc_until_3500"] == 0.3

"""In-context regression: the task, the LSA model, the baselines, the verdict, bad input."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from conftest import cli_proc, tiny_dict

from lenslab.config import ICLRegressionData, LSAConfig, config_from_dict
from lenslab.data import build_task, resolve_config
from lenslab.data.regression import ICLRegressionTask
from lenslab.errors import ConfigError, DataError, RunDirError
from lenslab.icl import algorithms as A
from lenslab.models import GPT, LinearSelfAttention


def _problems(n=64, k=8, d=5, noise=0.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(n, d, generator=g, dtype=torch.float64)
    x = torch.randn(n, k, d, generator=g, dtype=torch.float64)
    y = (x @ w[..., None]).squeeze(-1) + noise * torch.randn(n, k, generator=g, dtype=torch.float64)
    return x, y, w


def _regression_cfg(**data):
    d = {"task": "icl_regression", "d": 3, "n_points": 6, **data}
    return config_from_dict({
        "name": "reg", "seed": 1,
        "model": {"kind": "gpt", "n_layer": 1, "n_head": 2, "d_model": 16, "n_ctx": 12},
        "data": d,
        "optim": {"lr": 3e-3, "batch_size": 16, "schedule": "constant"},
        "train": {"max_steps": 20, "eval_every": 10, "checkpoint_every": 10, "threads": 1,
                  "device": "cpu"},
    })


# ------------------------------------------------------------------------- baselines


@pytest.mark.parametrize("k", [5, 6, 9])
def test_least_squares_recovers_w_exactly_from_d_examples_without_noise(k):
    x, y, w = _problems(k=k)
    torch.testing.assert_close(A.least_squares_weights(x, y), w, rtol=0, atol=1e-8)


def test_least_squares_is_the_minimum_norm_interpolant_below_d():
    x, y, _ = _problems(k=3)
    w = A.least_squares_weights(x, y)
    torch.testing.assert_close((x @ w[..., None]).squeeze(-1), y, rtol=0, atol=1e-9)  # fits
    # minimum norm: w lies in the row space of X, i.e. w = X^T a
    a = torch.linalg.solve(x @ x.transpose(1, 2), y[..., None])
    torch.testing.assert_close(w, (x.transpose(1, 2) @ a).squeeze(-1), rtol=0, atol=1e-9)


@pytest.mark.parametrize("k", [2, 8])
def test_ridge_tends_to_least_squares_as_lambda_goes_to_zero(k):
    x, y, _ = _problems(k=k, noise=0.1)
    ls = A.least_squares_weights(x, y)
    gaps = [float((A.ridge_weights(x, y, lam) - ls).abs().max()) for lam in (1.0, 1e-3, 1e-7)]
    assert gaps[0] > gaps[1] > gaps[2]
    assert gaps[2] < 1e-5


def test_gd_weights_are_one_gradient_step_from_zero():
    x, y, _ = _problems(k=7)
    w = torch.zeros(x.shape[0], x.shape[2], dtype=x.dtype, requires_grad=True)
    loss = (((x @ w[..., None]).squeeze(-1) - y) ** 2).sum(1) / (2 * x.shape[1])
    (g,) = torch.autograd.grad(loss.sum(), w)
    torch.testing.assert_close(A.gd_weights(x, y, 0.7), -0.7 * g)
    torch.testing.assert_close(A.gd_weights(x, y, 1.0), (x * y[..., None]).mean(1))  # averaging


@pytest.mark.parametrize("x_dist,noise", [("normal", 0.0), ("uniform", 0.0), ("normal", 0.5)])
def test_line_searched_gd_step_matches_the_closed_form(x_dist, noise):
    task = ICLRegressionTask(ICLRegressionData(d=4, n_points=9, x_dist=x_dist, noise=noise), 0)
    for k in (2, 8):
        closed = A.gd_step_size_closed_form(task.d, k, task.x_var, task.x_m4, noise)
        searched = A.gd_step_size(task, k, n=60_000)
        assert searched == pytest.approx(closed, rel=0.03), (k, searched, closed)
    assert A.gd_step_size_closed_form(5, 10) == pytest.approx(10 / 16)  # k / (k + d + 1)


def test_knn_averages_the_nearest_labels():
    xc = torch.tensor([[[0.0], [1.0], [2.0], [10.0]]], dtype=torch.float64)
    yc = torch.tensor([[1.0, 2.0, 3.0, 100.0]], dtype=torch.float64)
    xq = torch.tensor([[[0.9], [9.0]]], dtype=torch.float64)
    torch.testing.assert_close(A.knn_predict(xc, yc, xq, 3),
                               torch.tensor([[2.0, (2.0 + 3.0 + 100.0) / 3]], dtype=torch.float64))
    torch.testing.assert_close(A.knn_predict(xc[:, :1], yc[:, :1], xq, 3),
                               torch.tensor([[1.0, 1.0]], dtype=torch.float64))


# ------------------------------------------------------------------------- task and models


def test_task_batches_are_pure_and_targets_mark_the_scored_positions():
    task = build_task(_regression_cfg())
    x1, y1 = task.batch(5, 4)
    x2, y2 = task.batch(5, 4)
    assert torch.equal(x1, x2) and torch.equal(torch.nan_to_num(y1), torch.nan_to_num(y2))
    assert x1.shape == (4, 12, 4) and y1.shape == (4, 12)
    assert torch.isnan(y1[:, 1::2]).all() and not torch.isnan(y1[:, 0::2]).any()
    torch.testing.assert_close(y1[:, 2], x1[:, 3, -1])  # y of point 1 sits in the next y token
    assert task.scored_count(y1) == 4 * 6
    out = torch.zeros(4, 12, 1, requires_grad=True)
    loss = task.loss_sum(out, y1)
    loss.backward()
    assert torch.isfinite(out.grad).all()
    torch.testing.assert_close(loss, (y1[:, 0::2] ** 2).sum())


def test_query_inputs_give_the_same_predictions_as_the_full_sequence():
    cfg = _regression_cfg()
    task = build_task(cfg)
    torch.manual_seed(0)
    model = GPT(resolve_config(cfg, task).model).eval()
    pr = task.problems(8)
    x, _ = task.encode(pr)
    full = model(x)[..., 0]  # [8, 12]
    pred = A.ModelPredictor(model, task)
    xs, ys = torch.from_numpy(pr.xs), torch.from_numpy(pr.ys)
    for k in range(task.n_points):
        got = pred(xs[:, :k], ys[:, :k], xs[:, k:k + 1])[:, 0]
        torch.testing.assert_close(got.float(), full[:, 2 * k], rtol=1e-5, atol=1e-5)


def test_lsa_with_the_gd_construction_is_one_gd_step():
    d, eta = 4, 0.8
    task = ICLRegressionTask(ICLRegressionData(d=d, n_points=7, layout="paired"), 0)
    m = LinearSelfAttention(LSAConfig(d_in=d + 1))
    with torch.no_grad():
        for p in m.parameters():
            p.zero_()
        m.w_q[0, :d, :d] = torch.eye(d)
        m.w_k[0, :d, :d] = torch.eye(d)
        m.w_v[0, d, d] = eta
        m.p[0, d, d] = 1.0
    pr = task.problems(16)
    xs, ys = torch.from_numpy(pr.xs), torch.from_numpy(pr.ys)
    got = A.ModelPredictor(m, task)(xs[:, :6], ys[:, :6], xs[:, 6:])[:, 0]
    want = (xs[:, 6:] @ A.gd_weights(xs[:, :6], ys[:, :6], eta)[..., None])[:, 0, 0]
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)



# ------------------------------------------------------------------------- comparison


def test_verdict_on_a_model_that_is_least_squares_picks_least_squares():
    task = ICLRegressionTask(ICLRegressionData(d=4, n_points=8), 3)
    ls = A._linear(A.least_squares_weights)
    res = A.compare_algorithms(ls, task, n_problems=200, model_name="LS")
    assert res.ks == list(range(8))
    assert [v["closest"] for v in res.verdicts] == ["least_squares"] * 7
    for v in res.verdicts:
        assert v["distance"] < 1e-12 and v["margin"] > 0
        assert v["closest_by_weights"] == "least_squares"
        assert v["closest_by_sensitivity"] == "least_squares"
    assert res.model_error == res.algorithms["least_squares"]["error"]
    assert res.error_at(6) < 1e-12 and res.error_at(2, "averaging") > 0.5
    assert math.isnan(res.algorithms["knn"]["sens_cos"][3])  # locally constant: undefined
    d = json.loads(json.dumps(res.to_dict()))  # strict JSON (NaN became null)
    assert d["verdicts"][0]["closest"] == "least_squares" and d["algorithms"]["knn"]["sens_cos"][3] is None
    html = res._repr_html_()
    assert "<svg" in html and "least squares (min-norm)" in html


def test_bad_k_is_a_clear_error():
    task = ICLRegressionTask(ICLRegressionData(d=2, n_points=4, layout="paired"), 0)
    with pytest.raises(DataError, match="k = 0 is outside"):
        A.compare_algorithms(A._linear(A.least_squares_weights), task, ks=[0, 1])


def test_configs_that_cannot_work_are_one_line_errors():
    task_cfg = _regression_cfg()
    with pytest.raises(ConfigError, match="layout = \"paired\""):
        cfg = task_cfg.model_copy(update={"model": LSAConfig()})
        resolve_config(cfg, build_task(cfg))
    with pytest.raises(ConfigError, match="reads tokens"):
        cfg = config_from_dict({**tiny_dict(), "model": {"kind": "lstm"},
                                "data": {"task": "icl_regression"}})
        resolve_config(cfg, build_task(cfg))
    with pytest.raises(ConfigError, match="remove d_in and d_out"):
        cfg = config_from_dict(tiny_dict(model={"d_in": 4}))
        resolve_config(cfg, build_task(cfg))
    with pytest.raises(ConfigError, match="model.d_in \\(7\\)"):
        cfg = config_from_dict({**tiny_dict(), "model": {"kind": "gpt", "d_in": 7, "n_ctx": 24},
                                "data": {"task": "icl_regression", "d": 3, "n_points": 6}})
        resolve_config(cfg, build_task(cfg))
    with pytest.raises(ConfigError, match="lsa"):
        cfg = config_from_dict({**tiny_dict(), "model": {"kind": "lsa"}})
        resolve_config(cfg, build_task(cfg))


def test_load_refuses_token_runs_and_runs_without_checkpoints(tmp_path):
    tok = tmp_path / "tok"
    tok.mkdir()
    (tok / "config.toml").write_text(config_from_dict(tiny_dict()).to_toml())
    with pytest.raises(DataError, match="token-level run"):
        A.load_regression_model(tok)
    reg = tmp_path / "reg"
    reg.mkdir()
    (reg / "config.toml").write_text(_regression_cfg().to_toml())
    with pytest.raises(RunDirError, match="no verified checkpoint"):
        A.load_regression_model(reg)
    with pytest.raises(RunDirError, match="not a lenslab run"):
        A.load_regression_model(tmp_path / "nothing")


def test_cli_algorithms_writes_json_and_html_and_refuses_token_runs(tmp_path):
    import lenslab

    run = tmp_path / "reg"
    res = lenslab.train(_regression_cfg(), run, progress=False)
    assert res.status == "completed" and np.isfinite(res.final_loss)
    out = tmp_path / "out"
    p = cli_proc("algorithms", str(run), "--out", str(out), "--problems", "40")
    assert p.returncode == 0, p.stderr
    d = json.loads((out / "algorithms.json").read_text())
    assert "closest" in p.stdout and d["verdicts"][-1]["closest"] in p.stdout
    assert d["step"] == 20 and d["ks"] == list(range(6)) and len(d["verdicts"]) == 5
    assert d["command"].startswith("lenslab algorithms")
    assert (out / "algorithms.html").read_text().startswith("<!DOCTYPE html>")

    tok = tmp_path / "tok"
    tok.mkdir()
    (tok / "config.toml").write_text(config_from_dict(tiny_dict()).to_toml())
    p = cli_proc("algorithms", str(tok))
    assert p.returncode == 2
    assert "token-level run" in p.stderr and "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1


# ------------------------------------------------------------------------- replications

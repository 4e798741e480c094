"""Sweeps: a 2x2 grid of tiny runs, its results table, skip and resume on rerun, bad configs.

The sweep's workers are real ``python -m lenslab`` subprocesses; one of them is SIGKILLed
mid-run by fault injection and resumed by the next ``run_sweep`` call, and must end bit for
bit where an uninterrupted run ends.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
import warnings
from pathlib import Path

import pytest
import tomli_w
from conftest import final_weights, metrics, tiny_dict

from lenslab.errors import ConfigError, LensError, RunDirError
from lenslab.scaling.sweep import (
    load_sweep,
    make_spec,
    plan,
    run_row,
    run_sweep,
    write_results,
)
from lenslab.scaling.sweep.executor import visible_gpus, worker_gpu_env
from lenslab.scaling.sweep.results import HEAD_COLUMNS, TAIL_COLUMNS

KILLED = "L2-d32-h2-s30-seed3"  # the largest run: scheduled first, killed at step 15


def sweep_dict(**over) -> dict:
    base = tiny_dict(train={"max_steps": 30, "eval_every": 10, "checkpoint_every": 10})
    d = {"name": "t", "workers": 2, "threads": 1, "max_retries": 0, "predictions": 0, "base": base,
         "grid": {"d_model": [16, 32], "steps": [20, 30]}}
    d.update(over)  # replaces whole keys: a grid given here is the whole grid
    return d


def write_sweep(path: Path, **over) -> Path:
    path.write_text(tomli_w.dumps(sweep_dict(**over)))
    return path


@pytest.fixture(scope="module")
def first(tmp_path_factory):
    """The grid trained once, with one run SIGKILLed at step 15 and not retried."""
    d = tmp_path_factory.mktemp("sweep")
    sweep = write_sweep(d / "sweep.toml")
    res = run_sweep(sweep, d / "out", inject=f"{KILLED}=kill@15", progress=False)
    return sweep, d / "out", res


@pytest.fixture(scope="module")
def second(first):
    """The same sweep again: the killed run is resumed, the finished ones skipped."""
    sweep, out, _ = first
    return sweep, out, run_sweep(sweep, out, progress=False)


def _rows(out: Path) -> dict[str, dict]:
    with open(out / "results.csv", newline="") as f:
        return {r["name"]: r for r in csv.DictReader(f)}


def test_grid_runs_and_table(first):
    from lenslab.config import config_from_dict
    from lenslab.data import build_task, resolve_config
    from lenslab.models import GPT

    sweep, out, res = first
    assert res.exit_code == 1 and res.outcome[KILLED] == "killed" and res.unfinished == [KILLED]
    rows = _rows(out)
    assert sorted(rows) == ["L2-d16-h2-s20-seed3", "L2-d16-h2-s30-seed3", "L2-d32-h2-s20-seed3", KILLED]
    with open(out / "results.csv", newline="") as f:
        header = next(csv.reader(f))
    assert header[:len(HEAD_COLUMNS)] == list(HEAD_COLUMNS) and header[-len(TAIL_COLUMNS):] == list(TAIL_COLUMNS)
    assert {"first_period_loss", "repeat_loss"} <= set(header)  # the induction task's own metrics
    for name, r in rows.items():
        d_model, steps = int(r["d_model"]), int(r["steps"])
        cfg = config_from_dict(tiny_dict(model={"d_model": d_model}))
        n = GPT(resolve_config(cfg, build_task(cfg)).model).num_params(non_embedding=True)
        assert int(r["N"]) == n
        assert int(r["D"]) == steps * 8 * 24  # steps x batch x seq_len
        assert int(r["C"]) == 6 * n * int(r["D"])
        assert float(r["epochs"]) == 0.0 and r["unique_tokens"] == ""  # induction: fresh data
        assert float(r["lr"]) == 3e-3 and int(r["warmup"]) == 5 and int(r["guard_events"]) == 0
        assert (Path(r["run"]) / "config.toml").is_file()
        if name == KILLED:
            assert r["status"] == "killed (resumable)" and r["loss"] == "" and r["val_loss"] == ""
        else:
            assert r["status"] == "completed"
            assert float(r["loss"]) == float(r["train_loss"]) and 1.0 < float(r["loss"]) < 4.0
            assert math.isfinite(float(r["train_loss_logged"]))
            cached = json.loads((Path(r["run"]) / "analysis" / "train_loss.json").read_text())
            assert cached["train_loss"] == pytest.approx(float(r["loss"]), rel=1e-12)
            assert math.isfinite(float(r["val_loss"]))
    j = json.loads((out / "results.json").read_text())
    assert j["columns"] == header and j["rows"][-1]["loss"] is None and "epochs" in j["definitions"]


def test_rerun_resumes_killed_run_exactly_and_skips_finished(second, tmp_path):
    import lenslab
    from lenslab.config import load_config

    sweep, out, res = second
    assert res.exit_code == 0
    assert res.outcome[KILLED] == "resumed"
    assert all(v == "skipped" for k, v in res.outcome.items() if k != KILLED)
    rows = _rows(out)
    assert all(r["status"] == "completed" for r in rows.values())
    assert int(rows[KILLED]["resumes"]) == 1
    # the resumed run ends exactly where an uninterrupted run of its config ends
    ref = tmp_path / "ref"
    lenslab.train(load_config(out / "configs" / f"{KILLED}.toml"), ref, progress=False)
    run = out / "runs" / KILLED
    drop = ("elapsed_s", "tok_per_s")
    assert metrics(run, drop) == metrics(ref, drop)
    assert final_weights(run) == final_weights(ref)


def test_third_run_skips_everything_and_threads_do_not_count(second):
    sweep, out, _ = second
    t0 = time.perf_counter()
    res = run_sweep(sweep, out, progress=False, threads=2)  # threads change speed, not the experiment
    assert res.exit_code == 0 and set(res.outcome.values()) == {"skipped"}
    assert time.perf_counter() - t0 < 10  # no worker was started


def test_results_feed_diagnose_and_fit(second):
    from lenslab.scaling.diagnose import diagnose
    from lenslab.table import read_csv

    _, out, _ = second
    t = read_csv(out)  # a sweep folder is read through its results.csv
    assert t.has("N", "D", "C", "loss", "train_loss", "val_loss", "epochs", "lr", "warmup", "guard_events")
    dg = diagnose(out, n_boot=0)
    status = {c.name: c.status for c in dg.checks}
    assert status["repeated_data"] == "not supported"  # epochs = 0
    assert status["lr_not_retuned"] == "supported" and status["warmup_not_retuned"] == "supported"
    assert status["guard_events"] == "not supported"
    assert status["train_val_gap"] in ("supported", "not supported")  # computed, not "cannot tell"


def test_changed_grid_point_is_an_error_that_names_it(second, tmp_path):
    sweep, out, _ = second
    changed = write_sweep(tmp_path / "changed.toml", base=tiny_dict(
        optim={"lr": 1e-3}, train={"max_steps": 30, "eval_every": 10, "checkpoint_every": 10}))
    with pytest.raises(RunDirError, match=r"grid point L2-d16-h2-s20-seed3 changed .*optim\.lr: 0\.003 -> 0\.001"):
        run_sweep(changed, out, progress=False)


def test_cli_sweep_and_one_line_errors(second, tmp_path, capsys):
    from lenslab.cli import main

    sweep, out, _ = second
    assert main(["sweep", str(sweep), "--out", str(out), "--quiet"]) == 0
    assert "L2-d16-h2-s20-seed3" in capsys.readouterr().out
    bad = write_sweep(tmp_path / "bad.toml", grid={"d_model": [33]})
    assert main(["sweep", str(bad), "--out", str(tmp_path / "o"), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "grid point L2-d33-h2-s30-seed3" in err and "divisible" in err
    assert not (tmp_path / "o").exists()  # nothing was written


def test_a_second_sweep_on_the_same_folder_is_refused(second):
    """A live holder (another process) is named; one on another host is reported with its
    host; a dead holder's lock is free."""
    import json
    import subprocess
    import sys

    sweep, out, _ = second
    hold = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from lenslab.run import Lock\n"
        f"with Lock(Path({str(out)!r}), 'sweep', Path({str(out / 'sweep.lock')!r})):\n"
        "    print('held', flush=True); time.sleep(60)")], stdout=subprocess.PIPE, text=True)
    try:
        assert hold.stdout.readline().strip() == "held"
        with pytest.raises(RunDirError, match=f"in use by process {hold.pid} \\(sweep\\)"):
            run_sweep(sweep, out, progress=False)
    finally:
        hold.kill()
        hold.wait()
    (out / "sweep.lock").write_text(json.dumps({"host": "elsewhere", "pid": 7, "what": "sweep"}))
    with pytest.raises(RunDirError, match="on host elsewhere"):
        run_sweep(sweep, out, progress=False)
    (out / "sweep.lock").write_text("")  # released: free again
    assert run_sweep(sweep, out, progress=False).exit_code == 0


BAD = [
    ({"base": None}, "base: missing"),
    ({"grid": {"widths": [1]}}, r"grid\.widths: unknown key"),
    ({"grid": {"n_head": [2], "d_head": [8]}}, "n_head or d_head, not both"),
    ({"grid": {"steps": [10], "tokens": [100]}}, "steps or tokens, not both"),
    ({"grid": {"d_model": []}}, "d_model is an empty list"),
    ({"grid": {"d_model": [16, 16]}}, "d_model repeats 16"),
    ({"grid": {"steps": [0]}}, r"grid\.steps\.0: Input should be greater than 0"),
    ({"workers": 0}, "workers: Input should be greater than 0"),
    ({"base": "missing.toml"}, "base: run config not found"),
    ({"base": {"data": {"vocab_size": 16}}}, r"\[base\]: data\.task: missing"),
    ({"grid": {"d_model": [16], "d_head": [3]}}, "d_head 3 does not divide d_model 16"),
    ({"grid": {"set": {"dropout": [0.1]}}}, "'dropout' is not SECTION.KEY"),
    ({"grid": {"set": {"model.d_model": [16]}}}, "has its own axis: use grid.d_model"),
    ({"grid": {"set": {"optim.weight_decay": []}}}, "needs a non-empty list"),
    ({"grid": {"set": {"model.dropout": [0.1, 0.1]}}}, "model.dropout repeats 0.1"),
    ({"grid": {"set": {"model.dropouts": [0.1]}}}, r"model\.dropouts: unknown key"),
    ({"grid": {"set": {"model.dropout": [2.0]}}}, r"model\.dropout: Input should be less than 1"),
]


@pytest.mark.parametrize("over,msg", BAD)
def test_bad_sweep_configs(tmp_path, over, msg):
    d = sweep_dict(**{k: v for k, v in over.items() if v is not None})
    for k, v in over.items():
        if v is None:
            d.pop(k)
    p = tmp_path / "s.toml"
    p.write_text(tomli_w.dumps(d))
    with pytest.raises(LensError, match=msg) as e:
        run_sweep(p, tmp_path / "out", progress=False)
    assert "\n" not in str(e.value)
    assert not (tmp_path / "out").exists()


def test_bad_sweep_files(tmp_path):
    with pytest.raises(ConfigError, match="sweep file not found"):
        load_sweep(tmp_path / "nope.toml")
    p = tmp_path / "s.toml"
    p.write_text("workers = [")
    with pytest.raises(ConfigError, match="malformed TOML"):
        load_sweep(p)
    lstm = sweep_dict(base=tiny_dict(model={"kind": "lstm", "n_layer": 1, "d_model": 16}), grid={"n_head": [2]})
    for k in ("n_head", "attn_only", "tie_embeddings"):
        lstm["base"]["model"].pop(k, None)
    with pytest.raises(ConfigError, match="a lstm model has no n_head to vary"):
        plan(make_spec(lstm))
    with pytest.raises(ConfigError, match="--inject names run 'nope'"):
        run_sweep(sweep_dict(), tmp_path / "o", inject="nope=kill@3", progress=False)


def test_plan_tokens_heads_and_addition_epochs(tmp_path):
    d = sweep_dict(grid={"d_model": [16, 32], "d_head": [8], "tokens": [1000]})
    pts = plan(make_spec(d))
    assert [p.name for p in pts] == ["L2-d16-h2-t1000-seed3", "L2-d32-h4-t1000-seed3"]
    assert all(p.steps == math.ceil(1000 / (8 * 24)) and p.D == p.steps * 8 * 24 for p in pts)
    add = sweep_dict(base={**tiny_dict(), "data": {"task": "addition", "digits": 2}},
                     grid={"shapes": [{"n_layer": 1, "d_model": 16, "n_head": 2}], "steps": [50]})
    (p,) = plan(make_spec(add))
    row = run_row(p, tmp_path / "none")
    assert row["status"] == "pending" and math.isnan(row["loss"])
    assert row["unique_tokens"] == 10 ** 4 * 8  # every 2-digit problem, 8 input tokens each
    assert row["epochs"] == pytest.approx(50 * 8 * 8 / (10 ** 4 * 8))


def test_grid_set_varies_any_config_key(tmp_path):
    d = sweep_dict(grid={"steps": [20], "set": {"optim.weight_decay": [0.0, 0.1],
                                                 "model.attn_only": [True]}})
    pts = plan(make_spec(d))
    assert [p.name for p in pts] == ["L2-d32-h2-s20-weight_decay0-attn_onlytrue-seed3",
                                     "L2-d32-h2-s20-weight_decay0.1-attn_onlytrue-seed3"]
    assert [p.config.optim.weight_decay for p in pts] == [0.0, 0.1]
    assert all(p.config.model.attn_only for p in pts)
    row = run_row(pts[1], tmp_path / "none")
    assert row["optim.weight_decay"] == 0.1 and row["model.attn_only"] is True
    from lenslab.scaling.sweep import table_columns

    cols = table_columns([row])
    assert cols.index("seed") < cols.index("optim.weight_decay") < cols.index("steps")


def test_addition_predictions_feed_emergence(tmp_path):
    """Two tiny addition models (trained in-process) answer the same problems; the CSV is the
    input lenslab emergence reads, and its targets are the true sums."""
    import lenslab
    from lenslab.emergence import analyze_csv
    from lenslab.scaling.sweep import write_predictions

    base = {**tiny_dict(), "data": {"task": "addition", "digits": 2}}
    base["model"]["n_ctx"] = 8
    d = sweep_dict(base=base, grid={"d_model": [16, 32], "steps": [20]})
    pts = plan(make_spec(d))
    out = tmp_path / "out"
    for p in pts:
        lenslab.train(p.config, out / "runs" / p.name, progress=False)
    write_results([run_row(p, out / "runs" / p.name) for p in pts], out, {})
    path = write_predictions(out, n_examples=40)
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 80 and {r["scale"] for r in rows} == {str(p.N) for p in pts}
    for r in rows:
        a, b = r["example"].split("+")
        assert r["target"] == str(int(a) + int(b)).zfill(3) and len(r["prediction"]) == 3
        assert float(r["logprob"]) <= 0 and math.isfinite(float(r["loss"]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = analyze_csv(path, n_boot=0)
    assert set(res.curves) >= {"exact_match", "token_accuracy", "log_likelihood"}


def test_killed_worker_is_resumed_within_the_same_sweep(tmp_path):
    d = sweep_dict(max_retries=1, workers=1, grid={"d_model": [16], "steps": [30]})
    res = run_sweep(d, tmp_path / "out", inject="kill@15", progress=False)
    assert res.exit_code == 0 and res.outcome == {"L2-d16-h2-s30-seed3": "resumed"}
    (row,) = res.rows
    assert row["status"] == "completed" and row["resumes"] == 1 and math.isfinite(row["loss"])


def test_workers_are_spread_over_the_visible_gpus():
    """Each worker slot is pinned to one GPU, round-robin; explicit devices and one-GPU
    machines are left alone (checked on the env, since this machine has no GPU)."""
    gpus = visible_gpus({"CUDA_VISIBLE_DEVICES": "2, 5,7"})
    assert gpus == ["2", "5", "7"]
    assert [worker_gpu_env("auto", slot, gpus) for slot in range(4)] == [
        {"CUDA_VISIBLE_DEVICES": g} for g in ("2", "5", "7", "2")]
    assert worker_gpu_env("cuda", 1, gpus) == {"CUDA_VISIBLE_DEVICES": "5"}
    assert worker_gpu_env("cuda:1", 0, gpus) == {}
    assert worker_gpu_env("cpu", 0, gpus) == {}
    assert worker_gpu_env("auto", 1, ["0"]) == {}
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "-1"}) == []


@pytest.mark.skipif(not hasattr(os, "waitid"),
                    reason="os.waitid is Linux-only; elsewhere the task waits on the folder")
def test_a_slurm_task_signalled_while_its_run_starts_requeues_at_once(tmp_path, monkeypatch):
    """Slurm's warning can reach a task while its run's Python still starts (no handler yet):
    the run dies of SIGUSR2 and cannot mark its folder, here left "running" by a killed
    attempt. The task must see its child gone and requeue, not wait on the folder."""
    import os
    import signal
    import threading

    import submitit

    import lenslab
    from lenslab.run import Run
    from lenslab.slurm_task import SweepTask

    run = tmp_path / "run"
    lenslab.train(lenslab.config.config_from_dict(tiny_dict(train={"max_steps": 10})), run,
                  progress=False)
    Run(run).write_meta(status="running")  # what a kill -9 leaves
    monkeypatch.setattr(SweepTask, "stop_wait_s", 30.0)
    task, requeued = SweepTask([], str(run)), []

    def warn_soon():  # Slurm's warning, 0.2 s into the run's start-up
        while task._proc is None:
            time.sleep(0.01)
        time.sleep(0.2)
        os.kill(os.getpid(), signal.SIGUSR2)

    old = signal.signal(signal.SIGUSR2, lambda *_: requeued.append(task.checkpoint()))
    try:
        threading.Thread(target=warn_soon, daemon=True).start()
        t0 = time.time()
        rc = task()
    finally:
        signal.signal(signal.SIGUSR2, old)
    assert rc == -signal.SIGUSR2 and time.time() - t0 < 10
    assert isinstance(requeued[0], submitit.helpers.DelayedSubmission)
    assert requeued[0].function.run_dir == str(run)


def test_a_slurm_array_task_loads_no_torch_before_its_run(tmp_path):
    """The task's own Python (submitit's) unpickles the task and starts the run's process:
    torch (3 s, a few hundred MB per task) is left to the run."""
    import pickle
    import subprocess
    import sys

    from lenslab.slurm_task import SweepTask

    (tmp_path / "task.pkl").write_bytes(pickle.dumps(SweepTask(["train"], str(tmp_path / "r"))))
    probe = ("import pickle, sys; t = pickle.load(open(sys.argv[1], 'rb')); "
             "print(type(t).__name__, t.command()[1:3], 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe, str(tmp_path / "task.pkl")],
                         capture_output=True, text=True, check=True).stdout.split()
    assert out == ["SweepTask", "['-m',", "'lenslab']", "False"]


def test_workers_are_new_processes_once_lenslab_itself_changed(monkeypatch):
    """The fork server holds the code it imported: after an edit of lenslab (an editable
    install, two sweeps in one notebook) workers start as new processes, which read the edit."""
    import os

    from lenslab.scaling.sweep import executor

    monkeypatch.delenv("LENSLAB_FORK", raising=False)
    monkeypatch.setattr(executor, "_SERVED_SOURCE", executor._source_stamp())
    assert executor.forking()
    src = Path(executor.__file__)
    st = src.stat()
    try:
        # a second newer than anything the server read
        os.utime(src, ns=(st.st_atime_ns, executor._SERVED_SOURCE + 10**9))
        assert not executor.forking()
    finally:
        os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert executor.forking()
    monkeypatch.setenv("LENSLAB_FORK", "0")
    assert not executor.forking()


def test_a_sweep_started_by_a_script_without_a_main_guard_runs_once(tmp_path):
    """Workers are forked from a server, and multiprocessing would have each one import the
    script that started the sweep again: with no ``__main__`` guard, that is the sweep again."""
    import subprocess
    import sys

    from conftest import ROOT

    base = tiny_dict(train={"max_steps": 10, "eval_every": 0, "checkpoint_every": 0})
    script = tmp_path / "my_sweep.py"
    script.write_text(
        "import lenslab.scaling\n"
        f"open({str(tmp_path / 'started')!r}, 'a').write('x')\n"
        f"res = lenslab.scaling.run_sweep({{'name': 's', 'workers': 1, 'threads': 1, "
        f"'predictions': 0, 'base': {base!r}, 'grid': {{'d_model': [16]}}}}, "
        f"{str(tmp_path / 'out')!r}, progress=False)\n"
        "raise SystemExit(res.exit_code)\n")
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=ROOT,
                       env=dict(os.environ, LENSLAB_FORK="1"), timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path / "started").read_text() == "x"  # the script ran once, not per worker
    assert "completed" in (tmp_path / "out" / "results.csv").read_text()
    log, = (tmp_path / "out" / "logs").iterdir()
    assert "(forked from the sweep's server)" in log.read_text()  # not started anew

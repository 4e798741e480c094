"""The Slurm executor against a real one-node Slurm (slurm_cluster.py): the same results as
the local executor, a requeued task that resumes bitwise, a second sweep that submits nothing
twice, and bad settings refused before anything is submitted."""

from __future__ import annotations

import csv
import json
import time

import pytest
import tomli_w
from conftest import cli, final_weights, tiny_dict
from slurm_cluster import Cluster, missing

import lenslab
from lenslab.scaling import run_sweep

pytestmark = pytest.mark.skipif(bool(missing()), reason=missing() or "ok")

LOSSES = ("name", "status", "loss", "train_loss", "val_loss", "train_loss_logged")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with Cluster(tmp_path_factory.mktemp("slurm")) as c:
        yield c


@pytest.fixture
def slurm_env(cluster, monkeypatch):
    monkeypatch.setenv("SLURM_CONF", str(cluster.conf))
    return cluster


def sweep_dict(**over) -> dict:
    base = tiny_dict(train={"max_steps": 30, "eval_every": 10, "checkpoint_every": 10})
    d = {"name": "t", "workers": 2, "threads": 1, "max_retries": 0, "predictions": 0, "base": base,
         "grid": {"d_model": [16, 32], "steps": [20, 30]},
         "executor": {"kind": "slurm", "time_min": 5, "poll_s": 0.5}}
    d.update(over)
    return d


def _losses(out) -> list[tuple]:
    with open(out / "results.csv", newline="") as f:
        return [tuple(r[c] for c in LOSSES) for r in csv.DictReader(f)]


def test_a_sweep_on_slurm_gives_the_local_results(slurm_env, tmp_path):
    res = run_sweep(sweep_dict(), tmp_path / "slurm", progress=False)
    assert res.exit_code == 0, res.messages
    local = run_sweep(sweep_dict(), tmp_path / "local", progress=False, executor="local")
    assert local.exit_code == 0
    assert _losses(tmp_path / "slurm") == _losses(tmp_path / "local")  # byte for byte
    jobs = json.loads((tmp_path / "slurm" / "slurm" / "jobs.json").read_text())
    assert len(set(jobs.values())) == 4 and len({j.split("_")[0] for j in jobs.values()}) == 1
    for name, jid in jobs.items():  # one array; each run knows its task
        assert lenslab.load_run(tmp_path / "slurm" / "runs" / name).meta()["slurm_job"] == jid
    code, out, err = cli("sweep", str(tmp_path / "slurm"), "--status")  # the folder alone
    assert code == 0 and out.count("completed") == 4 and jobs["L2-d16-h2-s20-seed3"] in out
    code, out, err = cli("sweep", str(tmp_path / "slurm"))
    assert code == 2 and "--out is needed" in err


def test_a_requeued_task_resumes_and_a_second_sweep_submits_nothing(slurm_env, tmp_path):
    steps = 400
    d = sweep_dict(grid={"d_model": [32]})
    d["base"]["train"].update(max_steps=steps, checkpoint_every=50, eval_every=100)
    ref = lenslab.train(lenslab.config.config_from_dict(
        {**d["base"], "train": {**d["base"]["train"]}}), tmp_path / "ref", progress=False)
    assert ref.status == "completed"

    out = tmp_path / "out"
    first = run_sweep(d, out, progress=False, wait=False)
    assert first.exit_code == 0 and len(first.submitted) == 1
    (name, jid), = json.loads((out / "slurm" / "jobs.json").read_text()).items()
    run = out / "runs" / name
    deadline = time.time() + 120
    while time.time() < deadline:  # mid-run: past a checkpoint, far from the end
        m = run / "metrics.jsonl"
        if m.is_file() and sum(1 for _ in m.open()) >= 80:
            break
        time.sleep(0.2)
    else:
        pytest.fail("the array task did not start")
    assert slurm_env.run("scontrol", "requeue", jid).returncode == 0
    # Slurm holds a requeued job back for a while (its BeginTime); let it go at once
    deadline = time.time() + 60
    while time.time() < deadline:
        state = slurm_env.run("squeue", "-h", "-j", jid, "-o", "%T|%r").stdout.strip()
        if state.startswith("RUNNING") or not state:
            break
        if "BeginTime" in state:
            slurm_env.run("scontrol", "update", f"JobId={jid}", "StartTime=now")
        time.sleep(0.2)

    second = run_sweep(d, out, progress=False)  # the task is still queued: nothing submitted
    assert second.exit_code == 0, second.messages
    assert json.loads((out / "slurm" / "jobs.json").read_text()) == {name: jid}
    types = [json.loads(line)["type"] for line in (run / "events.jsonl").open()]
    assert "preempt" in types and "resume" in types  # SIGTERM from the requeue, then resumed
    assert final_weights(run) == final_weights(tmp_path / "ref")  # bitwise


@pytest.mark.parametrize("executor, needle", [
    ({"kind": "slurm", "partition": "gpu-large"}, "partition 'gpu-large' does not exist; this "
                                                  "cluster has debug"),
    ({"kind": "slurm", "time_min": 0}, "executor.time_min"),
])
def test_bad_executor_settings_are_one_line_errors_before_anything_is_submitted(
        slurm_env, tmp_path, executor, needle):
    sweep = tmp_path / "sweep.toml"
    sweep.write_text(tomli_w.dumps(sweep_dict(executor=executor)))
    code, out, err = cli("sweep", str(sweep), "--out", str(tmp_path / "out"))
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out").exists()


def test_no_sbatch_on_the_path_is_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no Slurm commands here
    sweep = tmp_path / "sweep.toml"
    sweep.write_text(tomli_w.dumps(sweep_dict()))
    code, out, err = cli("sweep", str(sweep), "--out", str(tmp_path / "out"))
    assert code == 2 and "sbatch is not on the PATH" in err, err
    assert not (tmp_path / "out").exists()


def test_a_multi_gpu_grid_point_starts_through_torchrun(slurm_env, monkeypatch, tmp_path):
    """A grid point of several GPUs (or nodes) is one torchrun per node within its allocation,
    with the rendezvous on the allocation's first node (torchrun's own parser reads the line)."""
    from torch.distributed.run import get_args_parser

    from lenslab.scaling.sweep.slurm import SweepTask

    train = ["train", "c.toml", "--out", str(tmp_path / "r"), "--quiet"]

    def torchrun_args(task: SweepTask):
        cmd = task.command()
        return get_args_parser().parse_args(cmd[cmd.index("torch.distributed.run") + 1:])

    one = torchrun_args(SweepTask(train, str(tmp_path / "r"), nodes=1, gpus_per_node=4))
    assert one.standalone and one.nnodes == "1" and one.nproc_per_node == "4"
    assert one.module and one.training_script == "lenslab" and one.training_script_args == train
    monkeypatch.setenv("SLURM_JOB_NODELIST", "gpu[07-08]")
    monkeypatch.setenv("SLURM_NODEID", "1")
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    two = torchrun_args(SweepTask(train, str(tmp_path / "r"), nodes=2, gpus_per_node=8))
    assert not two.standalone and two.nnodes == "2" and two.nproc_per_node == "8"
    assert two.node_rank == 1 and two.rdzv_backend == "c10d"
    assert two.rdzv_endpoint == "gpu07:29500" and two.rdzv_id == "4242"
    assert SweepTask(train, str(tmp_path / "r")).command()[1:3] == ["-m", "lenslab"]  # one GPU

"""The Slurm executor against a real one-node Slurm (slurm_cluster.py): the same results as
the local executor, a requeued task that resumes bitwise, a second sweep that submits nothing
twice, and bad settings refused before anything is submitted."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import signal
import time

import pytest
import tomli_w
from conftest import cli, final_weights, metrics, tiny_dict
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


@pytest.fixture(scope="module")
def local_losses(tmp_path_factory):
    """The loss columns of ``sweep_dict()`` run by the local executor, uninterrupted."""
    out = tmp_path_factory.mktemp("local")
    assert run_sweep(sweep_dict(), out, progress=False, executor="local").exit_code == 0
    return _losses(out)


def test_a_sweep_on_slurm_gives_the_local_results(slurm_env, local_losses, tmp_path):
    res = run_sweep(sweep_dict(), tmp_path / "slurm", progress=False)
    assert res.exit_code == 0, res.messages
    assert _losses(tmp_path / "slurm") == local_losses  # byte for byte
    jobs = json.loads((tmp_path / "slurm" / "slurm" / "jobs.json").read_text())
    assert len(set(jobs.values())) == 4 and len({j.split("_")[0] for j in jobs.values()}) == 1
    for name, jid in jobs.items():  # one array; each run knows its task
        assert lenslab.load_run(tmp_path / "slurm" / "runs" / name).meta()["slurm_job"] == jid
    code, out, err = cli("sweep", str(tmp_path / "slurm"), "--status")  # the folder alone
    assert code == 0 and out.count("completed") == 4 and jobs["L2-d16-h2-s20-seed3"] in out
    code, out, err = cli("sweep", str(tmp_path / "slurm"))
    assert code == 2 and "--out is needed" in err


def test_a_local_folder_continues_on_slurm_and_a_lost_task_is_submitted_again(
        slurm_env, local_losses, tmp_path):
    """Local, then Slurm, then local again on one folder: a run killed under the local executor
    is the only point submitted; its task, cancelled (lost), is submitted again by the next
    sweep; the local executor then finds nothing to do, and the table is the uninterrupted one."""
    d, out, name = sweep_dict(), tmp_path / "out", "L2-d32-h2-s30-seed3"
    res = run_sweep(d, out, progress=False, executor="local", inject={name: "kill@15"})
    assert res.outcome[name] == "killed"
    first = run_sweep(d, out, progress=False, wait=False)
    assert first.submitted == [name]  # the completed runs are left alone
    lost = json.loads((out / "slurm" / "jobs.json").read_text())[name]
    assert slurm_env.run("scancel", lost).returncode == 0
    deadline = time.time() + 30
    while slurm_env.run("squeue", "-h", "-j", lost).stdout.strip() and time.time() < deadline:
        time.sleep(0.2)
    second = run_sweep(d, out, progress=False)
    assert second.exit_code == 0 and second.outcome.pop(name) == "resumed", second.messages
    assert set(second.outcome.values()) == {"skipped"}
    assert json.loads((out / "slurm" / "jobs.json").read_text())[name] != lost
    back = run_sweep(d, out, progress=False, executor="local")
    assert back.exit_code == 0 and set(back.outcome.values()) == {"skipped"}
    assert _losses(out) == local_losses


@pytest.fixture(scope="module")
def one_point(tmp_path_factory):
    """A one-point sweep of 200 steps (checkpoints every 50) and the run it must end as."""
    d = sweep_dict(grid={"d_model": [32]})
    d["base"]["train"].update(max_steps=200, checkpoint_every=50, eval_every=100)
    ref = tmp_path_factory.mktemp("ref") / "run"
    res = lenslab.train(lenslab.config.config_from_dict(d["base"]), ref, progress=False)
    assert res.status == "completed"
    return d, ref


def _pause_mid_run(run) -> int:
    """Wait for the run to pass step 60 (a checkpoint behind it, most steps ahead), then stop
    it with SIGSTOP: the run outlasts what the test waits for without using the CPU the other
    tests share. Its pid."""
    deadline = time.time() + 120
    while time.time() < deadline:
        m = run / "metrics.jsonl"
        if m.is_file() and sum(1 for _ in m.open()) >= 60:
            break
        time.sleep(0.1)
    else:
        pytest.fail("the array task did not start")
    pid = lenslab.load_run(run).meta()["pid"]
    os.kill(pid, signal.SIGSTOP)
    deadline = time.time() + 10
    while _status(pid).get("State", "T").strip()[0] != "T" and time.time() < deadline:
        time.sleep(0.01)  # a signal is delivered when the process is next scheduled
    return pid


def _status(pid: int) -> dict[str, str]:
    try:
        return dict(line.split(":", 1) for line in open(f"/proc/{pid}/status"))
    except OSError:
        return {}  # gone


def _continue_once_signalled(pid: int, sig: int, timeout: float) -> None:
    """SIGCONT to the paused run once ``sig`` waits for it (Slurm itself sends SIGCONT with
    the signals it delivers to a job; this does not rely on that)."""
    deadline = time.time() + timeout
    try:
        while time.time() < deadline:
            fields = _status(pid)
            if not fields or not fields["State"].strip().startswith("T"):
                return  # gone, or continued by Slurm
            if (int(fields["SigPnd"], 16) | int(fields["ShdPnd"], 16)) >> (sig - 1) & 1:
                return
            time.sleep(0.2)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


def test_a_requeued_task_resumes_and_a_second_sweep_submits_nothing(slurm_env, one_point,
                                                                    tmp_path):
    d, ref = one_point
    out = tmp_path / "out"
    first = run_sweep(d, out, progress=False, wait=False)
    assert first.exit_code == 0 and len(first.submitted) == 1
    (name, jid), = json.loads((out / "slurm" / "jobs.json").read_text()).items()
    run = out / "runs" / name
    pid = _pause_mid_run(run)
    assert slurm_env.run("scontrol", "requeue", jid).returncode == 0
    _continue_once_signalled(pid, signal.SIGTERM, timeout=30)
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
    events = [json.loads(line) for line in (run / "events.jsonl").open()]
    assert [(e["type"], e.get("signal")) for e in events][:2] == [("preempt", "SIGTERM"),
                                                                  ("resume", None)]
    assert final_weights(run) == final_weights(ref)  # bitwise


def test_a_task_at_its_time_limit_is_requeued_and_resumes(slurm_env, one_point, tmp_path):
    """Slurm's own time limit, no scontrol: a 2-minute task asks for SIGUSR2 50 s before it
    (slurmctld checks limits every 30 s: here the warning comes 40 to 70 s after the start). The
    run, paused past its first checkpoint, is continued once the warning waits for it: it writes
    a checkpoint, the task requeues itself and the run ends bitwise equal to one never stopped."""
    d, ref = one_point
    d = {**d, "executor": {**d["executor"], "time_min": 2, "signal_delay_s": 50}}
    out = tmp_path / "out"
    assert run_sweep(d, out, progress=False, wait=False).exit_code == 0
    name, = json.loads((out / "slurm" / "jobs.json").read_text())
    run = out / "runs" / name
    pid = _pause_mid_run(run)
    _continue_once_signalled(pid, signal.SIGUSR2, timeout=120)  # <= 70 s from the start

    res = run_sweep(d, out, progress=False)  # waits for the requeued task to finish
    assert res.exit_code == 0, res.messages
    events = [json.loads(line) for line in (run / "events.jsonl").open()]
    stops = [e for e in events if e["type"] == "preempt"]
    assert stops and stops[0]["signal"] == "SIGUSR2" and stops[0]["step"] >= 60
    assert [e["type"] for e in events].count("resume") == len(stops)
    log = "".join(p.read_text() for p in (out / "slurm").glob("*/*_log.err"))
    assert "this job is timed-out" in log  # submitit's word: the limit, not a preemption
    assert lenslab.load_run(run).meta()["status"] == "completed"
    assert final_weights(run) == final_weights(ref)  # bitwise


@pytest.mark.parametrize("executor, needle", [
    ({"kind": "slurm", "partition": "gpu-large"}, "partition 'gpu-large' does not exist; this "
                                                  "cluster has debug"),
    ({"kind": "slurm", "time_min": 0}, "executor.time_min"),
    ({"kind": "slurm", "time_min": 1}, "signal_delay_s = 90 may leave a 1-minute task 0 s"),
])
def test_bad_executor_settings_are_one_line_errors_before_anything_is_submitted(
        slurm_env, tmp_path, executor, needle):
    sweep = tmp_path / "sweep.toml"
    sweep.write_text(tomli_w.dumps(sweep_dict(executor=executor)))
    code, out, err = cli("sweep", str(sweep), "--out", str(tmp_path / "out"))
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out").exists()


def test_a_local_file_run_on_slurm_has_its_settings_checked(slurm_env, tmp_path):
    sweep = tmp_path / "sweep.toml"
    sweep.write_text(tomli_w.dumps(sweep_dict(executor={"kind": "local", "time_min": 1})))
    code, out, err = cli("sweep", str(sweep), "--out", str(tmp_path / "out"), "--executor",
                         "slurm")
    assert code == 2 and "signal_delay_s = 90 may leave a 1-minute task 0 s" in err, err
    assert not (tmp_path / "out").exists()


def test_no_sbatch_on_the_path_is_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no Slurm commands here
    sweep = tmp_path / "sweep.toml"
    sweep.write_text(tomli_w.dumps(sweep_dict()))
    code, out, err = cli("sweep", str(sweep), "--out", str(tmp_path / "out"))
    assert code == 2 and "sbatch is not on the PATH" in err, err
    assert not (tmp_path / "out").exists()


def test_a_two_gpu_grid_point_is_a_ddp_run_within_its_allocation(slurm_env, tmp_path):
    """``gpus_per_node = 2``: sbatch asks for two GPUs (the test node has two by count) and
    the task starts torchrun with two ranks (on CPU here: gloo), which trains the curve of one
    process with the same global batch."""
    d = sweep_dict(grid={"d_model": [32]})
    d["executor"]["gpus_per_node"] = 2
    d["base"]["model"]["dropout"] = 0.0
    d["base"]["optim"].update(batch_size=8, grad_accum=2)  # one process: two micro-batches
    res = run_sweep(d, tmp_path / "out", progress=False)
    assert res.exit_code == 0, res.messages
    run = next((tmp_path / "out" / "runs").iterdir())
    assert lenslab.load_run(run).meta()["world_size"] == 2
    script = "".join(p.read_text() for p in (tmp_path / "out" / "slurm").glob("*/*.sh"))
    assert "#SBATCH --gpus-per-node=2" in script
    one = lenslab.train(lenslab.config.config_from_dict(d["base"]), tmp_path / "one",
                        progress=False)
    assert one.status == "completed"
    two, one = metrics(run), metrics(tmp_path / "one")
    assert [r["step"] for r in two] == [r["step"] for r in one]
    for a, b in zip(one, two):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4, abs=1e-5)


def test_a_multi_gpu_grid_point_starts_through_torchrun(slurm_env, monkeypatch, tmp_path):
    """A grid point of several GPUs (or nodes) is one torchrun per node within its allocation,
    with the rendezvous on the allocation's first node (torchrun's own parser reads the line)."""
    from torch.distributed.run import get_args_parser

    from lenslab.slurm_task import SweepTask

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

"""The edges of a run folder, tried as an adversary would, with real processes, signals, files
and file systems: a folder never dead-ends, it has one writer at a time, a checkpoint belongs to
its run, operating-system faults and bad input are one clear line."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, cli, events, final_weights, metrics, run_cli, write_config

OVER = dict(train={"max_steps": 40, "checkpoint_every": 10})


def inproc(*args):
    """The CLI in this process (no interpreter start): a CompletedProcess-like result."""
    code, out, err = cli(*args)
    return subprocess.CompletedProcess(args, code, out, err)


def _one_line(r, code=2):
    assert r.returncode == code, r.stderr
    lines = [x for x in r.stderr.strip().splitlines() if x.strip()]
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    return lines[0]


def _tree(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` with the hash of its bytes."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".lock"}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    d = tmp_path_factory.mktemp("reference")
    cfg = write_config(d / "c.toml", **OVER)
    r = inproc("train", str(cfg), "--out", str(d / "run"), "-q")
    assert r.returncode == 0, r.stderr
    return cfg, d / "run"


@pytest.fixture(scope="module")
def killed(tmp_path_factory, reference):
    """The reference run killed by SIGKILL at step 25 (checkpoints 0, 10 and 20)."""
    cfg, _ = reference
    run = tmp_path_factory.mktemp("killed") / "run"
    r = run_cli("train", str(cfg), "--out", str(run), "--inject", "kill@25", "-q")
    assert r.returncode == -signal.SIGKILL
    return run


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".lock"))
    return dst


# ------------------------------------------------------------------------- never a dead end


def test_a_kill_before_the_first_checkpoint_leaves_no_folder(tmp_path, reference):
    cfg, ref = reference
    run = tmp_path / "run"
    r = run_cli("train", str(cfg), "--out", str(run), "--inject", "kill@0:ckpt", "-q")
    assert r.returncode == -signal.SIGKILL
    assert not run.exists()  # the folder appears with its step-0 checkpoint or not at all
    assert [p.name for p in tmp_path.iterdir() if ".creating-" in p.name]  # the dead staging
    r = inproc("train", str(cfg), "--out", str(run), "-q")
    assert r.returncode == 0, r.stderr
    assert not [p for p in tmp_path.iterdir() if ".creating-" in p.name]  # cleaned
    assert final_weights(run) == final_weights(ref)


def test_sigterm_at_the_first_step_leaves_a_resumable_run(tmp_path, reference):
    cfg, ref = reference
    run = tmp_path / "run"
    r = run_cli("train", str(cfg), "--out", str(run), "--inject", "term@0", "-q")
    assert r.returncode == 75, r.stderr
    assert inproc("resume", str(run), "-q").returncode == 0
    assert metrics(run) == metrics(ref) and final_weights(run) == final_weights(ref)


def test_a_run_with_no_usable_checkpoint_starts_again(tmp_path, reference, killed):
    cfg, ref = reference
    run = _copy(killed, tmp_path / "run")
    for ck in (run / "checkpoints").iterdir():  # every checkpoint damaged
        (ck / "model.safetensors").write_bytes(b"damaged")
    r = inproc("resume", str(run), "-q")
    assert r.returncode == 0, r.stderr
    assert final_weights(run) == final_weights(ref)  # from step 0, the same run
    types = [e["type"] for e in events(run)]
    assert "restart" in types and "checkpoint_invalid" in types
    # and `train --out` on the same config takes a folder that never reached a checkpoint
    shutil.rmtree(run / "checkpoints")
    r = inproc("train", str(cfg), "--out", str(run), "-q")
    assert r.returncode == 0, r.stderr
    assert final_weights(run) == final_weights(ref)


@pytest.mark.parametrize("sets, needle", [
    (["train.device=cuda"], "no GPU is visible"),
    (["train.device=garbage"], "is not a device"),
    (["seed=99999999999999999999"], "seed"),
    (["model.d_model=1000000000", "model.n_head=1"], "GiB"),
    (["optim.batch_size=1000000000"], "GiB"),
    (["model.n_layer=1000000"], "GiB"),
])
def test_config_errors_are_found_before_the_folder_exists(tmp_path, sets, needle):
    cfg = write_config(tmp_path / "c.toml")
    t0 = time.perf_counter()
    r = inproc("train", str(cfg), "--out", str(tmp_path / "run"),
               *[a for s in sets for a in ("--set", s)])
    assert needle in _one_line(r)
    assert time.perf_counter() - t0 < 30  # refused from the config, nothing allocated
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.toml"]


# ------------------------------------------------------------------------- one writer


def test_one_writer_at_a_time(tmp_path):
    cfg = write_config(tmp_path / "c.toml", train={"max_steps": 100000, "checkpoint_every": 50,
                                                   "eval_every": 0})
    run = tmp_path / "run"
    p = subprocess.Popen([sys.executable, "-m", "lenslab", "train", str(cfg), "--out", str(run),
                          "-q"], cwd=ROOT, stderr=subprocess.PIPE, text=True,
                         env=dict(os.environ, PYTHONHASHSEED="0"))
    try:
        for _ in range(300):
            if (run / "metrics.jsonl").exists() and (run / "metrics.jsonl").stat().st_size > 0:
                break
            time.sleep(0.1)
        line = _one_line(inproc("resume", str(run), "-q"))
        assert f"in use by process {p.pid} (train)" in line
        assert "lenslab resume" in _one_line(inproc("train", str(cfg), "--out", str(run), "-q"))
        p.send_signal(signal.SIGKILL)  # the writer dies: its lock is free at once
        p.wait(timeout=30)
        newest = max(int(c.name[5:]) for c in (run / "checkpoints").iterdir()
                     if c.name.startswith("step-"))
        r = run_cli("resume", str(run), "--inject", f"term@{newest + 20}", "-q")
        assert r.returncode == 75, r.stderr
    finally:
        p.kill()
        p.wait()
    steps = [m["step"] for m in metrics(run)]
    assert steps == sorted(set(steps))  # no duplicated or out-of-order steps


def test_two_trains_into_one_folder_at_once(tmp_path):
    cfg = write_config(tmp_path / "c.toml", train={"max_steps": 10, "checkpoint_every": 0})
    cmd = [sys.executable, "-m", "lenslab", "train", str(cfg), "--out", str(tmp_path / "run"), "-q"]
    procs = [subprocess.Popen(cmd, cwd=ROOT, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    done = sorted((p.wait(timeout=120), p.stderr.read()) for p in procs)
    assert [code for code, _ in done] == [0, 2], done
    err = [x for x in done[1][1].splitlines() if x.strip()]
    assert len(err) == 1 and "Traceback" not in done[1][1], err


# ------------------------------------------------------------------------- a checkpoint's owner


def test_a_checkpoint_of_another_run_is_refused(tmp_path, reference, killed):
    cfg, ref = reference
    other = write_config(tmp_path / "other.toml", seed=4, model={"d_model": 16}, **OVER)
    assert inproc("train", str(other), "--out", str(tmp_path / "b"), "-q").returncode == 0
    run = _copy(killed, tmp_path / "run")
    shutil.copytree(tmp_path / "b" / "checkpoints" / "step-000030",
                    run / "checkpoints" / "step-000030")
    r = inproc("resume", str(run), "-q")
    assert r.returncode == 0, r.stderr
    assert "belongs to another run" in r.stderr
    assert metrics(run) == metrics(ref) and final_weights(run) == final_weights(ref)


class _Payload:  # a pickle that would create a file if it were ever unpickled unsafely
    def __init__(self, mark: Path):
        self.mark = mark

    def __reduce__(self):
        return (os.system, (f"touch {self.mark}",))


def _rewrite_manifest(ck: Path) -> None:
    man = json.loads((ck / "MANIFEST.json").read_text())
    for name, meta in man["files"].items():
        data = (ck / name).read_bytes()
        meta.update(sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))
    (ck / "MANIFEST.json").write_text(json.dumps(man))


@pytest.mark.parametrize("damage", ["[]", "null", "files-list", "not-a-state", "unsafe-pickle"])
def test_malformed_checkpoints_fall_back_without_running_code(tmp_path, reference, killed, damage):
    cfg, ref = reference
    run = _copy(killed, tmp_path / "run")
    ck = run / "checkpoints" / "step-000020"
    mark = tmp_path / "code-ran"
    if damage in ("[]", "null"):
        (ck / "MANIFEST.json").write_text(damage)
    elif damage == "files-list":
        (ck / "MANIFEST.json").write_text('{"step": 20, "files": ["model.safetensors"]}')
    elif damage == "not-a-state":
        import torch

        torch.save({"hello": 1}, ck / "trainer.pt")
        _rewrite_manifest(ck)
    else:
        (ck / "trainer.pt").write_bytes(pickle.dumps(_Payload(mark)))
        _rewrite_manifest(ck)
    r = inproc("resume", str(run), "-q")
    assert r.returncode == 0, r.stderr
    assert not mark.exists()  # nothing was executed
    assert "weights_only=False" not in r.stderr and "Traceback" not in r.stderr
    assert "skipping checkpoint step-000020" in r.stderr
    assert final_weights(run) == final_weights(ref)  # from step 10, the same run


def test_a_failed_resume_changes_nothing(tmp_path, killed):
    run = _copy(killed, tmp_path / "run")
    text = (run / "config.toml").read_text()
    (run / "config.toml").write_text(text.replace('device = "cpu"', 'device = "cuda"'))
    before = _tree(run)
    assert "no GPU is visible" in _one_line(inproc("resume", str(run)))
    assert _tree(run) == before


def test_damaged_logs_are_named_and_other_runs_still_list(tmp_path, reference):
    cfg, _ = reference
    good, bad = tmp_path / "runs" / "good", tmp_path / "runs" / "bad"
    shutil.copytree(reference[1], good)
    shutil.copytree(reference[1], bad)
    with open(bad / "metrics.jsonl", "ab") as f:
        f.write(b'{"step": 99, "loss": 1.0}\n\xff\xfe garbage\n{"step": 100, "loss": 1.0}\n')
    (good.parent / "third").mkdir()
    shutil.copytree(reference[1], good.parent / "third" / "r")
    (good.parent / "third" / "r" / "run.json").write_text("[1, 2]")
    code, out, err = cli("runs", tmp_path / "runs")
    assert code == 0, err
    assert "damaged" in out and "metrics.jsonl line" in out.replace("\n", "")
    assert out.count("completed") >= 1
    code, _, err = cli("report", bad)
    assert code == 2 and "metrics.jsonl line 42: not UTF-8" in err


# ------------------------------------------------------------------------- the operating system


@pytest.fixture
def small_fs(tmp_path):
    """A 1 MiB tmpfs (root only; skipped where mounting is not allowed)."""
    mnt = tmp_path / "fs"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a small file system here: {r.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_a_full_disk_is_one_line_and_the_run_stops_resumable(tmp_path, small_fs):
    cfg = write_config(tmp_path / "c.toml", train={"max_steps": 400, "checkpoint_every": 10,
                                                   "keep_checkpoints": 100, "eval_every": 0})
    run = small_fs / "run"
    line = _one_line(inproc("train", str(cfg), "--out", str(run), "-q"), code=74)
    assert "no space left on device while writing checkpoint step-" in line
    assert f"in {run}" in line and "the last verified checkpoint is step-" in line
    meta = json.loads((run / "run.json").read_text())
    assert meta["status"] == "stopped" and "no space left" in meta["message"]
    assert not [p for p in (run / "checkpoints").iterdir() if p.name.startswith(".tmp-")]


def test_read_only_folders_are_one_line(tmp_path, small_fs, reference, killed):
    cfg, _ = reference
    run = _copy(killed, small_fs / "run")
    assert subprocess.run(["mount", "-o", "remount,ro", str(small_fs)]).returncode == 0
    before = _tree(run)
    line = _one_line(inproc("resume", str(run), "-q"), code=74)
    assert "read-only file system" in line and str(run) in line
    line = _one_line(inproc("train", str(cfg), "--out", str(small_fs / "new"), "-q"))
    assert "cannot create" in line and "read-only file system" in line
    assert _tree(run) == before
    line = _one_line(inproc("train", str(cfg), "--out", str(Path(cfg) / "x"), "-q"))
    assert "cannot create" in line and "is a file, not a folder" in line


# ------------------------------------------------------------------------- bounded bad input


def test_bad_input_is_bounded(tmp_path):
    cfg = write_config(tmp_path / "c.toml", train={"max_steps": 5, "checkpoint_every": 0,
                                                   "eval_every": 0})
    # an injected range is stored as a range, not as twenty million integers
    r = inproc("train", str(cfg), "--out", str(tmp_path / "r"), "--inject", "nan@0-20000000", "-q")
    assert r.returncode in (0, 3), r.stderr
    assert (tmp_path / "r" / "run.json").stat().st_size < 2000
    assert "nan@0-20000000" in (tmp_path / "r" / "run.json").read_text()
    # a million unknown keys make one short line; deep nesting is a message, not a RecursionError
    (tmp_path / "keys.toml").write_text("[model]\n" + "".join(f"k{i} = 1\n" for i in range(100000)))
    line = _one_line(inproc("train", str(tmp_path / "keys.toml"), "--out", str(tmp_path / "x")))
    assert len(line) < 400 and "more problems" in line
    (tmp_path / "deep.toml").write_text("a = " + "[" * 5000 + "]" * 5000 + "\n")
    assert "nested too deeply" in _one_line(inproc("train", str(tmp_path / "deep.toml"),
                                                   "--out", str(tmp_path / "y")))
    # names are text, never markup
    odd = tmp_path / "run[/x]"
    r = inproc("train", str(cfg), "--out", str(odd))
    assert r.returncode == 0 and "run[/x]" in r.stderr, r.stderr


def test_fits_refuse_what_the_data_cannot_identify_and_labels_stay_text(tmp_path):
    import numpy as np

    n = np.geomspace(1e5, 1e9, 10)
    (tmp_path / "r.csv").write_text("N,$\\cmd$\n" + "".join(f"{a},{2 + 30 * a ** -0.3}\n" for a in n))
    code, _, err = cli("fit", tmp_path / "r.csv", "--y", "$\\cmd$", "--bootstrap", "0", "--out",
                       tmp_path / "o")
    assert code == 0, err  # a "$" in a column name is a dollar sign, not mathtext
    (tmp_path / "one.csv").write_text("N,loss\n" + "".join(f"1e6,{3 + i / 100}\n" for i in range(6)))
    code, _, err = cli("fit", tmp_path / "one.csv", "--out", tmp_path / "o2")
    assert code == 2 and "cannot be identified" in err and "1 distinct value" in err


def test_emergence_keeps_and_reports_an_impossible_answer(tmp_path):
    rows = ["scale,example,target,prediction,logprob"]
    for k, s in enumerate([1e6, 2e6, 4e6, 8e6]):
        for i in range(20):
            lp = "-inf" if (k, i) == (0, 0) else f"{-3 + k * 0.5:.2f}"
            rows.append(f"{s},{i},12,{12 if (i + k) % 3 else 13},{lp}")
    (tmp_path / "p.csv").write_text("\n".join(rows) + "\n")
    code, _, err = cli("emergence", tmp_path / "p.csv", "--bootstrap", "50", "--out", tmp_path / "o")
    assert code == 0, err
    assert "logprob = -inf" in err and "brier counts them" in err

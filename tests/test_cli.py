"""The CLI: example configs, run listing, and bad input (exit 2, one line, no traceback,
no half-written run folder)."""

from __future__ import annotations

import pytest
import tomllib
from conftest import cli, run_cli, write_config

from lenslab.config import config_from_dict
from lenslab.examples import TASKS, example_config


def _one_line_error(r, *needles):
    """``r``: a CompletedProcess (real subprocess) or ``cli()``'s (code, out, err)."""
    code, stderr = (r.returncode, r.stderr) if hasattr(r, "returncode") else (r[0], r[2])
    assert code == 2, (code, stderr)
    assert "Traceback" not in stderr
    lines = [x for x in stderr.strip().splitlines() if x.strip()]
    assert len(lines) == 1, stderr
    for n in needles:
        assert n in lines[0], lines[0]


@pytest.mark.parametrize("task", TASKS)
def test_init_prints_a_complete_valid_commented_config(task):
    code, stdout, _ = cli("init", task)
    assert code == 0
    assert stdout.count("#") > 20
    assert config_from_dict(tomllib.loads(stdout)) == example_config(task)


def test_init_unknown_task():
    _one_line_error(run_cli("init", "sorting"), "unknown task", "induction")  # a real process


BAD = {
    "malformed": ("[model\nn_layer = 2", "malformed TOML"),
    "unknown key": ("[model]\nn_layers = 2", "model.n_layers: unknown key"),
    "heads": ("[model]\nd_model = 30\nn_head = 4", "divisible by n_head"),
    "negative": ("[optim]\nlr = -1.0", "optim.lr"),
    "context": ("[model]\nn_ctx = 16\n[data]\ntask = \"induction\"\nseq_len = 64", "n_ctx is 16"),
    "task": ("[data]\ntask = \"sorting\"", "unknown task 'sorting'"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_config_is_a_one_line_error_and_creates_nothing(tmp_path, case):
    text, needle = BAD[case]
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    out = tmp_path / "run"
    _one_line_error(cli("train", cfg, "--out", out), needle)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == [cfg]  # no staging folder left behind either


def test_non_utf8_config(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_bytes(b"name = \"\xff\xfe\"\n")
    _one_line_error(run_cli("train", str(cfg), "--out", str(tmp_path / "r")), "not UTF-8")


def test_missing_and_non_utf8_corpus(tmp_path):
    missing = tmp_path / "missing.toml"
    missing.write_text('[data]\ntask = "text"\npaths = ["nope.txt"]\nlevel = "char"\n'
                       '[model]\nn_ctx = 128\n')
    _one_line_error(cli("train", missing, "--out", tmp_path / "r1"), "not found")
    blob = tmp_path / "latin1.txt"
    blob.write_bytes("caf\u00e9 ".encode("latin-1") * 200)
    bad = tmp_path / "bad.toml"
    bad.write_text(f'[data]\ntask = "text"\npaths = ["{blob}"]\nlevel = "char"\nseq_len = 32\n'
                   '[model]\nn_ctx = 32\n')
    _one_line_error(cli("train", bad, "--out", tmp_path / "r2"), "not UTF-8", "offset 3")
    assert not (tmp_path / "r1").exists() and not (tmp_path / "r2").exists()


def test_existing_run_folder_with_another_config(tmp_path):
    a = write_config(tmp_path / "a.toml", train={"max_steps": 3})
    b = write_config(tmp_path / "b.toml", train={"max_steps": 3}, optim={"lr": 0.01})
    out = tmp_path / "run"
    assert cli("train", a, "--out", out, "-q")[0] == 0
    before = sorted(p.name for p in out.iterdir())
    _one_line_error(cli("train", b, "--out", out), "different config", "optim.lr")
    _one_line_error(cli("train", a, "--out", out), "lenslab resume")
    assert sorted(p.name for p in out.iterdir()) == before


def test_resume_of_a_folder_that_is_not_a_run(tmp_path):
    _one_line_error(cli("resume", tmp_path), "not a lenslab run folder")


def test_bad_injection_spec(tmp_path):
    cfg = write_config(tmp_path / "c.toml")
    _one_line_error(cli("train", cfg, "--out", tmp_path / "r", "--inject", "boom@3"), "--inject")
    assert not (tmp_path / "r").exists()


def test_set_overrides_config_values_and_rejects_bad_ones(tmp_path):
    cfg = write_config(tmp_path / "c.toml", train={"max_steps": 3, "checkpoint_every": 3})
    code, _, stderr = cli("train", cfg, "--out", tmp_path / "r", "-q", "--set", "model.norm=none",
                          "--set", "optim.betas=[0.9, 0.98]", "--set", "model.init_std=0.05")
    assert code == 0, stderr
    saved = tomllib.loads((tmp_path / "r" / "config.toml").read_text())
    assert saved["model"]["norm"] == "none" and saved["optim"]["betas"] == [0.9, 0.98]
    assert saved["model"]["init_std"] == 0.05
    code, _, stderr = cli("train", cfg, "--out", tmp_path / "r2", "-q", "--set", "seed=11")
    assert code == 0, stderr
    assert tomllib.loads((tmp_path / "r2" / "config.toml").read_text())["seed"] == 11
    for bad, msg in (("model.nrm=none", "model.nrm: unknown key"), ("modl.x=1", "no section 'modl'"),
                     ("model.n_layer", "SECTION.KEY=VALUE"), ("model.n_layer=0", "model.n_layer")):
        _one_line_error(cli("train", cfg, "--out", tmp_path / "bad", "--set", bad), msg)
        assert not (tmp_path / "bad").exists()


def test_train_then_list_runs(tmp_path):
    cfg = write_config(tmp_path / "c.toml", train={"max_steps": 12})
    code, _, stderr = cli("train", cfg, "--out", tmp_path / "runs" / "a", "--inject", "nan@4", "-q")
    assert code == 0, stderr
    code, stdout, _ = cli("runs", tmp_path / "runs")
    assert code == 0
    assert "completed" in stdout and "12/12" in stdout and "nonfinite 1" in stdout
    lines = (tmp_path / "runs" / "a" / "metrics.jsonl").read_text().splitlines()
    import json

    rec = json.loads(lines[0])
    assert {"step", "loss", "lr", "grad_norm", "tokens"} <= set(rec)


def test_tensorboard_without_the_package_is_a_config_error(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if not installed
    cfg = write_config(tmp_path / "c.toml", train={"tensorboard": True})
    _one_line_error(cli("train", cfg, "--out", tmp_path / "r"), "tensorboard")
    assert not (tmp_path / "r").exists()


def test_tensorboard_logging_writes_event_files(tmp_path):
    import pytest

    pytest.importorskip("tensorboard", reason="the test extra installs tensorboard")
    cfg = write_config(tmp_path / "c.toml", train={"tensorboard": True, "max_steps": 5})
    assert cli("train", cfg, "--out", tmp_path / "r", "-q")[0] == 0
    events = list((tmp_path / "r" / "tensorboard").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0


@pytest.mark.parametrize("args, needle", [
    (["train"], "Missing argument"),
    (["fit", "results.csv", "--form", "power"], "Missing option '--out'"),
    (["probe", "run", "--n", "2"], "greater than or equal to 8"),
    (["nope"], "No such command"),
])
def test_usage_errors_are_one_message_and_exit_2(args, needle):
    code, out, err = cli(*args)
    assert code == 2 and needle in out + err and "Traceback" not in out + err

"""The CLI: example configs, run listing, and bad input (exit 2, one line, no traceback,
no half-written run folder)."""

from __future__ import annotations

import tomllib

import pytest

from lenslab.config import config_from_dict
from lenslab.examples import TASKS, example_config

from conftest import run_cli, write_config


def _one_line_error(r, *needles):
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr
    lines = [x for x in r.stderr.strip().splitlines() if x.strip()]
    assert len(lines) == 1, r.stderr
    for n in needles:
        assert n in lines[0], lines[0]


@pytest.mark.parametrize("task", TASKS)
def test_init_prints_a_complete_valid_commented_config(task):
    r = run_cli("init", task)
    assert r.returncode == 0
    assert r.stdout.count("#") > 20
    assert config_from_dict(tomllib.loads(r.stdout)) == example_config(task)


def test_init_unknown_task():
    _one_line_error(run_cli("init", "sorting"), "unknown task", "induction")


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
    _one_line_error(run_cli("train", str(cfg), "--out", str(out)), needle)
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
    _one_line_error(run_cli("train", str(missing), "--out", str(tmp_path / "r1")), "not found")
    blob = tmp_path / "latin1.txt"
    blob.write_bytes("caf\u00e9 ".encode("latin-1") * 200)
    bad = tmp_path / "bad.toml"
    bad.write_text(f'[data]\ntask = "text"\npaths = ["{blob}"]\nlevel = "char"\nseq_len = 32\n'
                   '[model]\nn_ctx = 32\n')
    _one_line_error(run_cli("train", str(bad), "--out", str(tmp_path / "r2")), "not UTF-8",
                    "offset 3")
    assert not (tmp_path / "r1").exists() and not (tmp_path / "r2").exists()


def test_existing_run_folder_with_another_config(tmp_path):
    a = write_config(tmp_path / "a.toml", train={"max_steps": 3})
    b = write_config(tmp_path / "b.toml", train={"max_steps": 3}, optim={"lr": 0.01})
    out = tmp_path / "run"
    assert run_cli("train", str(a), "--out", str(out), "-q").returncode == 0
    before = sorted(p.name for p in out.iterdir())
    _one_line_error(run_cli("train", str(b), "--out", str(out)), "different config", "optim.lr")
    _one_line_error(run_cli("train", str(a), "--out", str(out)), "lenslab resume")
    assert sorted(p.name for p in out.iterdir()) == before


def test_resume_of_a_folder_that_is_not_a_run(tmp_path):
    _one_line_error(run_cli("resume", str(tmp_path)), "not a lenslab run folder")


def test_bad_injection_spec(tmp_path):
    cfg = write_config(tmp_path / "c.toml")
    _one_line_error(run_cli("train", str(cfg), "--out", str(tmp_path / "r"), "--inject", "boom@3"),
                    "--inject")
    assert not (tmp_path / "r").exists()


def test_train_then_list_runs(tmp_path):
    cfg = write_config(tmp_path / "c.toml", train={"max_steps": 12})
    r = run_cli("train", str(cfg), "--out", str(tmp_path / "runs" / "a"), "--inject", "nan@4", "-q")
    assert r.returncode == 0, r.stderr
    r = run_cli("runs", str(tmp_path / "runs"))
    assert r.returncode == 0
    assert "completed" in r.stdout and "12/12" in r.stdout and "nonfinite 1" in r.stdout
    lines = (tmp_path / "runs" / "a" / "metrics.jsonl").read_text().splitlines()
    import json

    rec = json.loads(lines[0])
    assert {"step", "loss", "lr", "grad_norm", "tokens"} <= set(rec)

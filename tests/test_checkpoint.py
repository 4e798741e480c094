"""Checkpoints: atomic, verified by sha256, retention that never loses the newest good one."""

from __future__ import annotations

import json

import pytest
import torch

from lenslab.config import GPTConfig
from lenslab.models import GPT
from lenslab.run import checkpoint as C


def _model(seed=0):
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=11, n_layer=1, n_head=2, d_model=8, n_ctx=8))


def test_roundtrip_is_exact_with_tied_weights(tmp_path):
    m = _model()
    state = {**{k: 0 for k in C.STATE_KEYS}, "step": 5, "t": torch.arange(3)}
    ck = C.write_checkpoint(tmp_path, 5, m, state, run_id="abc")
    assert ck.path.name == "step-000005" and C.verify(ck.path, "abc") is None
    manifest = json.loads((ck.path / "MANIFEST.json").read_text())
    assert set(manifest["files"]) == {"model.safetensors", "trainer.pt"}
    assert manifest["run"] == "abc" and manifest["step"] == 5
    m2 = _model(seed=1)
    weights, state = C.read_checkpoint(ck)
    C.load_weights(m2, weights)
    assert state["step"] == 5 and torch.equal(state["t"], torch.arange(3))
    for (k, a), b in zip(m.state_dict().items(), m2.state_dict().values()):
        assert torch.equal(a, b), k
    assert m2.lm_head.weight.data_ptr() == m2.tok_emb.weight.data_ptr()  # still tied


@pytest.mark.parametrize("damage", ["flip", "truncate", "no_manifest", "missing_file"])
def test_damaged_checkpoint_is_rejected_and_older_one_used(tmp_path, damage):
    m = _model()
    C.write_checkpoint(tmp_path, 10, m, {"step": 10})
    new = C.write_checkpoint(tmp_path, 20, m, {"step": 20})
    f = new.path / "model.safetensors"
    if damage == "flip":
        b = bytearray(f.read_bytes()); b[len(b) // 2] ^= 1; f.write_bytes(bytes(b))
    elif damage == "truncate":
        f.write_bytes(f.read_bytes()[:-7])
    elif damage == "no_manifest":
        (new.path / "MANIFEST.json").unlink()
    else:
        (new.path / "trainer.pt").unlink()
    warnings = []
    got = C.latest_verified(tmp_path, warn=warnings.append)
    assert got is not None and got.step == 10
    assert len(warnings) == 1 and "step-000020" in warnings[0]


def test_interrupted_write_leaves_no_checkpoint_and_is_cleaned(tmp_path):
    m = _model()
    C.write_checkpoint(tmp_path, 10, m, {"step": 10})

    class Boom(Exception):
        pass

    def boom():
        raise Boom

    with pytest.raises(Boom):
        C.write_checkpoint(tmp_path, 20, m, {"step": 20}, after_model_written=boom)
    assert [c.step for c in C.list_checkpoints(tmp_path)] == [10]
    assert not list(tmp_path.glob(".tmp-*"))  # cleaned on the exception path
    (tmp_path / ".tmp-step-000030-1-2").mkdir()  # what a SIGKILL leaves
    assert C.clean_partial(tmp_path) and not list(tmp_path.glob(".tmp-*"))


def test_retention_keeps_last_k_and_protects_newest_verified(tmp_path):
    m = _model()
    for s in (10, 20, 30, 40, 50):
        C.write_checkpoint(tmp_path, s, m, {"step": s})
    C.apply_retention(tmp_path, keep=2)
    assert [c.step for c in C.list_checkpoints(tmp_path)] == [50, 40]
    # newest two are damaged: the newest *verified* (40 -> 30 here) must survive retention
    for s in (60, 70):
        C.write_checkpoint(tmp_path, s, m, {"step": s})
    for s in (60, 70):
        (tmp_path / f"step-0000{s}" / "MANIFEST.json").unlink()
    good = C.latest_verified(tmp_path, warn=lambda _: None)
    C.apply_retention(tmp_path, keep=2, protect=good.path)
    assert good.step == 50 and (tmp_path / "step-000050").exists()

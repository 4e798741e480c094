"""The interventions lab on the replications' two-layer induction model and its one-layer
control: the circuit is found by patching, its heads' direct effects are where they should be,
the logit lens sees the copy happen in layer 1, the control has nothing to restore, and
patching is exact where it must be."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import cli

import lenslab
from lenslab.interventions import (
    PatchingResult,
    activation_patching,
    attribution_patching,
    induction_prompts,
    lens_run,
    patch_run,
    path_run,
)
from lenslab.interventions.patching import cache, run_patched


@pytest.fixture(scope="module")
def heads(induction_runs):
    return patch_run(induction_runs[2], "heads", n=64, bootstrap=300, length=32)


def test_the_layer1_heads_carry_the_answer_and_clear_their_null(heads):
    assert not heads.nothing_to_restore
    effect, lo, hi = heads.joint["all heads of layer 1"]
    assert effect >= 0.8 and lo >= 0.8
    carriers = {name for name, _, margin in heads.carriers()}
    assert any(name.startswith("L1") for name in carriers)
    assert all(m > 0 for _, _, m in heads.carriers())  # margins over the null are reported


def test_path_patching_finds_the_composition_through_the_keys(heads, induction_runs):
    prev = max(range(len(heads.cols)), key=lambda h: heads.effect[0][h])  # layer 0's best head
    res = path_run(induction_runs[2], (0, prev), n=64, bootstrap=300, length=32)
    assert res.receivers == [f"L1H{h}" for h in range(len(heads.cols))]
    k, v = res.via.index("k"), res.via.index("v")
    assert res.clears("k") and res.effect[k] >= 0.5  # K-composition, measured
    assert res.effect[v] <= 0.05 and res.effect[res.via.index("q")] <= 0.05


def test_attribution_patching_ranks_heads_like_real_patching(heads, induction_runs):
    assert heads.attribution_spearman >= 0.8  # AtP* (with the QK fix), over every head
    est = heads.attribution
    assert all(abs(a - e) <= 0.15 for a, e in zip(est[1], heads.effect[1]))
    # without the fix, layer 0's effect through layer 1's saturated attention is invisible
    run = lenslab.load_run(induction_runs[2])
    plain = attribution_patching(run.load_model(run.checkpoint()),
                                 induction_prompts(64, 32, 64, seed=0), qk_fix=False)
    assert abs(plain[0]).max() < 0.05 < max(heads.effect[0])


def test_no_layer0_head_restores_the_answer_by_its_direct_effect(induction_runs):
    direct = patch_run(induction_runs[2], "direct", n=64, bootstrap=300, length=32)
    assert max(direct.effect[0]) <= 0.2  # layer 0 acts through layer 1, not on the logits
    assert max(direct.effect[1]) > 0.2


def test_the_logit_lens_sees_the_copy_in_layer_1(induction_runs):
    lens = lens_run(induction_runs[2], n=128, length=32)
    assert lens.layers == ["embed", "L0", "L1"]
    assert lens.median_rank[1] >= 10 and lens.median_rank[2] <= 1


def test_the_one_layer_control_has_nothing_to_restore(induction_runs):
    res = patch_run(induction_runs[1], "heads", n=64, bootstrap=300, length=32)
    assert res.nothing_to_restore and res.carriers() == []
    assert res.summary.startswith("nothing to restore")
    assert "<table" not in res.to_html()  # no normalised effects of noise


def test_patching_is_exact_where_it_must_be(induction_runs):
    run = lenslab.load_run(induction_runs[2])
    model = run.load_model(run.checkpoint())
    p = induction_prompts(64, 32, 16, seed=1)
    base = run_patched(model, p.corrupt, p.answer)
    resid, z = cache(model, p.corrupt)
    own = run_patched(model, p.corrupt, p.answer, z={(1, 2): (slice(None), z[1][:, 2])})
    assert torch.equal(own, base)  # a component patched with its own activation: no change
    clean = run_patched(model, p.clean, p.answer)
    resid_c, _ = cache(model, p.clean)
    for layer in range(model.n_layer + 1):  # the whole stream from the clean run: clean
        out = run_patched(model, p.corrupt, p.answer, resid={layer: (slice(None), resid_c[layer])})
        assert torch.equal(out, clean)


def test_patching_writes_a_result_that_reads_back(heads, induction_runs, tmp_path):
    d = json.loads(json.dumps(heads.to_dict()))
    assert PatchingResult.from_dict(d).to_html() == heads.to_html()
    comp = {(c["layer"], c["head"]): c for c in d["components"]}
    assert len(comp) == 8 and comp[(1, 0)]["effect"] == heads.effect[1][0]
    assert {"interval", "null", "carries"} <= set(comp[(1, 0)])
    assert [j["layer"] for j in d["joint"]] == [0, 1]
    code, out, err = cli("patch", str(induction_runs[2]), "--pairs", "16", "--bootstrap", "100",
                         "--length", "24", "--out", str(tmp_path))
    assert code == 0, err
    assert "carry the answer" in out and (tmp_path / "patch.html").is_file()
    code, out, err = cli("patch", str(induction_runs[2]), "--what", "layers")
    assert code == 2 and "what must be one of" in err


def test_bad_prompts_are_one_line_errors():
    with pytest.raises(lenslab.errors.DataError, match="period"):
        induction_prompts(8, 32, 4, period=20)
    with pytest.raises(lenslab.errors.DataError, match="direction"):
        p = induction_prompts(64, 16, 4)
        activation_patching(None, p, direction="sideways")

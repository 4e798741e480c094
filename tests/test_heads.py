"""The head taxonomy finds the heads that are there, and only those, against its nulls."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import cli_proc

from lenslab.attention import GPTLens
from lenslab.attention.heads import classify, read_prompt_file
from lenslab.errors import DataError


def test_trained_induction_model_has_induction_and_previous_token_heads(induction_runs):
    rep = classify(GPTLens.from_run(induction_runs[2]), n_random=8, n_natural=8)
    best = max(rep.heads, key=lambda h: h["scores"]["induction"])
    assert best["layer"] == 1 and best["class"] == "induction"
    assert best["scores"]["induction"] >= 0.7
    assert best["scores"]["induction"] >= best["null"]["induction"]["threshold"]
    prev = [h for h in rep.heads if h["class"] == "previous-token"]
    assert prev and all(h["layer"] == 0 for h in prev)
    assert max(h["scores"]["prev_token"] for h in prev) >= 0.3
    assert "clears threshold" in best["evidence"]
    # the nulls are what untrained heads do: far below the trained induction score
    assert best["null"]["induction"]["reinit_hi"] < 0.2


def test_one_layer_control_has_no_induction_head(induction_runs):
    rep = classify(GPTLens.from_run(induction_runs[1]), n_random=8, n_natural=8)
    assert not rep.by_class("induction")
    assert max(h["scores"]["induction"] for h in rep.heads) < 0.2


def test_reinitialised_model_is_not_classified_as_structured(induction_runs):
    fresh = GPTLens.from_run(induction_runs[2]).reinitialized(seed=5)
    rep = classify(fresh, n_random=8, n_natural=8)
    assert {h["class"] for h in rep.heads} <= {"broad", "random-like"}


def test_minilm_classes_match_facts_computed_independently(minilm):
    rep = classify(minilm, n_random=8, n_natural=12)
    sents = ["The cat sat on the mat and looked out of the window.",
             "Most birds build their nests in spring, when food is easy to find.",
             "Our train was late because a tree had fallen across the tracks."]
    cls_share = torch.zeros(6, 12)
    prev = torch.zeros(6, 12)
    ent = torch.zeros(6, 12)
    for s in sents:
        p = minilm.capture(minilm.tokenize(s).tensor())  # [L, H, q, k]
        T = p.shape[-1]
        cls_share += p[..., 1:, 0].mean(-1) / len(sents)  # weight on [CLS]
        prev += p[..., torch.arange(1, T), torch.arange(0, T - 1)].mean(-1) / len(sents)
        ent += (-(p.clamp_min(1e-12).log() * p).sum(-1) / torch.log(torch.tensor(float(T)))).mean(-1) / len(sents)
    classes = rep.classes()
    on_cls = [(layer, h) for layer in range(6) for h in range(12) if cls_share[layer, h] > 0.6]
    assert len(on_cls) >= 10
    for layer, h in on_cls:  # mostly on [CLS]: the lab's sink score clears its null ...
        assert rep.head(layer, h)["excess"]["sink"] > 0, (layer, h)
    # ... and it is called a sink unless a stronger structure wins (a duplicate-token head
    # that parks on [CLS] when a sentence has no duplicates, like L1H1)
    assert sum(classes[k] == "sink" for k in on_cls) >= 0.8 * len(on_cls)
    # the strongest previous-token head by direct measurement is the lab's previous-token head
    l, h = divmod(int(prev.argmax()), 12)
    assert classes[(l, h)] == "previous-token" and prev[l, h] > 0.9
    # broad heads live in the lowest layer: near-uniform rows there are classed broad
    for h in range(12):
        if ent[0, h] > 0.9:
            assert classes[(0, h)] == "broad", h
    assert sum(c == "broad" for (layer, _), c in classes.items() if layer == 0) >= 4


def test_heads_cli_writes_json_and_html(induction_runs, tmp_path):
    r = cli_proc("heads", str(induction_runs[2]), "--out", str(tmp_path / "h"))
    assert r.returncode == 0, r.stderr
    data = json.loads((tmp_path / "h" / "heads.json").read_text())
    assert len(data["heads"]) == 8 and data["command"].startswith("lenslab heads")
    h = data["heads"][4]
    assert {"layer", "head", "class", "scores", "null"} <= set(h)
    assert {"threshold", "reinit_hi", "perm_hi"} <= set(h["null"]["induction"])
    assert "importance" in h
    html = (tmp_path / "h" / "heads.html").read_text()
    assert "Structure against importance" in html and "<svg" in html


def test_heads_cli_bad_input(tmp_path, induction_runs):
    r = cli_proc("heads", str(tmp_path / "missing"), "--out", str(tmp_path / "o"),
                env={"HF_HUB_OFFLINE": "1"})
    assert r.returncode == 2 and "Traceback" not in r.stderr
    bad = tmp_path / "p.txt"
    bad.write_bytes(b"ok\n\xff\xfe\n")
    with pytest.raises(DataError, match="not UTF-8"):
        read_prompt_file(bad)
    lstm_cfg = tmp_path / "lstm.toml"
    r = cli_proc("init", "lstm")
    lstm_cfg.write_text(r.stdout.replace("max_steps = 1000", "max_steps = 2"))
    assert cli_proc("train", str(lstm_cfg), "--out", str(tmp_path / "lstm"), "-q").returncode == 0
    r = cli_proc("heads", str(tmp_path / "lstm"), "--out", str(tmp_path / "o2"))
    assert r.returncode == 2 and "no attention" in r.stderr

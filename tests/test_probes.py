"""Generalization probes: the tasks' rules, rotary positions, and the probes on trained runs
(a shortcut that is found, a rule that is found, a length limit, commutativity)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import cli

import lenslab
from lenslab.config import GPTConfig, RepeatData, SequenceData
from lenslab.data import IGNORE, RepeatTask, SequenceTask
from lenslab.errors import ConfigError
from lenslab.models import GPT
from lenslab.models.gpt import apply_rotary, rotary_tables
from lenslab.probes import counterfactual, length_generalization, rule_test


def _train(tmp, name, task, steps, sets=()):
    cfg = lenslab.config.apply_overrides(lenslab.example_config(task), [
        f"train.max_steps={steps}", "train.eval_every=0", "train.checkpoint_every=0",
        "train.log_every=50", "train.device=\"cpu\"", *sets])
    run = tmp / name
    res = lenslab.train(cfg, run, progress=False)
    assert res.status == "completed"
    return run


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("probes")
    return {
        "shortcut": _train(tmp, "shortcut", "repeat", 300, ["train.eval_every=100"]),
        "induction": _train(tmp, "induction", "repeat", 500, ["data.disambiguating=1.0"]),
        "copy": _train(tmp, "copy", "sequence", 600),
        "modadd": _train(tmp, "modadd", "modular_addition", 400,
                         ["data.p=13", "data.train_fraction=0.5"]),
    }


# ---------------------------------------------------------------------- tasks and positions


def test_repeat_task_rules_are_what_they_say():
    task = RepeatTask(RepeatData(disambiguating=0.0), seed=1)
    x, y = task.batch(0, 16)
    assert (x[:, 8:] == x[:, :-8]).all(), "training sequences repeat with the trained period"
    s = task.probe_inputs(32)
    assert set(s["periods"]) <= set(task.other_periods) and 8 not in s["periods"]
    T = task.seq_len
    m = s["disagree"]
    assert m.any()
    nxt = np.concatenate([s["x"][:, 1:], s["induction"][:, -1:]], axis=1)
    assert (s["induction"] == nxt).all(), "induction's answer is the true next token"
    j = np.arange(1, T + 1)
    full = np.concatenate([s["x"], s["induction"][:, -1:]], axis=1)  # tokens 0..T
    assert (s["offset"][:, 7:] == full[:, j[7:] - 8]).all(), "offset copies 8 back"
    assert (s["phase"] == full[np.arange(32)[:, None], j % 8]).all(), "phase reads period one"
    for a, b in (("induction", "offset"), ("induction", "phase"), ("offset", "phase")):
        assert (s[a][m] != s[b][m]).all(), f"{a} and {b} must differ where they are disputed"
    for i, p in enumerate(s["periods"]):  # the disputed positions are a matter of indices
        first = max(p, 8) + 1
        assert not m[i, :first - 1].any()
        assert (m[i, first - 1:] == task._disputed(int(p))).all()


def test_repeat_config_errors_are_one_line():
    with pytest.raises(ConfigError, match="must hold a period other than"):
        lenslab.config.config_from_dict({"data": {"task": "repeat", "period": 8, "period_min": 8,
                                                  "period_max": 8}})
    with pytest.raises(ConfigError, match="distinct tokens"):
        lenslab.config.config_from_dict({"data": {"task": "repeat", "vocab_size": 10}})
    with pytest.raises(ConfigError, match="never all disagree"):  # twice 8: never all distinct
        RepeatTask(RepeatData(period=8, period_min=16, period_max=16), seed=0)


def test_sequence_task_scores_only_the_answer():
    task = SequenceTask(SequenceData(op="reverse", symbols=5, min_len=2, max_len=4,
                                     eval_max_len=6), seed=0)
    x, y = task.encode([np.array([1, 2, 3]), np.array([4, 0])])
    assert x[0].tolist() == [1, 2, 3, task.eq, 3, 2]
    assert y[0].tolist() == [IGNORE, IGNORE, IGNORE, 3, 2, 1]
    assert x[1].tolist() == [4, 0, task.eq, 0, task.pad, task.pad]
    assert y[1].tolist() == [IGNORE, IGNORE, 0, 4, IGNORE, IGNORE]


def test_rotary_scores_depend_on_offset_only():
    cos, sin = rotary_tables(16, 8)
    q, k = torch.randn(8), torch.randn(8)
    rot = lambda v: apply_rotary(v.expand(1, 1, 16, 8), cos, sin)[0, 0]  # noqa: E731
    rq, rk = rot(q), rot(k)
    assert torch.allclose(rq[5] @ rk[2], rq[12] @ rk[9], atol=1e-5)
    assert torch.allclose(rq[0], q) and torch.allclose(rq[3].norm(), q.norm(), atol=1e-5)


@pytest.mark.parametrize("position", ["rope", "none"])
def test_gpt_without_learned_positions(position):
    torch.manual_seed(0)
    m = GPT(GPTConfig(vocab_size=11, n_ctx=12, position=position, n_layer=2)).eval()
    assert m.pos_emb is None
    idx = torch.randint(0, 11, (2, 12))
    pats = []
    out = m(idx, attn_hook=lambda layer, p: pats.append(p))
    assert torch.allclose(out, m(idx), atol=1e-5), "capture path = fast path"
    assert len(pats) == 2 and torch.allclose(pats[0].sum(-1), torch.ones(2, 4, 12), atol=1e-5)
    assert m.num_params() == sum(p.numel() for p in m.parameters()) - m.tok_emb.weight.numel()


def test_rope_needs_an_even_head_width():
    with pytest.raises(ConfigError, match="must be even"):
        lenslab.config.config_from_dict({"model": {"position": "rope", "d_model": 12, "n_head": 4},
                                         "data": {"task": "induction"}})


# ---------------------------------------------------------------------- probes on trained runs


def test_a_shortcut_is_found_where_the_data_cannot_tell(runs):
    r = rule_test(runs["shortcut"], n=64, bootstrap=200)
    assert r.in_distribution_acc > 0.95, "the model has learned its training data"
    assert r.verdict in ("phase", "offset"), r.summary
    assert r.shares["induction"] < 0.1
    lo, hi = r.intervals[r.verdict]
    assert 0.5 < lo <= r.shares[r.verdict] <= hi
    assert sum(r.shares.values()) <= 1 + 1e-9
    assert "shortcut" in r.summary and "<svg" in r._repr_html_()
    # the shares were logged at every evaluation: the run shows when it picked its rule
    assert r.history["step"] == [100, 200, 300]
    assert r.history[r.verdict][-1] > 0.5 and r.history["induction"][-1] < 0.1


def test_run_report_shows_the_probe(runs, tmp_path):
    from lenslab.report.run import write_run_report
    from lenslab.result import write_result
    from lenslab.run import Run

    write_result(rule_test(runs["shortcut"], n=32, bootstrap=100), Run(runs["shortcut"]),
                 "lenslab probe shortcut")
    html = write_run_report(runs["shortcut"]).read_text()
    assert "Which rule did the model learn?" in html and "the model follows" in html
    assert "lenslab probe shortcut" in html


def test_the_rule_is_found_when_the_data_demands_it(runs):
    r = rule_test(runs["induction"], n=64, bootstrap=200)
    assert r.verdict == "induction" and r.shares["induction"] > 0.9, r.summary
    assert "the rule we meant" in r.summary


def test_learned_positions_do_not_reach_past_the_trained_lengths(runs):
    r = length_generalization(runs["copy"], n=64, bootstrap=200)
    assert r.lengths == list(range(1, 17)) and r.train_range == [1, 8]
    assert r.in_range > 0.9
    assert r.exact_match[r.lengths.index(10)] < 0.05  # positions 10+ were never trained
    assert r.holds_to == 8 and "no length generalization" in r.summary
    for e, (lo, hi) in zip(r.exact_match, r.exact_interval):
        assert lo <= e <= hi


def test_commutativity_is_told_apart_from_addition(runs):
    r = counterfactual(runs["modadd"], "swap", bootstrap=200)
    groups = {g["name"]: g for g in r.groups}
    assert groups["swap trained"]["n"] + groups["swap held out"]["n"] == r.n
    # a memorizing model answers a held-out pair only when its swap was trained
    assert groups["swap trained"]["acc_original"] > groups["swap held out"]["acc_original"] + 0.2
    assert "commutativity" in r.finding
    assert r.to_dict()["verdict"] == r.verdict


def test_probe_cli_writes_json_html_png(runs, tmp_path):
    code, out, err = cli("probe", str(runs["copy"]), "--out", str(tmp_path), "--lengths", "6-10",
                         "--n", "32")
    assert code == 0, err
    d = json.loads((tmp_path / "probe.json").read_text())
    assert d["kind"] == "probe" and d["probe"] == "length" and d["lengths"] == [6, 7, 8, 9, 10]
    assert d["command"].startswith("lenslab probe")
    assert (tmp_path / "probe.png").stat().st_size > 1000
    assert "<svg" in (tmp_path / "probe.html").read_text()


@pytest.mark.parametrize("args, needle", [
    (["--lengths", "1-40"], "context is 32"),
    (["--lengths", "x"], "is not like"),
])
def test_probe_cli_bad_input(runs, args, needle):
    code, out, err = cli("probe", str(runs["copy"]), *args)
    assert code == 2 and needle in err and "Traceback" not in err


def test_probe_refuses_tasks_it_cannot_read(tmp_path):
    from conftest import tiny_config

    run = tmp_path / "ind"
    lenslab.train(tiny_config(train={"max_steps": 2, "checkpoint_every": 0, "eval_every": 0}), run,
                  progress=False)
    code, out, err = cli("probe", str(run))
    assert code == 2 and "the generalization probes read" in err
    code, out, err = cli("probe", str(tmp_path / "missing"))
    assert code == 2 and "not a lenslab run folder" in err


def test_the_length_probe_reads_an_lstm_run(tmp_path):
    from lenslab.config import LSTMConfig

    cfg = lenslab.example_config("sequence")
    cfg = cfg.model_copy(update={"model": LSTMConfig(d_model=32, n_ctx=32)})
    cfg = lenslab.config.apply_overrides(cfg, ["train.max_steps=5", "train.eval_every=0",
                                               "train.checkpoint_every=0"])
    lenslab.train(cfg, tmp_path / "lstm", progress=False)
    r = length_generalization(tmp_path / "lstm", lengths=[2, 9], n=16, bootstrap=50)
    assert r.model == "LSTM" and r.lengths == [2, 9] and len(r.token_acc) == 2


def test_probe_a_sweep_against_its_axes(tmp_path):
    """A sweep over data.disambiguating and the position encoding, probed in one command."""
    import tomli_w

    from lenslab.scaling.sweep import run_sweep

    base = lenslab.example_config("repeat").model_dump(mode="json", exclude_none=True)
    base["model"].update(d_model=32, n_ctx=24)
    base["data"].update(seq_len=24, period=4, period_min=3, period_max=6, vocab_size=16)
    base["train"].update(eval_every=0, checkpoint_every=0, log_every=20)
    sweep = {"name": "rules", "workers": 2, "threads": 1, "base": base,
             "grid": {"steps": [20], "set": {"data.disambiguating": [0.0, 1.0],
                                              "model.position": ["learned", "none"]}}}
    (tmp_path / "s.toml").write_text(tomli_w.dumps(sweep))
    res = run_sweep(tmp_path / "s.toml", tmp_path / "sw", progress=False)
    assert res.exit_code == 0
    code, out, err = cli("probe", str(tmp_path / "sw"), "--n", "16")
    assert code == 0, err
    d = json.loads((tmp_path / "sw" / "probes.json").read_text())
    assert d["kind"] == "probes" and d["probe"] == "rules"
    assert d["axes"] == ["data.disambiguating", "model.position"]
    assert len(d["rows"]) == 4 and d["measures"] == ["share_induction", "share_offset", "share_phase"]
    assert {(r["data.disambiguating"], r["model.position"]) for r in d["rows"]} == {
        (0.0, "learned"), (0.0, "none"), (1.0, "learned"), (1.0, "none")}
    for r in d["rows"]:  # each run got its own probe page too
        assert (tmp_path / "sw" / "runs" / r["run"].split("/")[-1] / "analysis" / "probe.json").is_file()
    assert "data.disambiguating" in (tmp_path / "sw" / "probes.csv").read_text().splitlines()[0]
    assert (tmp_path / "sw" / "probes.png").stat().st_size > 1000
    code, out, err = cli("probe", str(tmp_path / "sw"), "--step", "10")
    assert code == 2 and "drop it to probe every run of the sweep" in err


def test_probe_every_checkpoint_of_a_run(tmp_path):
    run = _train(tmp_path, "ma", "modular_addition", 300,
                 ["data.p=13", "data.train_fraction=0.5", "train.checkpoint_every=100",
                  "train.keep_checkpoints=10"])
    code, out, err = cli("probe", str(run), "--checkpoints")
    assert code == 0, err
    d = json.loads((run / "analysis" / "probe-checkpoints.json").read_text())
    steps = [r["step"] for r in d["rows"]]
    assert d["over"] == "checkpoints" and d["axes"] == ["step"]
    assert steps == sorted(steps) and steps[-1] == 300 and {100, 200} <= set(steps)
    assert {"acc_swap_trained", "acc_swap_held_out"} <= set(d["measures"])
    last = d["rows"][-1]
    assert last["acc_swap_trained"] > last["acc_swap_held_out"]  # memorized, commutative
    assert (run / "analysis" / "probe-checkpoints.png").is_file()
    from lenslab.report.run import write_run_report

    assert "Counterfactual variants across checkpoints" in write_run_report(run).read_text()
    code, out, err = cli("probe", str(run), "--checkpoints", "--step", "100")
    assert code == 2 and "--step names one checkpoint" in err


def test_head_taxonomy_agrees_with_the_rule_probe(runs):
    """A head that reads positions is not called an induction head because the battery's
    repetition length is a multiple of the trained period (48 tokens: two copies of 24 = 3 x 8);
    the model that learned induction has induction heads."""
    from lenslab.attention.capture import load_lens
    from lenslab.attention.heads import classify

    def classes(run):
        return {h["class"] for h in classify(load_lens(str(run)), n_natural=4, null_seeds=1,
                                             n_perm=20).heads}

    assert "induction" not in classes(runs["shortcut"])
    assert "induction" in classes(runs["induction"])


def test_question_formation_data_is_ambiguous_only_where_it_should_be():
    from lenslab.config import QuestionData
    from lenslab.data import QuestionTask
    from lenslab.data.grammar import AUX

    auxes = set(AUX[False] + AUX[True])
    for share, ambiguous in ((0.0, True), (1.0, False)):
        task = QuestionTask(QuestionData(disambiguating=share), seed=0)
        x, y = task.batch(0, 256)
        assert x.shape[1] <= task.seq_len
        moved_other = 0
        for row, tgt in zip(x.tolist(), y.tolist()):
            words = task.token_str(row + [t for t in tgt[-1:] if t != IGNORE])
            words = [w for w in words if w != "<pad>"]
            k = words.index(".")
            src, kind, out = words[:k], words[k + 1], words[k + 2:]
            if kind == "decl":
                assert out[:len(src)] == src
                continue
            main = next(i for i, w in enumerate(src) if w == out[0] and w in auxes
                        and src[:i] + src[i + 1:] == out[1:len(src)])
            first = next(i for i, w in enumerate(src) if w in auxes)
            moved_other += main != first
        # ambiguous data: the moved auxiliary is always the first; disambiguating: it is not
        assert (moved_other == 0) == ambiguous
    q = task.questions(200, rc_subject=True)
    assert (q["hierarchical"] != q["linear"]).all()  # the probe asks where the rules disagree
    pred = np.zeros(q["x"].shape, dtype=np.int64)
    pred[np.arange(200), q["at"]] = q["linear"]
    hit = task.first_words(pred, q)
    assert hit["linear"].all() and not hit["hierarchical"].any()
    assert not task.exact(pred, q).any()


def test_the_rule_probe_reads_a_question_formation_run(tmp_path):
    run = _train(tmp_path, "question", "question", 40,
                 ["model.n_layer=1", "model.d_model=32", "train.eval_every=20"])
    res = rule_test(run, n=200, bootstrap=100)
    assert res.task == "question" and res.rules == ["hierarchical", "linear"]
    assert 0 <= sum(res.shares.values()) <= 1 and res.history["step"] == [20, 40]
    assert set(res.by_group) <= {"object", "subject, intransitive", "subject, transitive"}
    assert sum(g["n"] for g in res.by_group.values()) == 200
    assert type(res).from_dict(json.loads(json.dumps(res.to_dict()))).to_html() == res.to_html()
    code, out, err = cli("probe", str(run))
    assert code == 0, err
    assert "hierarchical" in (run / "analysis" / "probe.html").read_text()

"""Replications: registered, and their measures read what their targets say."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lenslab.errors import LensError
from lenslab.replications.grokking import grokking_checks
from lenslab.replications.lsa_gd import lsa_gd_experiment
from lenslab.replications.shakespeare import replicate_shakespeare as run_shakespeare


def test_shortened_lsa_gd_learns_towards_one_gd_step(tmp_path):
    exp = lsa_gd_experiment(tmp_path, steps=600, progress=False)
    assert exp["status"] == "completed"
    first, last = exp["curve"][0], exp["curve"][-1]
    assert first["step"] == 0 and last["step"] == 600
    assert last["mse"] < 0.6 * last["mse_zero"]  # well below predicting 0
    assert abs(last["rel_gap"]) < 0.05  # within 5% of the optimal GD step already
    assert last["sens_cos"] > first["sens_cos"] + 0.3 and last["sens_cos"] > 0.9


def test_replications_are_registered():
    from lenslab.replications import available

    names = available()
    assert {"induction", "lsa-gd", "icl-regression", "grokking", "shakespeare-char",
            "addition-format", "length-positions", "question-formation"} <= set(names)


def _length_test(position, exact):
    from lenslab.probes.length import LengthTest

    lengths = list(range(1, 21))
    return LengthTest("run", 100, "copy", f"GPT, {position} positions", [1, 10], lengths, exact,
                      [[e, e] for e in exact], exact, float(np.mean(exact[:10])), 10, 0.9, 256)


def test_length_positions_checks_compare_past_the_trained_lengths():
    from lenslab.replications.length_positions import length_checks

    fade = [1.0] * 10 + [0.6, 0.4, 0.2] + [0.0] * 7  # 0.12 past the range on average
    cliff = [1.0] * 10 + [0.0] * 10
    measured, short = length_checks({"none": _length_test("none", fade),
                                     "learned": _length_test("learned", cliff),
                                     "rope": _length_test("rope", cliff)})
    assert short == [] and measured["none"]["past_range"] == pytest.approx(0.12)
    weak = [0.8] * 10 + [0.05] + [0.0] * 9
    measured, short = length_checks({"none": _length_test("none", weak),
                                     "learned": _length_test("learned", cliff)})
    assert any("no positions: only 0.800 of the trained lengths" in s for s in short)
    assert any("no positions get 0.005, learned positions 0.000: not 0.1 better" in s
               for s in short)


def _grok_metrics(held_out):
    """Ten thousand full-batch steps: the loss falls like 2 * 0.99^s; at every evaluation the
    pairs whose swap was trained are right, the others ``held_out(step)``."""
    recs = []
    for s in range(0, 10_000):
        r = {"step": s, "loss": 2.0 * 0.99 ** s, "skipped": False}
        if (s + 1) % 100 == 0:
            r.update(test_acc=0.5, test_acc_swap_trained=1.0,
                     test_acc_swap_held_out=held_out(s + 1), train_acc=1.0, train_loss=r["loss"],
                     test_loss=1.0)
        recs.append(r)
    return recs


def test_grokking_checks_read_the_targets_from_the_metrics():
    measured, short = grokking_checks(_grok_metrics(lambda s: 0.02 if s < 6000 else 0.97))
    assert short == []
    assert measured["first_step_train_loss_below_1e-3"] == 758  # 2 * 0.99^757 < 1e-3
    assert measured["first_step_held_out_swap_held_out_0.9"] == 6000
    assert measured["accuracy_at"][3500] == {"swap held out": 0.02, "swap trained": 1.0,
                                             "all held out": 0.5}
    measured, short = grokking_checks(_grok_metrics(lambda s: 0.3 if s < 9000 else 0.5))
    assert any("0.300 >= 0.1 right at step 3500" in s for s in short)
    assert any("did not reach 0.9 by step 10000 (final 0.500)" in s for s in short)


SHAKESPEARE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "tinyshakespeare.txt"


@pytest.mark.skipif(not SHAKESPEARE.is_file(), reason=f"tiny Shakespeare not found at {SHAKESPEARE} "
                    "(clone the shared data beside the repo)")
def test_shortened_shakespeare_char_learns_and_reports(tmp_path):
    """nanoGPT's recipe for 60 steps on the first 200,000 characters: below the unigram loss on
    the whole validation split, a page with the curve and samples, and a FAIL that names the
    1.90 target (the full run is in `make replicate`)."""
    from lenslab.replications import run

    data = tmp_path / "data"
    data.mkdir()
    (data / "tinyshakespeare.txt").write_text(SHAKESPEARE.read_text()[:200_000])
    res = run_shakespeare(tmp_path / "out", progress=False, steps=60, data_dir=data)
    m = res.measured
    assert m["steps"] == 60 and m["vocabulary"] == 62  # this slice lacks 3 of the 65 characters
    assert m["val_tokens_scored"] == 19_999
    assert m["val_loss_whole_split"] < 2.9  # unigram entropy of these characters is about 3.3
    assert not res.passed and "1.9 nats per character" in res.line()
    page = res.html.read_text()
    assert "<svg" in page and "Samples" in page and "nanoGPT" in page
    with pytest.raises(LensError, match="tinyshakespeare.txt not found in .*--data DIR"):
        run("shakespeare-char", tmp_path / "o2", progress=False, data_dir=tmp_path / "nowhere")


def test_init_shakespeare_points_at_the_corpus():
    from lenslab.examples import example_config, example_toml

    text = example_toml("shakespeare", "/data/shakespeare.txt")
    assert 'paths = ["/data/shakespeare.txt"]' in text and "karpathy/char-rnn" in text
    cfg = example_config("shakespeare")
    assert (cfg.model.n_layer, cfg.model.d_model, cfg.model.n_ctx, cfg.optim.batch_size) == (4, 128, 64, 12)
    with pytest.raises(LensError, match="generates its data"):
        example_config("induction", "x.txt")

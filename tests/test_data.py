"""Tasks: batches are pure functions of (seed, index); formats are what the docs say."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lenslab.config import AdditionData, InductionData, ModularAdditionData, TextData
from lenslab.data import (
    IGNORE,
    AdditionTask,
    DataCursor,
    InductionTask,
    ModularAdditionTask,
    TextTask,
)
from lenslab.errors import DataError


def test_induction_batches_are_deterministic_and_periodic():
    t = InductionTask(InductionData(vocab_size=50, seq_len=40, period_min=4, period_max=12), seed=1)
    x, y = t.batch(7, 16)
    x2, y2 = t.batch(7, 16)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    assert not torch.equal(x, t.batch(8, 16)[0])
    assert not torch.equal(x, InductionTask(t.cfg, seed=2).batch(7, 16)[0])
    seqs, periods = t.sample(np.random.default_rng(0), 64)
    assert len(set(periods.tolist())) > 3  # random periods: position alone cannot predict
    for s, p in zip(seqs, periods):
        assert np.array_equal(s[p:], s[:-p])
    assert torch.equal(x[:, 1:], y[:, :-1])


def test_addition_format_and_mask():
    t = AdditionTask(AdditionData(digits=3, base=10, format="plain"), seed=0)
    x, y = t.encode(np.array([999, 12]), np.array([1, 345]))
    toks = t.token_str(x[0].tolist() + [y[0, -1].item()])
    assert "".join(toks) == "999+001=1000"
    assert (y[:, :-4] == IGNORE).all() and (y[:, -4:] != IGNORE).all()
    r = AdditionTask(AdditionData(digits=3, base=10, format="reversed"), seed=0)
    x, y = r.encode(np.array([12]), np.array([345]))
    assert y[0, -4:].tolist() == [7, 5, 3, 0]  # 357 written least significant first
    b2 = AdditionTask(AdditionData(digits=4, base=2), seed=0)
    x, y = b2.encode(np.array([0b1111]), np.array([0b0001]))
    assert y[0, -5:].tolist() == [0, 0, 0, 0, 1]  # 10000 reversed


def test_modular_addition_split_is_seeded_and_disjoint():
    t = ModularAdditionTask(ModularAdditionData(p=13, train_fraction=0.3), seed=4)
    tr = {tuple(p) for p in t.train_pairs.tolist()}
    te = {tuple(p) for p in t.test_pairs.tolist()}
    assert not tr & te and len(tr) + len(te) == 169 and len(tr) == round(0.3 * 169)
    x, y = t.batch(0, 0)
    assert torch.equal(y[:, 2], (x[:, 0] + x[:, 1]) % 13)
    assert {tuple(p) for p in ModularAdditionTask(t.cfg, seed=4).train_pairs.tolist()} == tr


def test_modular_addition_unordered_split_keeps_both_orders_together():
    ordered = ModularAdditionTask(ModularAdditionData(p=59), seed=0)
    train = {tuple(p) for p in ordered.train_pairs.tolist()}
    leaked = sum((b, a) in train for a, b in ordered.test_pairs.tolist())
    assert leaked / len(ordered.test_pairs) > 0.25  # ordered: many test pairs' swaps are trained
    t = ModularAdditionTask(ModularAdditionData(p=59, split="unordered"), seed=0)
    train = {tuple(p) for p in t.train_pairs.tolist()}
    assert all((b, a) in train for a, b in train)
    assert not any((b, a) in train for a, b in t.test_pairs.tolist())
    assert len(train) + len(t.test_pairs) == 59 * 59
    assert abs(len(train) / 59 ** 2 - 0.3) < 0.01


@pytest.mark.parametrize("level", ["byte", "char", "bpe"])
def test_text_levels(tmp_path, level):
    f = tmp_path / "c.txt"
    f.write_text("the quick brown fox jumps over the lazy dog. " * 60 + "naïve café ✓")
    t = TextTask(TextData(paths=[str(f)], level=level, seq_len=16, bpe_vocab_size=300), seed=0)
    x, y = t.batch(3, 4)
    assert x.shape == (4, 16) and torch.equal(x[:, 1:], y[:, :-1])
    assert int(x.max()) < t.vocab_size
    assert torch.equal(x, t.batch(3, 4)[0])
    if level == "bpe":
        t.save_artifacts(tmp_path)
        again = TextTask(t.cfg, 0, run_dir=tmp_path)  # decodes with the saved tokenizer
        assert again.encode("the lazy dog") == t.encode("the lazy dog")


def test_text_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        TextTask(TextData(paths=[str(tmp_path / "no.txt")]), 0)
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"ok\xff" * 100)
    with pytest.raises(DataError, match="offset 2"):
        TextTask(TextData(paths=[str(bad)], level="char", seq_len=8), 0)
    TextTask(TextData(paths=[str(bad)], level="byte", seq_len=8), 0)  # bytes are fine
    short = tmp_path / "short.txt"
    short.write_text("abc")
    with pytest.raises(DataError, match="fewer than one window"):
        TextTask(TextData(paths=[str(short)], seq_len=8), 0)


def test_cursor_skips_ranges_and_roundtrips():
    c = DataCursor()
    assert [c.take() for _ in range(3)] == [0, 1, 2]
    c.add_skip(3, 5)
    c.add_skip(6, 6)
    assert c.take() == 7
    d = DataCursor()
    d.load_state_dict(c.state_dict())
    assert d.take() == 8 and d.skip == [(3, 5), (6, 6)]


def test_modular_addition_logs_held_out_pairs_by_whether_their_swap_was_trained():
    import torch

    from lenslab.config import ModularAdditionData
    from lenslab.data import ModularAdditionTask

    task = ModularAdditionTask(ModularAdditionData(p=13, train_fraction=0.3), seed=0)
    swap = task.swap_trained()
    assert swap.shape == (len(task.test_pairs),) and 0.15 < swap.mean() < 0.45
    a, b = task.test_pairs[swap][0]
    assert any((r == [b, a]).all() for r in task.train_pairs)

    class Commutes(torch.nn.Module):  # answers a + b only for pairs whose swap it "saw"
        def forward(self, x):
            seen = {(int(b), int(a)) for a, b in task.train_pairs}
            out = torch.zeros(len(x), 3, task.vocab_size)
            for i, (a, b, _) in enumerate(x.tolist()):
                out[i, 2, ((a + b) % task.p) if (a, b) in seen else 0] = 1.0
            return out

    m = task.metrics(Commutes(), "cpu")
    assert m["test_acc_swap_trained"] == 1.0 and m["test_acc_swap_held_out"] < 0.2


def test_addition_with_a_fixed_training_set_never_evaluates_on_it():
    """n_train distinct questions from the seed; training draws only those, evaluation and the
    probes only others (a sample-efficiency study's held-out set)."""
    from lenslab.config import AdditionData
    from lenslab.data.synthetic import AdditionTask

    def questions(x):
        a = (x[:, 0:3] * torch.tensor([100, 10, 1])).sum(1)
        b = (x[:, 4:7] * torch.tensor([100, 10, 1])).sum(1)
        return set((a * 1000 + b).tolist())

    t = AdditionTask(AdditionData(n_train=500, format="plain"), seed=4)
    pool = set((t.train_pairs[:, 0] * 1000 + t.train_pairs[:, 1]).tolist())
    assert len(pool) == 500
    assert all(questions(t.batch(i, 64)[0]) <= pool for i in range(5))
    held = set().union(*(questions(x) for x, _ in t.eval_batches(4, 256)))
    assert not held & pool and len(held) > 900
    a, b = t.held_out(np.random.default_rng(0), 2000)
    assert not set((a * 1000 + b).tolist()) & pool
    again = AdditionTask(AdditionData(n_train=500, format="plain"), seed=4)
    assert np.array_equal(again.train_pairs, t.train_pairs)
    with pytest.raises(ValueError, match="at most half"):
        AdditionData(digits=1, n_train=60)


def test_unpadded_addition_is_written_as_numbers_are():
    """pad = false: 7+35=42 and its end token; the answer (and only it, with the end token) is
    scored; greedy answers are read up to the end token, whatever the question's length."""
    from lenslab.config import AdditionData
    from lenslab.data.synthetic import AdditionTask

    t = AdditionTask(AdditionData(pad=False, format="reversed"), seed=0)
    x, y = t.encode(np.array([7, 999]), np.array([35, 1]))
    assert "".join(t.token_str(x[0].tolist())) == "7+35=24$$$$$"
    assert "".join(t.token_str(x[1].tolist())) == "999+1=0001$$"
    scored = [t.token_str([v])[0] for v in y[0].tolist() if v != -100]
    assert scored == ["2", "4", "$"] and (y[0, :4] == -100).all()

    class Oracle(torch.nn.Module):
        """Answers as the data does: the next token of the sequence the question starts."""

        def forward(self, seq):
            out = torch.zeros(*seq.shape, t.vocab_size)
            for i, row in enumerate(seq.tolist()):
                eq = row.index(t.eq)
                a = int("".join(map(str, row[:row.index(t.plus)])))
                b = int("".join(map(str, row[row.index(t.plus) + 1:eq])))
                full = row[:eq + 1] + t._question(a, b)[1] + [t.end] * 8
                out[i, -1, full[len(row)]] = 1
            return out

    targets, preds = t.answers(Oracle(), "cpu", np.array([7, 123, 5]), np.array([35, 0, 995]))
    assert targets == preds == [[2, 4], [3, 2, 1], [0, 0, 0, 1]]
    assert t.metrics(Oracle(), "cpu", n=1, batch_size=16) == {"exact_match": 1.0, "digit_acc": 1.0}

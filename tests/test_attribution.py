"""Attribution: rollout is a proper mixing matrix; ablation finds the heads a task needs."""

from __future__ import annotations

import torch

from lenslab.attention import GPTLens
from lenslab.attention.attribution import head_importance, rollout
from lenslab.attention.heads import random_battery


def test_rollout_rows_are_distributions_and_causal(induction_runs):
    lens = GPTLens.from_run(induction_runs[2])
    ids = torch.tensor([random_battery(lens, 1, length=12, seed=0)[0].ids])
    R = rollout(lens, ids)
    assert R.shape == (24, 24)
    torch.testing.assert_close(R.sum(-1), torch.ones(24))
    assert torch.all(R.triu(1).abs() < 1e-7)  # nothing flows from the future


def test_ablation_hurts_most_where_the_circuit_is(induction_runs):
    lens = GPTLens.from_run(induction_runs[2])
    batch = torch.tensor([p.ids for p in random_battery(lens, 8, seed=1)])
    imp = head_importance(lens, batch)
    assert imp.zero.shape == (2, 4) and imp.mean.shape == (2, 4)
    # removing every head of the circuit's layer 0 at once is worse than any single other head
    both = torch.ones(2, 4)
    both[0] = 0
    f0 = torch.nn.functional.cross_entropy
    logits = lens.model(batch, head_scale=both)
    broken = f0(logits[:, :-1].reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1)).item()
    assert broken - imp.baseline > 1.0  # no previous-token information: induction collapses
    assert imp.zero.max() > 0.02  # some single head matters
    # a logit difference names two tokens: the next token of the repeat against a wrong one
    good, bad = int(batch[0, 12]), int(batch[0, 12] + 1) % lens.vocab_size
    ld = head_importance(lens, batch[:1, :12 + 12], metric="logit_diff", good=good, bad=bad)
    assert ld.baseline != 0 and ld.zero.shape == (2, 4)

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


def test_hook_ablation_matches_head_scale(induction_runs):
    """Zero ablation edits the head's slice of the output projection's input; on lenslab's GPT
    that must equal scaling the head's output by 0 through the model's own head_scale."""
    lens = GPTLens.from_run(induction_runs[2])
    batch = torch.tensor([p.ids for p in random_battery(lens, 4, seed=3)])
    imp = head_importance(lens, batch)
    f0 = torch.nn.functional.cross_entropy
    for layer, h in ((0, 1), (1, 2)):
        s = torch.ones(2, 4)
        s[layer, h] = 0
        logits = lens.model(batch, head_scale=s)
        loss = f0(logits[:, :-1].reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1)).item()
        assert abs((loss - imp.baseline) - imp.zero[layer, h].item()) < 1e-5


def test_hugging_face_head_ablation_on_minilm(minilm):
    """MiniLM is an encoder: the default metric is the shift of its mean-pooled embedding.
    Every head moves it a little; no head moves it as much as a whole layer does."""
    toks = [minilm.tokenize(t).ids for t in ("the cat sat on the mat", "a dog ran in the park",
                                             "she read the old red book", "we walked to the big shop")]
    n = min(map(len, toks))
    ids = torch.tensor([t[:n - 1] + t[-1:] for t in toks])  # same length, closing [SEP] kept
    imp = head_importance(minilm, ids)
    assert imp.metric_name == "embedding_shift" and abs(imp.baseline) < 1e-6
    assert imp.zero.shape == (6, 12) and torch.all(imp.zero >= -1e-6) and imp.zero.max() > 1e-3
    assert torch.all(torch.isfinite(imp.mean))
    import pytest

    from lenslab.errors import ModelError

    with pytest.raises(ModelError, match="not a causal language model"):
        head_importance(minilm, ids, metric="loss")

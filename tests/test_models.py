"""Models: shapes, causal masking, the capture path agrees with the fused path, counts."""

from __future__ import annotations

import pytest
import torch

from lenslab.config import GPTConfig, LSTMConfig
from lenslab.errors import ModelError
from lenslab.models import GPT, LSTM


def _gpt(**kw):
    torch.manual_seed(0)
    base = dict(vocab_size=32, n_layer=3, n_head=4, d_model=32, n_ctx=16)
    base.update(kw)
    return GPT(GPTConfig(**base)).eval()


def test_capture_path_matches_fused_attention_and_patterns_are_causal():
    m = _gpt()
    x = torch.randint(0, 32, (2, 16))
    pats = []
    fast = m(x)
    slow = m(x, attn_hook=lambda layer, p: pats.append((layer, p)))
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-5)
    assert [layer for layer, _ in pats] == [0, 1, 2]
    p = pats[0][1]
    assert p.shape == (2, 4, 16, 16)
    torch.testing.assert_close(p.sum(-1), torch.ones(2, 4, 16))
    assert torch.all(p.triu(diagonal=1) == 0)  # no query sees the future
    assert m.attention_patterns(x).shape == (2, 3, 4, 16, 16)


def test_capture_path_in_blocks_with_a_partial_last_block():
    """150 tokens: two full 64-row blocks and a partial one, against the fused path."""
    m = _gpt(n_ctx=160)
    x = torch.randint(0, 32, (2, 150))
    pats = []
    torch.testing.assert_close(m(x), m(x, attn_hook=lambda layer, p: pats.append(p)), rtol=1e-5, atol=1e-5)
    p = pats[-1]
    assert p.shape == (2, 4, 150, 150) and torch.all(p.triu(diagonal=1) == 0)
    torch.testing.assert_close(p.sum(-1), torch.ones(2, 4, 150))


def test_future_tokens_do_not_change_past_logits():
    m = _gpt()
    x = torch.randint(0, 32, (1, 16))
    y = x.clone()
    y[0, 10:] = (y[0, 10:] + 1) % 32
    torch.testing.assert_close(m(x)[:, :10], m(y)[:, :10])


def test_head_scale_zero_removes_a_heads_contribution():
    m = _gpt(attn_only=True, n_layer=1)
    x = torch.randint(0, 32, (1, 12))
    full = m(x)
    scale = torch.ones(1, 4)
    torch.testing.assert_close(m(x, head_scale=scale), full, rtol=1e-5, atol=1e-5)
    scale[0, 2] = 0
    assert not torch.allclose(m(x, head_scale=scale), full)


def test_parameter_counts():
    m = _gpt(tie_embeddings=True)
    d, L = 32, 3
    per_block = (4 * d * d + 4 * d) + (8 * d * d + 5 * d) + 4 * d  # attn, mlp, two layernorms
    assert m.num_params(non_embedding=True) == L * per_block + 2 * d  # + final norm
    assert m.num_params(non_embedding=False) == m.num_params() + 32 * d + 16 * d
    untied = _gpt(tie_embeddings=False)
    assert untied.num_params() == m.num_params() + 32 * d  # unembedding counts when untied


def test_norm_free_relu_variant_as_in_nanda_et_al():
    """norm = "none" drops every LayerNorm (no parameters), activation = "relu" changes the MLP,
    init_std scales the initial weights; causal masking and the capture path are unchanged."""
    m = _gpt(norm="none", activation="relu", tie_embeddings=False, init_std=0.07)
    assert not any(isinstance(x, torch.nn.LayerNorm) for x in m.modules())
    assert not any("ln" in name for name, _ in m.named_parameters())
    assert m.tok_emb.weight.std().item() == pytest.approx(0.07, rel=0.1)
    h = torch.randn(3, 32)
    assert torch.equal(m.blocks[0].mlp.act(h), torch.relu(h))
    x = torch.randint(0, 32, (2, 16))
    pats = []
    torch.testing.assert_close(m(x), m(x, attn_hook=lambda layer, p: pats.append(p)), rtol=1e-5, atol=1e-5)
    y = x.clone()
    y[:, 9:] = (y[:, 9:] + 1) % 32
    torch.testing.assert_close(m(x)[:, :9], m(y)[:, :9])


def test_context_too_long_is_a_clear_error():
    with pytest.raises(ModelError, match="context is 16"):
        _gpt()(torch.zeros(1, 17, dtype=torch.long))


def test_lstm_same_interface_and_refuses_attention():
    torch.manual_seed(0)
    m = LSTM(LSTMConfig(vocab_size=20, d_model=16, n_ctx=10))
    x = torch.randint(0, 20, (3, 10))
    assert m(x).shape == (3, 10, 20)
    assert m.num_params() > 0
    with pytest.raises(ModelError, match="no attention"):
        m(x, attn_hook=lambda *_: None)


def test_gpt_learns_to_copy():
    """A model that learns: the repeated half of induction sequences becomes predictable."""
    from lenslab.config import InductionData
    from lenslab.data import InductionTask

    torch.manual_seed(0)
    task = InductionTask(InductionData(vocab_size=16, seq_len=16, period_min=8, period_max=8), 0)
    m = GPT(GPTConfig(vocab_size=16, n_layer=2, n_head=2, d_model=32, n_ctx=16, attn_only=True,
                      tie_embeddings=False))
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3)
    for i in range(250):
        x, y = task.batch(i, 32)
        loss = torch.nn.functional.cross_entropy(m(x).reshape(-1, 16), y.reshape(-1))
        opt.zero_grad(); loss.backward(); opt.step()
    rep = task.metrics(m, torch.device("cpu"), n=1, batch_size=64)["repeat_loss"]
    assert rep < 0.5 * 2.77  # far below chance (ln 16): the model copies from context

"""One capture interface for own GPT runs and Hugging Face models."""

from __future__ import annotations

import pytest
import torch

from lenslab.attention import GPTLens, HFLens, load_lens
from lenslab.errors import DataError, ModelError


@pytest.fixture(scope="module")
def tiny_gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(n_layer=2, n_head=2, n_embd=32, vocab_size=60, n_positions=24,
                     bos_token_id=0, eos_token_id=0)
    cfg._attn_implementation = "eager"
    return HFLens(GPT2LMHeadModel(cfg), None, "tiny-gpt2")


def test_hf_causal_capture_and_streaming_agree(tiny_gpt2):
    ids = torch.randint(0, 60, (1, 20))
    pats = tiny_gpt2.capture(ids)
    assert pats.shape == (2, 2, 20, 20) and tiny_gpt2.causal
    assert torch.all(pats.triu(1) == 0)
    seen = []
    tiny_gpt2.capture(ids, on_layer=lambda layer, p: seen.append((layer, p.shape)))
    assert seen == [(0, (1, 2, 20, 20)), (1, (1, 2, 20, 20))]
    ref = tiny_gpt2.model(ids, output_attentions=True).attentions
    torch.testing.assert_close(pats[1], ref[1][0])


def test_sdpa_model_is_refused_with_a_clear_message():
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=30, n_positions=8)
    cfg._attn_implementation = "sdpa"
    with pytest.raises(ModelError, match="eager"):
        HFLens(GPT2LMHeadModel(cfg), None, "fused")


def test_minilm_tokens_offsets_and_patterns(minilm):
    text = "Attention isn't all you need."
    t = minilm.tokenize(text)
    assert t.strings[0] == "[CLS]" and t.strings[-1] == "[SEP]"
    assert t.special[0] and t.special[-1] and t.offsets[0] is None
    for s, off in zip(t.strings[1:-1], t.offsets[1:-1]):
        assert text[off[0]:off[1]].lower() == s.replace("##", "")
    p = minilm.capture(t.tensor())
    assert p.shape == (6, 12, len(t), len(t))
    torch.testing.assert_close(p.sum(-1), torch.ones(6, 12, len(t)))


def test_text_longer_than_context_and_empty_text(minilm):
    long = "word " * 600
    with pytest.raises(DataError, match="--truncate"):
        minilm.tokenize(long)
    t = minilm.tokenize(long, truncate=True)
    assert len(t) == minilm.n_ctx and t.truncated and t.strings[-1] == "[SEP]"
    with pytest.raises(DataError, match="empty"):
        minilm.tokenize("   ")


def test_run_folder_lens_tokenizes_task_strings(induction_runs):
    lens = load_lens(induction_runs[2])
    assert isinstance(lens, GPTLens) and lens.n_layer == 2
    t = lens.tokenize("t1 t2 t3 t1 t2")
    assert t.ids == [1, 2, 3, 1, 2] and t.offsets[1] == (3, 5)
    with pytest.raises(DataError, match="not in the model's vocabulary"):
        lens.tokenize("t1 banana")
    with pytest.raises(ModelError, match=r"layers 0\.\.1, not \[5\]"):
        lens.capture(t.tensor()[0], layers=[5])


def test_unknown_model_fails_fast_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError, match="HF_HUB_OFFLINE"):
        load_lens("some-org/some-model")
    (tmp_path / "x").mkdir()
    with pytest.raises(ModelError, match="neither"):
        load_lens(tmp_path / "x")

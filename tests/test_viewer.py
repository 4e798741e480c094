"""The offline attention viewer: escaping of the JSON payload, quantization, size cap, head info,
notebook output, and the shipped JavaScript's safety rules (checked statically here; the browser
test proves it in Chromium)."""

from __future__ import annotations

import base64
import html
import json
import re

import numpy as np
import pytest

from lenslab.attention.viewer import (
    Viewer,
    ViewerInput,
    assets,
    build_payload,
    dequantize,
    load_head_info,
    quantize,
    render_viewer,
    safe_json,
    token_title,
    view,
    viewer_fragment,
    visible_token,
)
from lenslab.errors import DataError

HOSTILE = [
    '</script><img src=x onerror="window.__pwned=1">',
    "\"'><svg onload=alert(1)>",
    "\u202e",
    "\u200f",
    "\x00",
    "&lt;b&gt;",
    "</SCRIPT >",
    "<!--",
    "\u2028\u2029",
]


def patterns(n: int, n_layer: int = 2, n_head: int = 3, seed: int = 0) -> np.ndarray:
    """Random attention rows (softmax of noise): [layer, head, n, n], rows sum to 1."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_layer, n_head, n, n)) * 2
    e = np.exp(x - x.max(-1, keepdims=True))
    return (e / e.sum(-1, keepdims=True)).astype(np.float32)


def payload_of(page: str) -> dict:
    m = re.search(r"<script type='application/json' class='lv-data'>(.*?)</script>", page, re.S)
    assert m, "no data script"
    return json.loads(m.group(1))


def test_safe_json_cannot_close_the_script_and_round_trips():
    obj = {"tokens": HOSTILE, "nested": {"x": "a & b < c > d"}}
    s = safe_json(obj)
    for bad in ("<", ">", "&", "\u2028", "\u2029", "\x00"):
        assert bad not in s
    assert s.isascii()
    assert json.loads(s) == obj


def test_page_keeps_hostile_tokens_inside_the_json():
    toks = ["[CLS]"] + HOSTILE + ["[SEP]"]
    page = render_viewer([{"title": "</title><script>alert(1)</script>", "tokens": toks,
                           "patterns": patterns(len(toks))}])
    # every "</script" in the page closes a script lenslab opened, never one from data
    assert page.lower().count("</script") == page.lower().count("<script")
    data = re.search(r"class='lv-data'>(.*?)</script>", page, re.S).group(1)
    rest = page.replace(data, "")
    for trace in ("<img", "<svg", "onerror", "onload", "alert(", "__pwned"):
        assert trace not in rest, trace  # the payload only exists as escaped JSON text
    assert "</title><script>alert" not in page
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    p = payload_of(page)
    inp = p["inputs"][0]
    assert inp["tip"][1].startswith(HOSTILE[0])  # raw string kept for the tooltip
    assert inp["title"] == "</title><script>alert(1)</script>"


def test_visible_token_shows_invisible_characters():
    assert visible_token("\x00") == "␀"
    assert visible_token("\u202e") == "⟨RLO⟩"
    assert visible_token("ab\u200fc") == "ab⟨RLM⟩c"
    assert visible_token("   ") == "␣␣␣"
    assert visible_token("\t") == "␉"
    assert visible_token(" the") == "␣the"
    assert visible_token("") == "⟨empty⟩"
    assert visible_token("\u0301x").startswith("◌")
    assert visible_token("héllo 😀") == "héllo 😀"
    assert visible_token("👨\u200d👩") == "👨\u200d👩"  # joiners inside emoji stay
    long = "x" * 500
    assert len(visible_token(long)) == 40 and visible_token(long).endswith("…")
    t = token_title("\u202eabc")
    assert t.startswith("\u202eabc") and "U+202E" in t
    assert "(5,000 characters)" in token_title("y" * 5000)


def test_quantization_round_trip_within_1_over_255():
    p = patterns(37, seed=1)
    q = quantize(p)
    assert q.dtype == np.uint8 and q.shape == p.shape
    assert np.abs(dequantize(q) - p).max() <= 0.5 / 255 + 1e-7
    assert quantize(q) is q  # already quantized: unchanged
    assert quantize(np.array([np.nan, -1.0, 2.0]))[:].tolist() == [0, 0, 255]
    # the payload carries exactly these bytes, [head, q, k] row-major
    data = build_payload([{"title": "t", "tokens": [str(i) for i in range(37)], "patterns": p}])[0]
    raw = np.frombuffer(base64.b64decode(data["inputs"][0]["data"]), dtype=np.uint8)
    assert np.array_equal(raw.reshape(6, 37, 37), q.reshape(6, 37, 37))
    assert np.abs(raw.reshape(p.shape) / 255.0 - p).max() <= 1 / 255


def test_torch_input_and_head_subset():
    torch = pytest.importorskip("torch")
    p = torch.tensor(patterns(5))
    data, _ = build_payload([("a", list("abcde"), p)], heads=[(1, 2), (0, 1)], select=(1, 2))
    assert data["heads"] == [[0, 1], [1, 2]] and data["select"] == [1, 2]
    raw = np.frombuffer(base64.b64decode(data["inputs"][0]["data"]), dtype=np.uint8)
    assert np.array_equal(raw.reshape(2, 5, 5)[1], quantize(p.numpy())[1, 2])
    with pytest.raises(DataError, match="not in a 2-layer"):
        build_payload([("a", list("abcde"), p)], heads=[(5, 0)])


def test_size_cap_cuts_tokens_with_a_visible_notice():
    n = 300
    toks = [f"t{i}" for i in range(n)]
    frag = viewer_fragment([{"title": "long input", "tokens": toks, "patterns": patterns(n, 1, 2)}],
                           max_tokens=100)
    assert "showing the first 100 of 300 tokens" in frag
    assert "class='lv-notice'" in frag
    m = re.search(r"class='lv-data'>(.*?)</script>", frag, re.S)
    data = json.loads(m.group(1))
    assert data["inputs"][0]["n"] == 100 and data["inputs"][0]["n_total"] == 300
    assert len(base64.b64decode(data["inputs"][0]["data"])) == 2 * 100 * 100


def test_byte_cap_cuts_tokens_then_drops_inputs():
    small = [{"title": f"in{i}", "tokens": [str(j) for j in range(64)],
              "patterns": patterns(64, 1, 2, seed=i)} for i in range(3)]
    data, notes = build_payload(small, max_bytes=3 * 2 * 40 * 40)  # room for 40 tokens each
    assert [x["n"] for x in data["inputs"]] == [40, 40, 40]
    assert any("cut to 40 tokens" in n and "MiB" in n for n in notes)
    data, notes = build_payload(small, max_bytes=2 * 20 * 20)  # not even 16 tokens for three
    assert len(data["inputs"]) < 3
    assert any("inputs are not shown" in n for n in notes)
    total = sum(len(base64.b64decode(x["data"])) for x in data["inputs"])
    assert total <= 2 * 20 * 20


def test_head_info_from_list_path_and_mapping(tmp_path):
    entries = [{"layer": 1, "head": 2, "class": "induction", "scores": {"induction": 0.91,
                "entropy": float("nan")}, "null": {"induction": {"mean": 0.05, "q95": 0.1}}},
               {"layer": 0, "head": 0, "class": "previous-token", "scores": {"prev": 0.8},
                "null": {"prev": 0.1}}]
    f = tmp_path / "heads.json"
    f.write_text(json.dumps({"heads": entries}, allow_nan=True))
    for src in (entries, f, str(f), {(1, 2): entries[0], "0,0": entries[1]}):
        info = load_head_info(src)
        assert info[(1, 2)]["class"] == "induction"
        assert info[(1, 2)]["scores"] == {"induction": 0.91, "entropy": None}
        assert info[(1, 2)]["null"]["induction"] == "mean 0.05, q95 0.1"
        assert info[(1, 2)]["null_detail"]["induction"] == "mean 0.05, q95 0.1"
        assert info[(0, 0)]["null"] == {"prev": "0.1"}
    page = render_viewer([("x", list("abcd"), patterns(4))], head_info=f)
    p = payload_of(page)
    assert {(e["layer"], e["head"], e["class"]) for e in p["info"]} == {
        (1, 2, "induction"), (0, 0, "previous-token")}
    bad = tmp_path / "bad.json"
    bad.write_bytes(b"\xff\xfe not json")
    with pytest.raises(DataError, match="not a JSON heads file"):
        load_head_info(bad)
    with pytest.raises(DataError, match="not found"):
        load_head_info(tmp_path / "missing.json")
    # heads.json from `lenslab heads`: null summaries show their threshold first
    taxo = [{"layer": 0, "head": 0, "class": "sink", "scores": {"sink": 0.9},
             "null": {"sink": {"reinit_mean": 0.1, "reinit_hi": 0.2, "perm_mean": 0.3,
                               "perm_hi": 0.4, "threshold": 0.5}}}]
    assert load_head_info(taxo)[(0, 0)]["null"]["sink"] == "threshold 0.5"
    assert load_head_info(taxo)[(0, 0)]["null_detail"]["sink"].startswith(
        "threshold 0.5, reinit_mean 0.1")
    with pytest.raises(DataError, match="needs 'layer' and 'head'"):
        load_head_info([{"class": "x"}])


def test_bad_inputs_are_data_errors():
    with pytest.raises(DataError, match="q = k = 3 tokens"):
        render_viewer([("a", list("abc"), patterns(4))])
    with pytest.raises(DataError, match="same model"):
        render_viewer([("a", list("abc"), patterns(3, 2, 3)),
                       ("b", list("abc"), patterns(3, 1, 3))])
    with pytest.raises(DataError, match="at least one input"):
        render_viewer([])
    with pytest.raises(DataError, match="lacks 'patterns'"):
        render_viewer([{"title": "a", "tokens": ["a"]}])


def test_repr_html_is_a_sandboxed_frame_and_write_is_a_full_page(tmp_path):
    v = Viewer([ViewerInput("a <b>", ["[CLS]", "<b>", "[SEP]"], patterns(3), [True, False, True])],
               head_info=[{"layer": 0, "head": 1, "class": "sink", "scores": {"sink": 0.9}}])
    frame = v._repr_html_()
    assert frame.startswith("<iframe sandbox='allow-scripts'")
    srcdoc = re.search(r'srcdoc="(.*)"', frame, re.S).group(1)
    assert "<" not in srcdoc and '"' not in srcdoc  # fully attribute-escaped
    inner = html.unescape(srcdoc)
    assert inner == v.html() and "Content-Security-Policy" in inner
    assert payload_of(inner)["info"][0]["class"] == "sink"
    out = v.write(tmp_path / "v.html")
    assert out.read_text(encoding="utf-8") == v.html()


class _FakeLens:
    """Duck-typed LensModel: 2 layers x 2 heads, one token per character, streams layers."""

    name, n_layer, n_head, n_ctx, causal = "fake", 2, 2, 8, True

    def tokenize(self, text, truncate=False):
        from lenslab.attention.capture import Tokens

        if not text.strip():
            raise DataError("the text is empty; give at least one word")
        chars = list(text)[: self.n_ctx] if truncate else list(text)
        if len(chars) > self.n_ctx:
            raise DataError("too long; pass --truncate")
        return Tokens(text, list(range(len(chars))), chars, [(i, i + 1) for i in range(len(chars))],
                      [False] * len(chars), truncated=len(chars) < len(text))

    def capture(self, ids, on_layer=None):
        import torch

        n = ids.shape[-1]
        p = torch.tril(torch.ones(n, n))
        p = p / p.sum(-1, keepdim=True)
        for layer in range(self.n_layer):
            on_layer(layer, p.expand(1, self.n_head, n, n))


def test_view_streams_quantized_patterns_and_notes_truncation():
    v = view(_FakeLens(), ["abc", "a long text"], truncate=True)
    data, notes = build_payload(v.inputs)
    assert [x["n"] for x in data["inputs"]] == [3, 8]
    assert v.inputs[0].patterns.dtype == np.uint8
    assert np.allclose(dequantize(v.inputs[0].patterns[1, 1, 2]), [1 / 3] * 3, atol=1 / 255)
    assert any("truncated to the model's context of 8" in n for n in notes)
    with pytest.raises(DataError, match="truncate"):
        view(_FakeLens(), "a long text")
    with pytest.raises(DataError, match="empty"):
        view(_FakeLens(), "  ")


def test_shipped_assets_follow_the_safety_rules():
    css, js = assets()
    code = re.sub(r"/\*.*?\*/", "", js, flags=re.S)  # the header comment names the rules
    code = re.sub(r"//[^\n]*", "", code)
    for banned in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(",
                   "new Function", "setAttribute(\"on", "http://", "https://", "fetch(",
                   "XMLHttpRequest", "import("):
        assert banned not in code, banned
    assert "textContent" in code
    assert "http" not in css and "url(" not in css and "@import" not in css

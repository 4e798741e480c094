"""An offline attention viewer: all-heads grid, head view (lines or heatmap), side-by-side inputs.

In the spirit of BertViz's head view and CircuitsVis's all-heads grid, but one self-contained
HTML file with no network access at all (the page carries a Content-Security-Policy that forbids
it) and safe with any token strings:

* the data travels as JSON inside ``<script type="application/json">`` with ``<``, ``>``, ``&``,
  U+2028 and U+2029 written as ``\\u003c``-style escapes (see :func:`safe_json`), so no token can
  close the script element or start markup;
* the page's script (``attention/static/viewer.js``, inlined) inserts every token string with
  ``textContent`` / ``createTextNode``, never ``innerHTML``;
* invisible or misleading characters are shown visibly (NUL as ``␀``, right-to-left marks
  as ``⟨RLM⟩``, whitespace-only tokens as ``␣``), see :func:`visible_token`; the raw string
  stays in the token's tooltip.

Large inputs: patterns are quantized to uint8 (``round(255 * w)``, at most 1/510 off) and sent
base64-encoded, and the page is capped (tokens per input, bytes of pattern data in all) with a
visible notice saying what was cut.

API::

    html = render_viewer([{"title": "a", "tokens": toks, "patterns": p}],  # p [layer, head, q, k]
                         head_info="runs/x/analysis/heads.json")
    v = view(lens, "The cat sat on the mat.")     # notebooks: v is displayed; v.write("v.html")
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence, Union

import numpy as np

from lenslab._io import atomic_write_text
from lenslab.attention.classes import label, parse_class
from lenslab.errors import DataError
from lenslab.html import Page, escape, notebook_frame

MAX_TOKENS = 256  # per input; attention to later tokens is cut (with a notice)
MAX_BYTES = 24 * 2**20  # quantized pattern bytes in one viewer (base64 adds a third)
MIN_TOKENS = 16  # below this a uniform token cut is useless: drop whole inputs instead
DISPLAY_CHARS = 40  # longer tokens are shortened on screen (full string in the tooltip)
TITLE_CHARS = 500  # raw string kept in the tooltip

HeadKey = tuple[int, int]


# ---------------------------------------------------------------------------- inputs


@dataclass
class ViewerInput:
    """One input to show: its title, token strings and attention patterns.

    ``patterns`` is ``[layer, head, q, k]``: floats in [0, 1] (attention weights) or uint8
    already quantized with :func:`quantize`. ``q == k == len(tokens)``.
    """

    title: str
    tokens: list[str]
    patterns: Any  # np.ndarray / torch.Tensor [layer, head, q, k]
    special: Optional[list[bool]] = None
    notes: list[str] = field(default_factory=list)  # shown as notices (e.g. "truncated")


def _as_input(x: Any, i: int) -> ViewerInput:
    if isinstance(x, ViewerInput):
        return x
    if isinstance(x, Mapping):
        try:
            return ViewerInput(str(x.get("title", f"input {i + 1}")), list(x["tokens"]),
                               x["patterns"], x.get("special"), list(x.get("notes", [])))
        except KeyError as e:
            raise DataError(f"viewer input {i + 1} lacks {e.args[0]!r}; give title, tokens "
                            "and patterns [layer, head, q, k]") from None
    if isinstance(x, (tuple, list)) and len(x) in (2, 3):
        if len(x) == 2:
            return ViewerInput(f"input {i + 1}", list(x[0]), x[1])
        return ViewerInput(str(x[0]), list(x[1]), x[2])
    raise DataError(f"viewer input {i + 1} is a {type(x).__name__}; give a dict with title, "
                    "tokens and patterns, or a ViewerInput")


def _to_numpy(p: Any) -> np.ndarray:
    if hasattr(p, "detach"):  # torch tensor, without importing torch here
        p = p.detach().cpu()
        if str(p.dtype) != "torch.uint8":
            p = p.float()
        p = p.numpy()
    return np.asarray(p)


def encode_input(x: Any) -> dict:
    """One viewer input as JSON-able data (patterns quantized, base64): what a result file
    keeps so that its page can show the viewer without the model."""
    it = _as_input(x, 0)
    q = quantize(it.patterns)
    return {"title": it.title, "tokens": list(it.tokens), "shape": list(q.shape),
            "special": [bool(s) for s in (it.special or [False] * len(it.tokens))],
            "data": base64.b64encode(np.ascontiguousarray(q).tobytes()).decode("ascii")}


def decode_input(d: Mapping) -> ViewerInput:
    """The inverse of :func:`encode_input`; a one-line :class:`DataError` for damaged data."""
    try:
        shape = tuple(int(v) for v in d["shape"])
        q = np.frombuffer(base64.b64decode(d["data"], validate=True), dtype=np.uint8)
        q = q.reshape(shape)
        return ViewerInput(str(d.get("title", "")), [str(t) for t in d["tokens"]], q,
                           list(d.get("special") or []) or None)
    except (KeyError, TypeError, ValueError) as e:
        raise DataError(f"a saved viewer input is damaged ({type(e).__name__}: {e})") from None


def quantize(patterns: Any) -> np.ndarray:
    """Attention weights in [0, 1] -> uint8 ``round(255 * w)`` (same shape). NaN becomes 0."""
    p = _to_numpy(patterns)
    if p.dtype == np.uint8:
        return p
    p = np.nan_to_num(p.astype(np.float32, copy=False), nan=0.0, posinf=1.0, neginf=0.0)
    return np.clip(np.rint(p * 255.0), 0, 255).astype(np.uint8)


def dequantize(q: np.ndarray) -> np.ndarray:
    """uint8 codes -> float32 weights ``q / 255`` (within 1/510 of the original)."""
    return np.asarray(q, dtype=np.float32) / 255.0


# ---------------------------------------------------------------------------- safe text

_BIDI = {0x061C: "ALM", 0x200E: "LRM", 0x200F: "RLM", 0x202A: "LRE", 0x202B: "RLE",
         0x202C: "PDF", 0x202D: "LRO", 0x202E: "RLO", 0x2066: "LRI", 0x2067: "RLI",
         0x2068: "FSI", 0x2069: "PDI"}
_NAMED = {0x200B: "ZWSP", 0x2060: "WJ", 0xFEFF: "BOM", 0x00AD: "SHY", 0x2028: "LS",
          0x2029: "PS", 0x0085: "NEL", 0x180E: "MVS"}
_JOINERS = (0x200C, 0x200D)  # legitimate inside emoji and Indic words: left as they are


def _odd(ch: str) -> Optional[str]:
    """A visible replacement for an invisible or misleading character, or None."""
    c = ord(ch)
    if c < 0x20:
        return chr(0x2400 + c)  # ␀ ␉ ␊ ...
    if c == 0x7F:
        return "␡"
    if c in _BIDI:
        return f"⟨{_BIDI[c]}⟩"
    if c in _NAMED:
        return f"⟨{_NAMED[c]}⟩"
    if c in _JOINERS:
        return None
    cat = unicodedata.category(ch)
    if cat in ("Cc", "Cf", "Cs", "Co", "Zl", "Zp"):
        return f"⟨U+{c:04X}⟩"
    return None


def visible_token(s: str, max_chars: int = DISPLAY_CHARS) -> str:
    """How a token is shown: invisible characters made visible, long tokens shortened.

    NUL and other C0 controls become control pictures (``␀``, ``␉``), bidirectional controls
    a bracketed name (``⟨RLO⟩``), other format, private-use and separator characters
    ``⟨U+hhhh (hex)⟩``; spaces at either end and whitespace-only tokens become ``␣``; a token starting
    with a combining mark gets a dotted circle so it cannot merge into its neighbour; the empty
    string is ``⟨empty⟩``.
    """
    if s == "":
        return "⟨empty⟩"
    out = [_odd(ch) or ch for ch in s]
    if all(ch.isspace() and _odd(ch) is None for ch in s):
        out = ["␣"] * len(s)
    else:
        for i in range(len(out)):  # leading spaces
            if s[i] == " ":
                out[i] = "␣"
            else:
                break
        for i in range(len(out) - 1, -1, -1):  # trailing spaces
            if s[i] == " ":
                out[i] = "␣"
            else:
                break
    if unicodedata.combining(s[0]):
        out[0] = "◌" + out[0]
    text = "".join(out)
    if len(text) > max_chars:
        text = text[: max_chars - 1] + "…"
    return text


def token_title(s: str, max_chars: int = TITLE_CHARS) -> str:
    """Tooltip for a token: the raw string (shortened when huge) and, when it holds invisible or
    misleading characters, their code points."""
    raw = s if len(s) <= max_chars else s[:max_chars] + f"… ({len(s):,} characters)"
    odd = sorted({f"U+{ord(ch):04X}" for ch in s if _odd(ch) is not None or ch.isspace()})
    if odd:
        raw += "\ncode points: " + " ".join(odd[:20])
    return raw


def safe_json(obj: Any) -> str:
    """JSON that is safe inside ``<script type="application/json">``: ASCII only, and ``<``,
    ``>``, ``&``, U+2028, U+2029 written as ``\\u003c``, ``\\u003e``, ``\\u0026``, ``\\u2028``,
    ``\\u2029`` (they can only occur inside JSON strings, where the escape means the same)."""
    s = json.dumps(obj, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    return (s.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


# ---------------------------------------------------------------------------- head info


def _num(v: Any) -> Optional[float]:
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, (int, float, np.integer, np.floating)):
        f = float(v)
        return f if math.isfinite(f) else None
    return None


def _fmt(v: Any) -> str:
    f = _num(v)
    if f is not None:
        return f"{f:.3g}"
    if isinstance(v, Mapping):  # a null summary: its threshold first when it has one
        keys = sorted(v, key=lambda k: (k != "threshold", list(v).index(k)))
        return ", ".join(f"{k} {_fmt(v[k])}" for k in keys[:8])
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_fmt(x) for x in list(v)[:4]) + "]"
    return str(v)


def _null_short(v: Any) -> str:
    """A null baseline for the scores table: its threshold when it has one, else all of it."""
    if isinstance(v, Mapping) and _num(v.get("threshold")) is not None:
        return f"threshold {_fmt(v['threshold'])}"
    return _fmt(v)


def load_head_info(src: Any) -> dict[HeadKey, dict]:
    """Normalize head information to ``{(layer, head): {"class", "label", "color", "scores",
    "null"}}``: ``class`` is a taxonomy class (or any other short tag, such as a paraphrase
    verdict), ``label`` what the page shows (``positional(3)``), ``color`` the class's colour.

    Accepts ``None``; a path to a ``heads.json`` (a list of entries, or an object whose
    ``"heads"`` is one); a list of entries with ``layer``, ``head``, ``class``, ``scores`` and
    optionally ``null``; or a mapping from ``(layer, head)`` (or ``"layer,head"``) to
    ``{"class": str, "scores": {name: float}}``. Scores keep their numbers (non-finite ones become
    None); null baselines become display strings: ``null`` short (a summary's threshold),
    ``null_detail`` complete (shown on hover).
    """
    if src is None:
        return {}
    if isinstance(src, (str, Path)):
        p = Path(src)
        try:
            src = json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DataError(f"head file not found: {p}") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise DataError(f"{p} is not a JSON heads file ({type(e).__name__}: "
                            f"{str(e).splitlines()[0][:120]})") from None
    if isinstance(src, Mapping) and isinstance(src.get("heads"), list):
        src = src["heads"]
    items: list[tuple[Any, Any]] = []
    if isinstance(src, Mapping):
        items = list(src.items())
    elif isinstance(src, (list, tuple)):
        for i, e in enumerate(src):
            if not isinstance(e, Mapping) or "layer" not in e or "head" not in e:
                raise DataError(f"head entry {i + 1} needs 'layer' and 'head'")
            items.append(((e["layer"], e["head"]), e))
    else:
        raise DataError(f"head info must be a heads.json path, a list or a mapping, "
                        f"not {type(src).__name__}")
    out: dict[HeadKey, dict] = {}
    for key, e in items:
        if isinstance(key, str):
            try:
                key = tuple(int(x) for x in key.replace(" ", "").split(","))
            except ValueError:
                raise DataError(f"head key {key!r} is not 'layer,head'") from None
        try:
            layer, head = int(key[0]), int(key[1])
        except (TypeError, ValueError, IndexError):
            raise DataError(f"head key {key!r} is not (layer, head)") from None
        e = e if isinstance(e, Mapping) else {"class": str(e)}
        scores = e.get("scores") or {}
        null = e.get("null") or {}
        cls, offset = parse_class(e.get("class"), e.get("offset"))
        out[(layer, head)] = {
            "class": cls.value if cls is not None else str(e.get("class") or ""),
            "label": label(e.get("class"), e.get("offset")),
            "color": cls.color if cls is not None else None,
            "scores": ({str(k): _num(v) for k, v in scores.items()}
                       if isinstance(scores, Mapping) else {}),
            "null": ({str(k): _null_short(v) for k, v in null.items()}
                     if isinstance(null, Mapping) else {"": _fmt(null)}),
            "null_detail": ({str(k): _fmt(v) for k, v in null.items()}
                            if isinstance(null, Mapping) else {}),
        }
    return out


# ---------------------------------------------------------------------------- payload


@lru_cache(maxsize=1)
def assets() -> tuple[str, str]:
    """The viewer's CSS and JavaScript (shipped in ``lenslab/attention/static``)."""
    base = resources.files("lenslab.attention") / "static"
    css = (base / "viewer.css").read_text(encoding="utf-8")
    js = (base / "viewer.js").read_text(encoding="utf-8")
    # "</script" would end the inline element; "<!--" and "<script" could switch the HTML parser
    # into its escaped script states, where the real closing tag no longer closes it
    if any(bad in js.lower() for bad in ("</script", "<script", "<!--")) \
            or "</style" in css.lower():
        raise RuntimeError("viewer assets must not contain script/style tags or <!--")
    return css, js


def _plan_sizes(ns: list[int], per_token2: int, max_tokens: int, max_bytes: int
                ) -> tuple[list[int], int, Optional[int]]:
    """Tokens kept per input and how many inputs fit in ``max_bytes``.

    Returns (kept tokens per shown input, number of inputs shown, uniform cap applied or None).
    Each input costs ``per_token2 * n**2`` bytes (``per_token2`` = heads shown).
    """
    kept = [min(n, max_tokens) for n in ns]
    if per_token2 * sum(n * n for n in kept) <= max_bytes:
        return kept, len(ns), None
    shown = len(ns)
    cap = math.isqrt(max(max_bytes, 0) // (per_token2 * shown))
    while cap < MIN_TOKENS and shown > 1:  # too few tokens each: show fewer inputs instead
        shown -= 1
        cap = math.isqrt(max(max_bytes, 0) // (per_token2 * shown))
    cap = max(cap, 1)
    return [min(n, cap) for n in kept[:shown]], shown, cap


def build_payload(inputs: Sequence[Any], head_info: Any = None, *, title: str = "",
                  heads: Optional[Iterable[HeadKey]] = None, select: Optional[HeadKey] = None,
                  mode: str = "auto", hide_special: bool = False, max_tokens: int = MAX_TOKENS,
                  max_bytes: int = MAX_BYTES) -> tuple[dict, list[str]]:
    """Validate inputs and build the JSON payload and the notices (plain text) for one viewer.

    Payload: ``heads`` = ``[[layer, head], ...]`` shown (grid order), ``info`` (head classes and
    scores), ``select``, ``mode``, ``hide_special``, and per input ``title``, ``shown`` (display
    forms, :func:`visible_token`) and ``tip`` (raw strings, :func:`token_title`) per token,
    ``special`` flags, ``n`` tokens kept of ``n_total``, and ``data`` = base64 of uint8
    ``[len(heads), n, n]`` (row-major: head, query, key). Notices say what the caps cut.
    """
    if mode not in ("auto", "lines", "heatmap"):
        raise DataError(f"viewer mode must be 'auto', 'lines' or 'heatmap', not {mode!r}")
    items = [_as_input(x, i) for i, x in enumerate(inputs)]
    if not items:
        raise DataError("nothing to show: give at least one input")
    shapes = []
    arrays = []
    for it in items:
        p = _to_numpy(it.patterns)
        if p.ndim != 4 or p.shape[2] != p.shape[3] or p.shape[2] != len(it.tokens):
            raise DataError(f"input {it.title!r}: patterns must be [layer, head, q, k] with "
                            f"q = k = {len(it.tokens)} tokens, got {list(p.shape)}")
        if it.special is not None and len(it.special) != len(it.tokens):
            raise DataError(f"input {it.title!r}: {len(it.special)} special flags for "
                            f"{len(it.tokens)} tokens")
        shapes.append(p.shape[:2])
        arrays.append(p)
    if len(set(shapes)) > 1:
        raise DataError("inputs side by side must come from the same model: "
                        f"[layer, head] shapes differ {sorted(set(shapes))}")
    n_layer, n_head = int(shapes[0][0]), int(shapes[0][1])
    if heads is None:
        head_list = [(layer, h) for layer in range(n_layer) for h in range(n_head)]
    else:
        head_list = sorted({(int(a), int(b)) for a, b in heads})
        bad = [x for x in head_list if not (0 <= x[0] < n_layer and 0 <= x[1] < n_head)]
        if bad or not head_list:
            raise DataError(f"heads {bad or '[]'} are not in a {n_layer}-layer, "
                            f"{n_head}-head model")
    info = load_head_info(head_info)
    ns = [len(it.tokens) for it in items]
    kept, n_shown, cap = _plan_sizes(ns, len(head_list), max(1, int(max_tokens)), int(max_bytes))

    notices: list[str] = []
    for it in items:
        notices.extend(f"{it.title}: {n}" for n in it.notes)
    if n_shown < len(items):
        notices.append(f"{len(items) - n_shown} of {len(items)} inputs are not shown "
                       f"({', '.join(repr(it.title) for it in items[n_shown:][:5])}): the page "
                       f"keeps at most {max_bytes / 2**20:.3g} MiB of attention data.")
    for it, n_all, n in zip(items, ns, kept):
        if n < n_all:
            why = (f"the cap is {max_tokens:,} tokens per input" if n == min(n_all, max_tokens)
                   else f"inputs are cut to {n:,} tokens to keep the page under "
                        f"{max_bytes / 2**20:.3g} MiB of attention data")
            notices.append(f"{it.title}: showing the first {n:,} of {n_all:,} tokens ({why}); "
                           "attention to later tokens is cut, so rows sum to less than 1.")

    sel_idx = np.array([layer * n_head + h for layer, h in head_list])
    payload_inputs = []
    for it, p, n in zip(items[:n_shown], arrays[:n_shown], kept):
        q = quantize(p.reshape(n_layer * n_head, p.shape[2], p.shape[3])[sel_idx, :n, :n])
        payload_inputs.append({
            "title": it.title,
            "shown": [visible_token(s) for s in it.tokens[:n]],
            "tip": [token_title(s) for s in it.tokens[:n]],
            "special": [bool(x) for x in (it.special or [False] * len(it.tokens))[:n]],
            "n": n,
            "n_total": len(it.tokens),
            "data": base64.b64encode(np.ascontiguousarray(q).tobytes()).decode("ascii"),
        })
    if select is None or tuple(select) not in head_list:
        select = head_list[0]
    payload = {
        "title": title,
        "n_layer": n_layer,
        "n_head": n_head,
        "heads": [list(x) for x in head_list],
        "info": [{"layer": k[0], "head": k[1], **v} for k, v in sorted(info.items())
                 if k in set(head_list)],
        "inputs": payload_inputs,
        "select": list(select),
        "mode": mode,
        "hide_special": bool(hide_special),
    }
    return payload, notices


def viewer_fragment(inputs: Sequence[Any], head_info: Any = None, *, title: str = "",
                    **opts: Any) -> str:
    """The viewer as an HTML fragment (needs :func:`assets` on the page; see :func:`page`).

    Notices are rendered here (escaped), so they are visible even without JavaScript; the JSON
    payload sits in a ``<script type="application/json" class="lv-data">`` inside the container.
    """
    payload, notices = build_payload(inputs, head_info, title=title, **opts)
    data = safe_json(payload)
    vid = "lv-" + hashlib.sha1(data.encode("ascii")).hexdigest()[:10]
    notes = "".join(f"<div class='lv-notice'>{escape(n)}</div>" for n in notices)
    head = f"<div class='lv-title'>{escape(title)}</div>" if title else ""
    return (f"<div class='lv' id='{vid}'>{head}{notes}"
            "<noscript><div class='lv-notice'>The attention viewer needs JavaScript.</div>"
            "</noscript>"
            f"<script type='application/json' class='lv-data'>{data}</script></div>")


def page(title: str, sections: Sequence[tuple[str, str]], subtitle: str = "") -> str:
    """A self-contained page (CSP: no network) with the viewer's CSS and JS inlined once.

    ``sections`` are ``(heading, trusted HTML)`` pairs, e.g. from :func:`viewer_fragment`.
    """
    css, js = assets()
    pg = Page(title, subtitle=subtitle, scripts=[js], extra_css=css)
    for heading, body in sections:
        pg.add(heading, body)
    return pg.render()


def render_viewer(inputs: Sequence[Any], head_info: Any = None, title: str = "Attention viewer",
                  *, subtitle: str = "", **opts: Any) -> str:
    """A complete, self-contained HTML page with one viewer.

    ``inputs``: dicts (``title``, ``tokens``, ``patterns`` ``[layer, head, q, k]``, optional
    ``special``), :class:`ViewerInput` objects, or ``(title, tokens, patterns)`` tuples; several
    inputs are shown side by side for the selected head. ``head_info``: see
    :func:`load_head_info`. Options: ``heads`` (subset of ``(layer, head)`` to include),
    ``select`` (initially selected head), ``mode`` (``"lines"``, ``"heatmap"`` or ``"auto"``:
    lines up to 60 tokens, else heatmap),
    ``hide_special`` (start with special tokens hidden and rows renormalized over the rest),
    ``max_tokens`` per input, ``max_bytes`` of pattern data in all.
    """
    frag = viewer_fragment(inputs, head_info, title="", **opts)
    return page(title, [("Attention", frag)], subtitle=subtitle)


# ---------------------------------------------------------------------------- live models


@dataclass
class Viewer:
    """A viewer for one or more texts; ``_repr_html_`` for notebooks, ``write(path)`` to save."""

    inputs: list[ViewerInput]
    head_info: Any = None
    title: str = "Attention viewer"
    subtitle: str = ""
    options: dict = field(default_factory=dict)

    def html(self) -> str:
        """The self-contained page."""
        return render_viewer(self.inputs, self.head_info, self.title, subtitle=self.subtitle,
                             **self.options)

    def _repr_html_(self) -> str:
        return notebook_frame(self.html())

    def write(self, path: Union[str, Path]) -> Path:
        """Write the page atomically; returns the path."""
        atomic_write_text(path, self.html())
        return Path(path)


def capture_quantized(lens: Any, text: str, truncate: bool = False):
    """Tokenize ``text`` and capture its patterns, streaming one layer at a time into uint8.

    Returns ``(tokens, q)`` with ``q`` uint8 ``[layer, head, T, T]``: a quarter of the float
    memory, and no layer's float pattern outlives its callback.
    """
    toks = lens.tokenize(text, truncate=truncate)
    n = len(toks)
    q = np.zeros((lens.n_layer, lens.n_head, n, n), dtype=np.uint8)

    def on_layer(layer: int, p: Any) -> None:  # p [batch=1, head, q, k]
        q[layer] = quantize(p[0])

    lens.capture(toks.tensor(), on_layer=on_layer)
    return toks, q


def view(lens: Any, text: Union[str, Sequence[str]], truncate: bool = False,
         head_info: Any = None, title: Optional[str] = None, **opts: Any) -> Viewer:
    """Capture ``text`` (or several texts, shown side by side) with ``lens`` and view it.

    ``lens`` is a :class:`lenslab.attention.capture.LensModel`; errors (empty text, text longer
    than the context without ``truncate``) are its :class:`~lenslab.errors.LensError`.
    """
    texts = [text] if isinstance(text, str) else list(text)
    if not texts:
        raise DataError("the text is empty; give at least one word")
    inputs = []
    for i, t in enumerate(texts):
        toks, q = capture_quantized(lens, t, truncate=truncate)
        notes = []
        if toks.truncated:
            notes.append(f"the text was truncated to the model's context of {lens.n_ctx} tokens "
                         "(--truncate).")
        name = t if len(t) <= 60 else t[:59] + "…"
        inputs.append(ViewerInput(name if len(texts) == 1 else f"{i + 1}. {name}",
                                  list(toks.strings), q, list(toks.special), notes))
    return Viewer(inputs, head_info, title or f"Attention: {lens.name}",
                  subtitle=f"{lens.n_layer} layers x {lens.n_head} heads; click a head in the grid",
                  options=opts)

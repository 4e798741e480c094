"""Building blocks for self-contained HTML pages, at the bottom of lenslab.

Figures are inlined as SVG (matplotlib), styles are inlined, and nothing is loaded from the
network. Every string that came from data (token strings, file names, config values) goes
through :func:`escape`; the only raw HTML is what this module generates. Every page of lenslab
(run reports, analysis pages, the tour, the attention viewer) is made of these parts.

Numbers reach a page through :func:`fmt` (one formatter: missing values, integers with
separators, floats to a number of significant digits) and :func:`compact` (counts as 512k, 3.97M).

This module imports nothing of lenslab above ``_io``; matplotlib is imported only when a figure
is rendered.
"""

from __future__ import annotations

import html
import io
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from lenslab._io import atomic_write_bytes, atomic_write_text

CSS = """
:root { --fg:#1d2330; --muted:#5b6577; --bg:#ffffff; --card:#f6f7fa; --accent:#3056d3;
        --ok:#1b7f3b; --warn:#b36b00; --bad:#b3261e; }
* { box-sizing: border-box; }
body { font: 15px/1.55 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg);
       background: var(--bg); margin: 0; }
main { max-width: 1080px; margin: 0 auto; padding: 28px 24px 80px; }
h1 { font-size: 28px; margin: 0 0 6px; }
h2 { font-size: 21px; margin: 36px 0 8px; padding-top: 12px; border-top: 1px solid #e3e6ee; }
h3 { font-size: 16px; margin: 20px 0 6px; }
p.lead { color: var(--muted); margin-top: 0; }
nav.toc { background: var(--card); padding: 10px 16px; border-radius: 8px; margin: 16px 0; }
nav.toc a { margin-right: 14px; color: var(--accent); text-decoration: none; }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: 13.5px; }
th, td { border-bottom: 1px solid #e3e6ee; padding: 4px 10px; text-align: left; vertical-align: top; }
th { background: var(--card); font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.figure { margin: 10px 0 18px; }
.figure svg { max-width: 100%; height: auto; }
.caption { color: var(--muted); font-size: 13px; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px;
         font-weight: 600; color: white; background: var(--muted); }
.badge.ok { background: var(--ok); } .badge.warn { background: var(--warn); }
.badge.bad { background: var(--bad); }
.note { background: #fff8e6; border-left: 4px solid var(--warn); padding: 8px 12px; margin: 10px 0; }
code, pre { font: 12.5px/1.45 ui-monospace, SFMono-Regular, Menlo, monospace; }
pre { background: var(--card); padding: 10px 12px; border-radius: 6px; overflow-x: auto; }
footer { color: var(--muted); font-size: 12px; margin-top: 40px; }
"""


def escape(value: Any) -> str:
    """Escape any value for HTML text or attribute context."""
    return html.escape(str(value), quote=True)


def pyplot():
    """matplotlib's pyplot on the headless Agg backend (never opens a window).

    Imported here, on first use, because matplotlib costs a third of a second to import and
    most commands draw nothing.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# Deterministic SVG: no timestamp, and a fixed salt for the ids matplotlib would otherwise
# derive from a random uuid (clip paths, glyphs). The same figure gives the same bytes.
_SVG_RC = {"svg.fonttype": "path", "svg.hashsalt": "lenslab"}


def label(value: Any) -> str:
    """Data (a column name, a run folder, a token) as a figure's text: a "$" in it is a dollar
    sign, never the start of mathtext that matplotlib would fail to parse."""
    return str(value).replace("$", r"\$")


def tick_text(labels: Iterable[Any]) -> list[str]:
    """Data used as tick labels (tokens, names): :func:`label` of each."""
    return [label(x) for x in labels]


def figure_to_svg(fig: Any, close: bool = True) -> str:
    """Render a matplotlib figure to inline SVG markup (fonts as paths: no external files).

    Deterministic: the same figure gives the same bytes, so reports diff cleanly.
    """
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context(_SVG_RC):
        fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    if close:
        pyplot().close(fig)
    svg = buf.getvalue()
    start = svg.find("<svg")
    return svg[start:] if start >= 0 else svg


def write_png(fig: Any, path: Any, close: bool = True) -> None:
    """Write a matplotlib figure as a PNG, atomically (the figure is closed unless ``close`` is
    False)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight", metadata={"Software": None})
    if close:
        pyplot().close(fig)
    atomic_write_bytes(path, buf.getvalue())


MISSING = "–"  # a value that is undefined (NaN, None): an en dash, never "nan"


def fmt(x: Any, digits: int = 4, missing: str = MISSING) -> str:
    """The one number formatter: ints with separators, floats to ``digits`` significant digits
    (scientific outside 1e-3..1e5), NaN/None as ``missing``; anything else as ``str``.

    Plain text: escape it before it goes into HTML (:func:`table_html` does).
    """
    if x is None:
        return missing
    if isinstance(x, bool):
        return str(x)
    if hasattr(x, "item") and callable(x.item) and not isinstance(x, (str, bytes)):
        try:  # numpy and torch scalars
            x = x.item()
        except (TypeError, ValueError):
            return str(x)
    if isinstance(x, int):
        return f"{x:,}"
    if isinstance(x, float):
        if not math.isfinite(x):
            return missing if x != x else ("∞" if x > 0 else "-∞")
        if x == 0 or 1e-3 <= abs(x) < 1e5:
            return f"{x:.{digits}g}"
        return f"{x:.{max(digits - 1, 1)}e}"
    return str(x)


def fmt_interval(lo: Any, hi: Any, digits: int = 3) -> str:
    """``[lo, hi]`` with :func:`fmt` (``[–, –]`` when an end is undefined)."""
    return f"[{fmt(lo, digits)}, {fmt(hi, digits)}]"


def compact(x: Any) -> str:
    """Counts for narrow columns: 1760, 512k, 3.97M, 1.2G (``–`` when not a number)."""
    if isinstance(x, bool) or not isinstance(x, (int, float)) or x != x:
        return MISSING
    for div, suffix, least in ((1e9, "G", 1), (1e6, "M", 1), (1e3, "k", 10)):
        if abs(x) >= least * div:  # 1760 stays whole; 3.97M is not 3970k
            return f"{x / div:.3g}{suffix}"
    return f"{x:.4g}"


def table_html(rows: Sequence[dict], columns: Sequence[str] | None = None, digits: int = 4) -> str:
    """A plain table from a list of dicts; every cell escaped."""
    if not rows:
        return "<p class='caption'>(no rows)</p>"
    cols = list(columns) if columns is not None else list(rows[0].keys())
    head = "".join(f"<th>{escape(c)}</th>" for c in cols)
    body = []
    for r in rows:
        cells = []
        for c in cols:
            v = r.get(c, "")
            cls = " class='num'" if isinstance(v, (int, float)) and not isinstance(v, bool) else ""
            cells.append(f"<td{cls}>{escape(fmt(v, digits))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


@dataclass
class Section:
    title: str
    body: str  # trusted HTML produced by lenslab
    anchor: str = ""


@dataclass
class Page:
    """A self-contained HTML page made of sections. ``body`` strings must already be escaped."""

    title: str
    subtitle: str = ""
    sections: list[Section] = field(default_factory=list)
    scripts: list[str] = field(default_factory=list)  # inline JS shipped with lenslab
    extra_css: str = ""

    def include(self, css: str = "", js: str = "") -> None:
        """Carry a fragment's CSS and JavaScript (shipped with lenslab), once however often."""
        if js and js not in self.scripts:
            self.scripts.append(js)
        if css and css not in self.extra_css:
            self.extra_css += css

    def add(self, title: str, body: str, anchor: str | None = None) -> Section:
        anchor = anchor or "s" + str(len(self.sections) + 1)
        sec = Section(title, body, anchor)
        self.sections.append(sec)
        return sec

    def render(self) -> str:
        toc = "".join(f"<a href='#{escape(s.anchor)}'>{escape(s.title)}</a>" for s in self.sections)
        secs = "".join(
            f"<section id='{escape(s.anchor)}'><h2>{escape(s.title)}</h2>{s.body}</section>"
            for s in self.sections
        )
        scripts = "".join(f"<script>{s}</script>" for s in self.scripts)
        sub = f"<p class='lead'>{escape(self.subtitle)}</p>" if self.subtitle else ""
        nav = f"<nav class='toc'>{toc}</nav>" if len(self.sections) > 1 else ""
        return (
            "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            # No network at all: the page may only use what it carries inline.
            "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; "
            "style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">"
            f"<title>{escape(self.title)}</title><style>{CSS}{self.extra_css}</style></head>"
            f"<body><main><h1>{escape(self.title)}</h1>{sub}{nav}{secs}"
            "<footer>Written by lenslab. Self-contained: no network access needed.</footer>"
            f"</main>{scripts}</body></html>"
        )

    def _repr_html_(self) -> str:  # notebooks
        return self.render()

    def write(self, path: Any) -> None:
        atomic_write_text(path, self.render())


def notebook_frame(html: str, height: int = 900) -> str:
    """Embed a full page in a notebook: a sandboxed iframe (scripts allowed, no same-origin),
    so the page's CSP and styles apply and nothing leaks into the notebook."""
    return (f"<iframe sandbox='allow-scripts' style='width:100%;height:{int(height)}px;"
            f"border:1px solid #e3e6ee' srcdoc=\"{escape(html)}\"></iframe>")


def badge(text: str, kind: str = "") -> str:
    return f"<span class='badge {escape(kind)}'>{escape(text)}</span>"


def figure_block(svg: str, caption: str = "") -> str:
    cap = f"<div class='caption'>{escape(caption)}</div>" if caption else ""
    return f"<div class='figure'>{svg}{cap}</div>"


def join(parts: Iterable[str]) -> str:
    return "".join(parts)

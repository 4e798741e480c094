"""The page parts every lenslab page is made of: deterministic figures, escaping, numbers."""

from __future__ import annotations

import math

import numpy as np

from lenslab.html import Page, compact, figure_to_svg, fmt, pyplot, table_html


def _figure():
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.imshow(np.arange(12.0).reshape(3, 4))  # clip paths and images: ids matplotlib salts
    ax.plot([0, 1, 2], [2, 0, 1], label="a<b>")
    ax.legend()
    return fig


def test_the_same_figure_gives_the_same_bytes():
    a, b = figure_to_svg(_figure()), figure_to_svg(_figure())
    assert "clipPath" in a  # the ids that a random salt would change are there
    assert a == b


def test_cells_are_escaped_and_numbers_formatted_one_way():
    html = table_html([{"name": "<script>alert(1)</script>", "x": 1234567, "y": math.nan,
                        "z": 0.000012345, "w": None}])
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "1,234,567" in html and "1.234e-05" in html and html.count("–") == 2
    assert fmt(np.float32(0.5)) == "0.5" and fmt(True) == "True" and fmt(float("inf")) == "∞"
    assert compact(3_970_000) == "3.97M" and compact(512_000) == "512k" and compact("x") == "–"


def test_a_page_loads_nothing_from_the_network():
    page = Page("t <i>", "s")
    page.add("one", "<p>x</p>")
    text = page.render()
    assert "default-src 'none'" in text and "t &lt;i&gt;" in text
    assert "http://" not in text and "https://" not in text


def test_data_labels_are_text_and_log_ticks_still_mathtext():
    import matplotlib

    from lenslab.html import label

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([1, 10, 100], [1, 2, 3])
    ax.set_xscale("log")  # its ticks are written in mathtext: 10^0, 10^1, 10^2
    ax.set_xlabel(label("cost in $\\cmd$"))  # from data: drawn as dollars, not parsed
    assert figure_to_svg(fig, close=False).startswith("<svg")  # an unescaped label raises here
    assert matplotlib.rcParams["text.parse_math"]  # mathtext stays on for the tick labels
    assert any("mathdefault" in t.get_text() for t in ax.get_xticklabels())
    assert ax.xaxis.label.get_text() == "cost in \\$\\cmd\\$"
    pyplot().close(fig)

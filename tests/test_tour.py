"""The tour writes one self-contained report (no network references) with its chapters."""

from __future__ import annotations

import re

from conftest import run_cli


def test_quick_tour_writes_a_self_contained_report(tmp_path):
    r = run_cli("tour", "--out", str(tmp_path / "tour"), "--quick", timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    html = (tmp_path / "tour" / "report.html").read_text()
    assert "Training under guard" in html and "<svg" in html
    assert "rolled back" in html and "non-finite" in html  # the guard's story is told
    # the generalization chapter: the learned-position model takes a shortcut, RoPE another
    assert "Which one did the model learn?" in html or "which one did the model learn?" in html
    assert "the model follows phase (a shortcut)" in html
    assert "the model follows offset (a shortcut)" in html
    assert "Does it matter?" in html and "This chapter failed" not in html
    # offline: no external scripts, styles, images or fonts
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "@import" not in html

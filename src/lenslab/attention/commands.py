"""CLI commands of the attention lab: ``view`` and ``paraphrase``.

:func:`register` adds them to the ``lenslab`` typer app (``lenslab.cli`` imports this module
in ``_register_optional``). Each is a thin shell over the Python API:

* ``lenslab view MODEL "TEXT" --out FILE.html [--truncate] [--heads heads.json]``:
  :func:`lenslab.attention.viewer.view`, written as one self-contained page;
* ``lenslab paraphrase MODEL FILE --out DIR [--truncate] [--heads heads.json]``:
  :func:`lenslab.attention.paraphrase.paraphrase_stability`, written as ``DIR/paraphrase.json``
  and ``DIR/paraphrase.html``.

MODEL is anything :func:`lenslab.attention.capture.load_lens` takes: a run folder, ``minilm``, a
local Hugging Face folder or a hub name. Bad input (missing model, empty text, text longer than
the context without ``--truncate``, a non-UTF-8 file) raises
:class:`lenslab.errors.LensError` subclasses; the app's entry point prints their one-line message
and exits with code 2.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from lenslab.errors import ConfigError

_out = Console()
_err = Console(stderr=True, soft_wrap=True)


def _command(*words: object) -> str:
    return " ".join(shlex.quote(str(w)) for w in ("lenslab",) + words)


def register(app: typer.Typer) -> None:
    """Add ``view`` and ``paraphrase`` to ``app``."""

    @app.command("view")
    def view_cmd(
        model: str = typer.Argument(..., help="run folder, `minilm`, HF folder or hub name"),
        text: str = typer.Argument(..., help="the text to look at"),
        out: Path = typer.Option(..., "--out", "-o", help="HTML file to write"),
        truncate: bool = typer.Option(False, "--truncate",
                                      help="cut text longer than the model's context"),
        heads: Optional[Path] = typer.Option(None, "--heads",
                                             help="heads.json from `lenslab heads`: show classes"),
    ):
        """Write an offline attention viewer (all-heads grid, head view) for TEXT."""
        from lenslab.attention.capture import load_lens
        from lenslab.attention.viewer import load_head_info, view

        if out.suffix.lower() not in (".html", ".htm"):
            raise ConfigError(f"--out {out} should be an .html file")
        if out.is_dir():
            raise ConfigError(f"--out {out} is a folder; give a file name ending in .html")
        info = load_head_info(heads) if heads is not None else None  # fail before loading
        lens = load_lens(model)
        v = view(lens, text, truncate=truncate, head_info=info)
        path = v.write(out)
        _err.print(f"[green]viewer[/] {path} ({lens.n_layer} layers x {lens.n_head} heads)",
                   highlight=False)

    @app.command("paraphrase")
    def paraphrase_cmd(
        model: str = typer.Argument(..., help="run folder, `minilm`, HF folder or hub name"),
        file: Path = typer.Argument(..., help="UTF-8 text: one phrasing per line, blank lines "
                                              "between groups"),
        out: Path = typer.Option(..., "--out", "-o", help="folder for paraphrase.json/.html"),
        truncate: bool = typer.Option(False, "--truncate",
                                      help="cut phrasings longer than the model's context"),
        heads: Optional[Path] = typer.Option(None, "--heads",
                                             help="heads.json from `lenslab heads`: show classes"),
        top: int = typer.Option(5, "--top", min=0, help="how many sensitive heads to show"),
        seed: int = typer.Option(0, "--seed", help="seed of the null pairing and the bootstrap"),
    ):
        """Per-head paraphrase stability against unrelated sentences, with side-by-side views."""
        from lenslab.attention.capture import load_lens
        from lenslab.attention.paraphrase import paraphrase_stability, read_groups
        from lenslab.attention.viewer import load_head_info

        if out.exists() and not out.is_dir():
            raise ConfigError(f"--out {out} is a file; give a folder")
        groups = read_groups(file)  # bad file: fail before loading the model
        info = load_head_info(heads) if heads is not None else None
        lens = load_lens(model)
        res = paraphrase_stability(lens, groups, truncate=truncate, top=top, seed=seed,
                                   head_info=info, progress=True)
        cmd = _command("paraphrase", model, file, "--out", out,
                       *(["--truncate"] if truncate else []),
                       *(["--heads", heads] if heads is not None else []),
                       "--top", top, "--seed", seed)
        js, html = res.write(out, command=cmd)
        _print_summary(res)
        _err.print(f"[green]wrote[/] {js} and {html}", highlight=False)


def _print_summary(res) -> None:
    from rich.table import Table

    from lenslab.attention.paraphrase import SHORT_VERDICT

    t = Table(title=f"most phrasing-sensitive heads of {res.model}", title_justify="left")
    for col in ("head", "stability", "95% interval", "null", "profile", "verdict"):
        t.add_column(col, justify="left" if col in ("head", "verdict") else "right")

    def f(x: float) -> str:
        return "-" if x != x else f"{x:.3f}"

    for layer, h in res.sensitive:
        t.add_row(f"L{layer}H{h}", f(res.stability[layer, h]),
                  f"[{f(res.stability_ci[0, layer, h])}, {f(res.stability_ci[1, layer, h])}]",
                  f(res.null[layer, h]), f(res.profile[layer, h]),
                  SHORT_VERDICT[res.verdict(layer, h)])
    _out.print(t)
    _out.print("like unrelated: the gap to unrelated sentence pairs has an interval that holds 0",
               style="dim")
    for n in res.notes:
        _err.print(f"[yellow]note:[/] {n}", highlight=False)

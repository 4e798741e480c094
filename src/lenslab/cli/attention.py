"""Commands of the attention lab: ``heads``, ``view`` and ``paraphrase``, each a thin shell over
the Python API:

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

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from lenslab.cli.app import app, console, say, wrote
from lenslab.errors import ConfigError


@app.command()
def heads(
    model: str = typer.Argument(..., help="run folder, local HF folder, hub name, or `minilm`"),
    out_dir: Path = typer.Option(..., "--out", "-o", help="folder for heads.json and heads.html"),
    prompts: Optional[Path] = typer.Option(None, "--prompts", help="your prompts, one per line"),
):
    """Classify every attention head against re-initialised and permutation nulls."""
    from rich.table import Table

    from lenslab.attention.lab import run_heads

    report = run_heads(model, out_dir, prompts)
    t = Table(title=f"{report.model}: {report.n_layer} layers x {report.n_head} heads")
    t.add_column("class")
    t.add_column("heads", justify="right")
    t.add_column("examples")
    for c, n in sorted(report.counts().items(), key=lambda kv: -kv[1]):
        ex = ", ".join(f"L{layer}H{h}" for layer, h in report.by_class(c))
        t.add_row(escape(c.value), str(n), ex[:60] + ("..." if len(ex) > 60 else ""))
    console.print(t)
    wrote(out_dir / "heads.json", "heads.html", "heads.png")


@app.command("view")
def view_cmd(
    model: str = typer.Argument(..., help="run folder, `minilm`, HF folder or hub name"),
    text: str = typer.Argument(..., help="the text to look at"),
    out_file: Path = typer.Option(..., "--out", "-o", help="HTML file to write"),
    truncate: bool = typer.Option(False, "--truncate",
                                  help="cut text longer than the model's context"),
    heads: Optional[Path] = typer.Option(None, "--heads",
                                         help="heads.json from `lenslab heads`: show classes"),
):
    """Write an offline attention viewer (all-heads grid, head view) for TEXT."""
    from lenslab.attention.capture import load_lens
    from lenslab.attention.viewer import load_head_info, view

    if out_file.suffix.lower() not in (".html", ".htm"):
        raise ConfigError(f"--out {out_file} should be an .html file")
    if out_file.is_dir():
        raise ConfigError(f"--out {out_file} is a folder; give a file name ending in .html")
    info = load_head_info(heads) if heads is not None else None  # fail before loading
    lens = load_lens(model)
    v = view(lens, text, truncate=truncate, head_info=info)
    path = v.write(out_file)
    say("viewer", "green", f"{path} ({lens.n_layer} layers x {lens.n_head} heads)")

@app.command("paraphrase")
def paraphrase_cmd(
    model: str = typer.Argument(..., help="run folder, `minilm`, HF folder or hub name"),
    file: Path = typer.Argument(..., help="UTF-8 text: one phrasing per line, blank lines "
                                          "between groups"),
    out_dir: Path = typer.Option(..., "--out", "-o", help="folder for paraphrase.json/.html/.png"),
    truncate: bool = typer.Option(False, "--truncate",
                                  help="cut phrasings longer than the model's context"),
    heads: Optional[Path] = typer.Option(None, "--heads",
                                         help="heads.json from `lenslab heads`: show classes"),
    top: int = typer.Option(5, "--top", min=0, help="how many sensitive heads to show"),
    seed: int = typer.Option(0, "--seed", help="seed of the null pairing and the bootstrap"),
    causal: bool = typer.Option(True, "--causal/--no-causal", help="patch the most sensitive "
                                "and most stable heads between phrasings: does the output move?"),
):
    """Per-head paraphrase stability against unrelated sentences, with side-by-side views."""
    from lenslab.attention.capture import load_lens
    from lenslab.attention.paraphrase import paraphrase_stability, read_groups
    from lenslab.attention.viewer import load_head_info
    from lenslab.result import write_result

    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out {out_dir} is a file; give a folder")
    groups = read_groups(file)  # bad file: fail before loading the model
    info = load_head_info(heads) if heads is not None else None
    lens = load_lens(model)
    res = paraphrase_stability(lens, groups, truncate=truncate, top=top, seed=seed,
                               head_info=info, progress=True)
    if causal and top > 0:
        from lenslab.attention.paraphrase import paraphrase_alignments
        from lenslab.interventions import paraphrase_causal

        res.causal = paraphrase_causal(lens, res, paraphrase_alignments(lens, res, groups, truncate),
                                       seed=seed)
    js = write_result(res, out_dir)
    _print_summary(res)
    wrote(js, js.with_suffix(".html"), js.with_suffix(".png"))


def _print_summary(res) -> None:
    from rich.table import Table

    from lenslab.attention.paraphrase_result import SHORT_VERDICT

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
    console.print(t)
    console.print("like unrelated: the gap to unrelated sentence pairs has an interval that holds 0",
               style="dim")
    if res.causal:
        c = Table(title="does the change matter? one phrasing's head output patched into the "
                  "other's shared words", title_justify="left")
        for col in ("head", "role", "stability", "output moves", "95% interval", "null",
                    "moves the output"):
            c.add_column(col, justify="left" if col in ("head", "role") else "right")
        for r in res.causal:
            c.add_row(f"L{r['layer']}H{r['head']}", r["role"],
                      f(res.stability[r["layer"], r["head"]]), f(r["effect"]),
                      f"[{f(r['interval'][0])}, {f(r['interval'][1])}]", f(r["null"]),
                      "yes" if r["moves"] else "no")
        console.print(c)
    for n in res.notes:
        say("note:", "yellow", n)

"""``lenslab patch``, ``lenslab attribute``, ``lenslab path`` and ``lenslab lens``: the
interventions lab."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from lenslab.cli.app import app, console, wrote


def _hf_lens(run_dir: Path, pairs_file: Optional[Path], what: str):
    """The lens of a Hugging Face model when ``run_dir`` is one (or ``--pairs`` is given), else
    None (a run folder, patched with the prompts its task makes)."""
    if pairs_file is None and (Path(run_dir) / "config.toml").is_file():
        return None
    from lenslab.attention import load_lens
    from lenslab.errors import DataError

    if pairs_file is None:
        raise DataError(f"{run_dir} is not a run folder; give --pairs FILE (JSON lines with "
                        f"clean, corrupt and answer) to {what} a Hugging Face model")
    return load_lens(str(run_dir))


@app.command()
def patch(
    run_dir: Path = typer.Argument(..., help="a GPT run folder (induction or repeat task), or a "
                                   "Hugging Face model (folder, name or `minilm`) with --pairs"),
    pairs_file: Optional[Path] = typer.Option(
        None, "--pairs", help="a file of JSON lines {clean, corrupt, answer} (needed for HF "
        "models; encoders need no answer)"),
    what: str = typer.Option("heads", "--what", help="heads | head_pos | resid | direct"),
    direction: str = typer.Option("denoise", "--direction", help="denoise (clean into "
                                  "corrupted) | noise (corrupted into clean)"),
    pairs: int = typer.Option(64, "--n", min=8, help="clean/corrupted prompt pairs the run's "
                              "task makes"),
    length: Optional[int] = typer.Option(None, "--length", min=8, help="tokens per prompt "
                                         "(default: the task's sequence length)"),
    step: Optional[int] = typer.Option(None, "--step", help="checkpoint (default: newest)"),
    bootstrap: int = typer.Option(1000, "--bootstrap", min=100, help="resamples for intervals"),
    out_dir: Optional[Path] = typer.Option(
        None, "--out", "-o", help="where patch.json/html/png go (default RUN_DIR/analysis)"),
):
    """Does a component carry the answer? Activation patching with intervals and nulls."""
    from rich.markup import escape

    from lenslab.interventions import patch_run
    from lenslab.result import write_result
    from lenslab.run import Run

    lens = _hf_lens(run_dir, pairs_file, "patch")
    if lens is not None:
        from lenslab.interventions import patch_model

        res = patch_model(lens, pairs_file, what, direction, bootstrap)
        path = write_result(res, out_dir if out_dir is not None else Path("runs") / "patch")
    else:
        res = patch_run(run_dir, what, direction, pairs, step, bootstrap, length=length)
        path = write_result(res, out_dir if out_dir is not None else Run(run_dir))
    console.print(f"patching ({res.direction}, {res.what}) at step {res.step}: "
                  f"{escape(res.summary)}", highlight=False)
    for name, (e, lo, hi) in res.joint.items():
        if not res.nothing_to_restore:
            console.print(f"  jointly, {escape(name)}: {e:.3f} ({lo:.3f} to {hi:.3f})",
                          highlight=False)
    if res.attribution_spearman is not None:
        console.print(f"  attribution patching agrees with it at Spearman "
                      f"{res.attribution_spearman:.2f} over the heads", highlight=False)
    wrote(path, path.with_suffix(".html"), path.with_suffix(".png"))


@app.command()
def attribute(
    run_dir: Path = typer.Argument(..., help="a GPT run folder (induction or repeat task), or a "
                                   "Hugging Face model (folder, name or `minilm`) with --pairs"),
    pairs_file: Optional[Path] = typer.Option(
        None, "--pairs", help="a file of JSON lines {clean, corrupt, answer} (needed for HF "
        "models; encoders need no answer)"),
    pairs: int = typer.Option(64, "--n", min=8, help="clean/corrupted prompt pairs the run's "
                              "task makes"),
    length: Optional[int] = typer.Option(None, "--length", min=8, help="tokens per prompt "
                                         "(default: the task's sequence length)"),
    step: Optional[int] = typer.Option(None, "--step", help="checkpoint (default: newest)"),
    bootstrap: int = typer.Option(1000, "--bootstrap", min=100, help="resamples for intervals"),
    check: bool = typer.Option(False, "--check", help="also patch every head for real and "
                               "report the rankings' Spearman agreement"),
    out_dir: Optional[Path] = typer.Option(
        None, "--out", "-o", help="where attribution.json/html/png go (default "
        "RUN_DIR/analysis)"),
):
    """Attribution patching: every head's and position's effect from one backward pass."""
    from rich.markup import escape

    from lenslab.result import write_result
    from lenslab.run import Run

    lens = _hf_lens(run_dir, pairs_file, "attribute")
    if lens is not None:
        from lenslab.interventions import attribute_model

        res = attribute_model(lens, pairs_file, bootstrap, check=check)
        path = write_result(res, out_dir if out_dir is not None else Path("runs") / "attribute")
    else:
        from lenslab.interventions import attribute_run

        res = attribute_run(run_dir, pairs, step, bootstrap, length=length, check=check)
        path = write_result(res, out_dir if out_dir is not None else Run(run_dir))
    console.print(f"attribution patching at step {res.step}: {escape(res.summary)}",
                  highlight=False)
    wrote(path, path.with_suffix(".html"), path.with_suffix(".png"))


def _head(spec: str) -> tuple[int, int]:
    import re

    from lenslab.errors import DataError
    m = re.fullmatch(r"L(\d+)H(\d+)", spec.strip(), flags=re.IGNORECASE)
    if not m:
        raise DataError(f"a head is written L<layer>H<head>, like L0H3, not {spec!r}")
    return int(m.group(1)), int(m.group(2))


@app.command()
def path(
    run_dir: Path = typer.Argument(..., help="a GPT run folder (induction or repeat task)"),
    sender: str = typer.Option(..., "--sender", help="the sending head, e.g. L0H3"),
    receivers: Optional[str] = typer.Option(
        None, "--receivers", help="receiving heads, e.g. L1H0,L1H2 (default: the next layer's)"),
    pairs: int = typer.Option(64, "--n", min=8, help="clean/corrupted prompt pairs the run's "
                              "task makes"),
    length: Optional[int] = typer.Option(None, "--length", min=8, help="tokens per prompt"),
    step: Optional[int] = typer.Option(None, "--step", help="checkpoint (default: newest)"),
    out_dir: Optional[Path] = typer.Option(
        None, "--out", "-o", help="where path-patching.json/html go (default RUN_DIR/analysis)"),
):
    """Path patching: a sender head's effect through the receivers' queries, keys or values."""
    from rich.markup import escape

    from lenslab.interventions import path_run
    from lenslab.result import write_result
    from lenslab.run import Run

    recv = [_head(h) for h in receivers.split(",")] if receivers else None
    res = path_run(run_dir, _head(sender), recv, pairs, step, length=length)
    path_ = write_result(res, out_dir if out_dir is not None else Run(run_dir))
    console.print(f"path patching at step {res.step}: {escape(res.summary)}", highlight=False)
    wrote(path_, path_.with_suffix(".html"))


@app.command()
def lens(
    run_dir: Path = typer.Argument(..., help="a GPT run folder (induction or repeat task), or a "
                                   "Hugging Face causal LM with TEXT"),
    text: Optional[str] = typer.Argument(None, help="HF models: the text to read"),
    answer: Optional[str] = typer.Option(None, "--answer", help="HF models: the token whose "
                                         "rank is followed (default: the model's prediction)"),
    prompts: int = typer.Option(256, "--prompts", min=8, help="prompts"),
    length: Optional[int] = typer.Option(None, "--length", min=8, help="tokens per prompt"),
    step: Optional[int] = typer.Option(None, "--step", help="checkpoint (default: newest)"),
    out_dir: Optional[Path] = typer.Option(
        None, "--out", "-o", help="where logit-lens.json/html/png go (default RUN_DIR/analysis)"),
):
    """The logit lens: the answer's rank and probability after each layer."""
    from rich.markup import escape

    from lenslab.interventions import lens_run
    from lenslab.result import write_result
    from lenslab.run import Run

    if text is not None or not (Path(run_dir) / "config.toml").is_file():
        from lenslab.attention import load_lens
        from lenslab.errors import DataError
        from lenslab.interventions import lens_text

        if text is None:
            raise DataError(f"{run_dir} is not a run folder; give the TEXT to read")
        res = lens_text(load_lens(str(run_dir)), text, answer)
        path = write_result(res, out_dir if out_dir is not None else Path("runs") / "lens")
    else:
        res = lens_run(run_dir, prompts, step, length=length)
        path = write_result(res, out_dir if out_dir is not None else Run(run_dir))
    console.print(f"logit lens at step {res.step}: {escape(res.summary)}", highlight=False)
    wrote(path, path.with_suffix(".html"), path.with_suffix(".png"))

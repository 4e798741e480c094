"""The ``lenslab`` command: a thin shell over the Python API.

One module per group of commands (:mod:`runs`, :mod:`attention`, :mod:`icl`, :mod:`scaling`,
:mod:`probes`), all registered on one typer app (:mod:`app`). Each command parses, calls the
API, and prints with rich; it imports its lab when it runs, so ``lenslab --help`` starts in a
fraction of a second.

Exit codes: 0 done, 1 a replication or check failed, 2 bad input (one-line message, no
traceback, nothing written), 3 the guard gave up, 74 the operating system refused a write (full
disk, read-only folder; the run is marked stopped and resumable), 75 preempted by SIGTERM/SIGINT
with a checkpoint written (resumable).
"""

from __future__ import annotations

import shlex
from typing import Optional

import typer
from rich.markup import escape

from lenslab.cli import (  # noqa: F401 - they register commands
    attention,
    icl,
    interventions,
    probes,
    runs,
    scaling,
)
from lenslab.cli.app import app, err
from lenslab.errors import LensError, RunIOError
from lenslab.result import set_command
from lenslab.run.folder import os_reason

__all__ = ["app", "main"]

_PANELS = {
    "Runs": ("init", "train", "resume", "runs", "report", "sample", "tour"),
    "Attention lab": ("heads", "view", "paraphrase"),
    "In-context learning lab": ("icl", "compare", "algorithms", "replicate"),
    "Scaling and emergence lab": ("sweep", "fit", "diagnose", "emergence"),
    "Generalization probes": ("probe",),
}


def _group_commands() -> None:
    """Order ``lenslab --help`` by lab, whatever order the labs registered in."""
    order = [n for names in _PANELS.values() for n in names]
    panel = {n: p for p, names in _PANELS.items() for n in names}

    def name(ci) -> str:
        return ci.name or ci.callback.__name__.replace("_", "-")

    for ci in app.registered_commands:
        ci.rich_help_panel = panel.get(name(ci), "Other")
    app.registered_commands.sort(key=lambda ci: order.index(name(ci)) if name(ci) in order else 99)


_group_commands()


def main(argv: Optional[list[str]] = None) -> int:
    """Entry point: LensError becomes one line on stderr and its exit code; no traceback."""
    import sys

    args = sys.argv[1:] if argv is None else [str(a) for a in argv]
    set_command(shlex.join(["lenslab", *args]))  # recorded once, in every result written
    try:
        rv = app(args=args, standalone_mode=False)
        if isinstance(rv, int):
            return rv
    except LensError as e:
        err.print(f"[bold red]error:[/] {escape(one_line(str(e)))}", highlight=False, soft_wrap=True)
        return e.exit_code
    except OSError as e:  # the operating system refused: a path and a cause, not a traceback
        where = f"{e.filename}: " if e.filename else ""
        err.print(f"[bold red]error:[/] {escape(one_line(where + os_reason(e)))}", highlight=False,
                  soft_wrap=True)
        return RunIOError.exit_code
    except typer.Exit as e:
        return e.exit_code
    except SystemExit as e:  # pragma: no cover
        return int(e.code or 0)
    except KeyboardInterrupt:
        err.print("interrupted")
        return 130
    except Exception as e:  # usage errors: a missing option, a value out of range
        usage, abort = _click_exceptions()
        if isinstance(e, usage):
            e.show()
            return 2
        if isinstance(e, abort):
            return 130
        raise
    return 0


#: Longest message printed (a million unknown keys must not make a 22 MB line).
MAX_MESSAGE = 2000


def one_line(text: str) -> str:
    """``text`` on one line, cut to :data:`MAX_MESSAGE` characters with the count of the rest."""
    text = " ".join(text.split())
    if len(text) > MAX_MESSAGE:
        text = text[:MAX_MESSAGE] + f" ... ({len(text) - MAX_MESSAGE:,} more characters)"
    return text


def _click_exceptions() -> tuple[tuple[type, ...], tuple[type, ...]]:
    """Click's usage and abort exceptions. Recent typer releases raise those of the copy of
    click they ship (``typer._click.exceptions``, with ``Abort`` in ``typer.exceptions``),
    older ones those of ``click``; accept whichever are importable."""
    import importlib

    usage, abort = [], []
    for mod, names in (("typer._click.exceptions", ("ClickException",)),
                       ("typer.exceptions", ("Abort",)),
                       ("click.exceptions", ("ClickException", "Abort"))):
        try:
            m = importlib.import_module(mod)
        except ImportError:
            continue
        for n in names:
            cls = getattr(m, n, None)
            if isinstance(cls, type):
                (usage if n == "ClickException" else abort).append(cls)
    return tuple(usage), tuple(abort)

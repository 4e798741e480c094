"""The typer app every command module registers on, and the consoles it prints with.

Commands import their lab inside the function body, on purpose: ``lenslab --help`` and
``lenslab init`` must answer without importing torch, scipy or matplotlib (seconds), so a
command pays for its lab only when it runs.
"""

from __future__ import annotations

from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="lenslab: measure what happens inside transformers.",
    context_settings={"help_option_names": ["-h", "--help"]},
)
console = Console()  # results (stdout)
err = Console(stderr=True, soft_wrap=True)  # progress, messages, errors


def say(label: str, style: str, *parts: Any, console: Console = err) -> None:
    """``label`` in ``style``, then ``parts`` as plain text (paths and names are data, never
    markup: ``run[/x]`` prints as it is)."""
    text = " ".join(str(p) for p in parts)
    console.print(f"[{style}]{escape(label)}[/] {escape(text)}" if label else escape(text),
                  highlight=False)


def wrote(*paths: Any) -> None:
    say("wrote", "green", ", ".join(str(p) for p in paths))

"""The result protocol: one shape for every analysis result.

An analysis reads runs (or a live model) and returns a result; the result knows how to become
data and a page, and nothing else does. Every result class subclasses :class:`Result` and has

* ``kind``: its name, which is also its file stem (``analysis/heads.json``, ``heads.html``,
  ``heads.png``) and its key in the registry below;
* ``schema``: the version of its dict; :meth:`from_dict` reads every older one, including
  ``0``, the files written before this protocol (they carry no ``schema``);
* ``to_dict()`` / ``from_dict(d)``: plain JSON-able data and back;
* ``figure()``: its main matplotlib figure, or None;
* ``to_html()``: an HTML fragment (every string escaped), the figure inlined;
* ``title``: the heading of its section in a page.

:func:`write_result` writes a result atomically as ``<kind>.json`` (with ``kind``, ``schema``,
the lenslab version and the command line), ``<kind>.html`` (a self-contained page),
``<kind>.png`` (the figure) and any further files the result names (a CSV table), by default into the run's ``analysis/`` folder. :func:`read_result`
reads any of them back through :data:`KINDS`; the run report is a loop over ``analysis/*.json``
that does exactly that and knows no lab.

The command line is recorded once: the CLI sets it with :func:`set_command` when it starts, and
a result written from Python carries the empty string.
"""

from __future__ import annotations

import importlib
import json
import os
from contextlib import nullcontext
from contextvars import ContextVar
from pathlib import Path
from typing import Any, ClassVar, Optional, Union

from lenslab import __version__
from lenslab._io import atomic_write_json, atomic_write_text, dumps
from lenslab.errors import DataError
from lenslab.html import Page, escape, notebook_frame, write_png

#: Result kinds and where their classes live (imported only when a file of that kind is read).
#: Order is the order of sections in a run report.
KINDS: dict[str, str] = {
    "heads": "lenslab.attention.head_report:HeadReport",
    "paraphrase": "lenslab.attention.paraphrase:ParaphraseResult",
    "icl": "lenslab.icl.score:ICLReport",
    "compare": "lenslab.icl.score:Comparison",
    "algorithms": "lenslab.icl.algorithms:AlgorithmComparison",
    "probe": "lenslab.probes.result:ProbeResult",
    "probe-checkpoints": "lenslab.probes.series:ProbeSeries",
    "probes": "lenslab.probes.series:ProbeSeries",
    "fit": "lenslab.scaling.forms:fit_from_dict",
    "diagnosis": "lenslab.scaling.diagnosis:Diagnosis",
    "emergence": "lenslab.emergence.result:EmergenceResult",
    "patch": "lenslab.interventions.patching:PatchingResult",
    "path-patching": "lenslab.interventions.paths:PathResult",
    "attribution": "lenslab.interventions.attribute:AttributionResult",
    "logit-lens": "lenslab.interventions.lens:LogitLens",
}

_COMMAND: ContextVar[str] = ContextVar("lenslab_command", default="")


def set_command(command: str) -> None:
    """Record the command line that results written from now on came from (the CLI does)."""
    _COMMAND.set(command)


def current_command() -> str:
    return _COMMAND.get()


class Result:
    """Base of every analysis result (see the module docstring for the protocol).

    Subclasses are usually dataclasses; they set ``kind``, ``schema`` and ``title`` and
    implement :meth:`to_dict`, :meth:`from_dict` and :meth:`to_html` (and :meth:`figure` when
    they have one). ``command`` is the command line that made the result ("" from Python).
    """

    kind: ClassVar[str] = ""
    schema: ClassVar[int] = 1
    title: ClassVar[str] = ""
    command: str = ""

    # -- data ------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        raise NotImplementedError(f"{type(self).__name__} must define to_dict")  # pragma: no cover

    @classmethod
    def from_dict(cls, d: dict) -> "Result":
        raise NotImplementedError(f"{cls.__name__} must define from_dict")  # pragma: no cover

    # -- rendering -------------------------------------------------------------------------
    def figure(self) -> Any:
        """The result's main figure (matplotlib), or None."""
        return None

    def to_html(self) -> str:
        raise NotImplementedError(f"{type(self).__name__} must define to_html")  # pragma: no cover

    def heading(self) -> str:
        """The section heading: the class's title (results may name their subject too)."""
        return self.title or self.kind

    def assets(self) -> tuple[str, str]:
        """CSS and JavaScript the fragment needs on its page (the attention viewer's, say)."""
        return "", ""

    def files(self) -> dict[str, str]:
        """Further text files written beside the JSON, by suffix (a table as ``csv``, say)."""
        return {}

    def page(self) -> Page:
        """A self-contained page of this result alone."""
        sub = f"Command: {self.command}" if self.command else "Computed in Python (lenslab API)."
        page = Page(self.heading(), sub)
        page.include(*self.assets())
        page.add(self.heading(), self.to_html(), self.kind or None)
        return page

    def _repr_html_(self) -> str:
        if self.assets() != ("", ""):  # scripts run only inside a frame of their own
            return notebook_frame(self.page().render())
        return self.to_html()


def envelope(result: Result) -> dict:
    """The JSON a result is written as: its dict with ``kind``, ``schema``, version, command."""
    body = result.to_dict()
    clash = {"kind", "schema", "lenslab", "command"} & set(body)
    if clash:  # a programming error in a result class, not a user's
        raise ValueError(f"{type(result).__name__}.to_dict uses reserved keys {sorted(clash)}")
    return {"kind": result.kind, "schema": result.schema, "lenslab": __version__,
            "command": result.command, **body}


def write_result(result: Result, where: Union[str, os.PathLike, Any],
                 command: Optional[str] = None, *, html: bool = True, png: bool = True) -> Path:
    """Write ``result`` as ``<kind>.json``, ``.html`` and ``.png`` into ``where`` and return the
    JSON's path.

    ``where`` is a :class:`lenslab.run.Run` (its ``analysis/`` folder) or a folder. ``command``
    defaults to the one the CLI recorded (:func:`set_command`). Every file is written atomically;
    the JSON last, so a reader that finds it finds the page and figure beside it.
    """
    folder = Path(getattr(where, "analysis_dir", where))
    if folder.exists() and not folder.is_dir():
        raise DataError(f"{folder} exists and is not a folder; choose another --out")
    result.command = current_command() if command is None else command
    # a run folder has one writer at a time (its lock); a plain folder is the caller's
    lock = where.lock(f"writing {result.kind}") if hasattr(where, "lock") else nullcontext()
    with lock:
        folder.mkdir(parents=True, exist_ok=True)
        stem = folder / result.kind
        if html:
            result.page().write(stem.with_suffix(".html"))
        if png:
            fig = result.figure()
            if fig is not None:
                write_png(fig, stem.with_suffix(".png"))
        for suffix, text in result.files().items():
            atomic_write_text(stem.with_suffix("." + suffix), text)
        path = stem.with_suffix(".json")
        atomic_write_json(path, envelope(result))
    return path


def result_class(kind: str) -> Any:
    """The class (or loader function) registered for ``kind``."""
    spec = KINDS.get(kind)
    if spec is None:
        raise DataError(f"unknown result kind {kind!r}; lenslab reads "
                        + ", ".join(sorted(KINDS)))
    module, attr = spec.split(":")
    return getattr(importlib.import_module(module), attr)


def from_data(d: dict, kind: Optional[str] = None) -> Result:
    """A result from its JSON data (``kind`` from the data, else the one given)."""
    if not isinstance(d, dict):
        raise DataError(f"a result is a JSON object, not {type(d).__name__}")
    kind = d.get("kind") if isinstance(d.get("kind"), str) and d.get("kind") in KINDS else kind
    if kind is None:
        raise DataError("the data names no result kind")
    loader = result_class(kind)
    res = loader.from_dict(d) if hasattr(loader, "from_dict") else loader(d)
    res.command = str(d.get("command") or "")
    return res


def read_result(path: Union[str, os.PathLike]) -> Result:
    """Read ``<kind>.json`` back into its result; files written before the protocol (no
    ``kind`` inside) are known by their name."""
    p = Path(path)
    try:
        d = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{p} not found") from None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise DataError(f"{p} is not a readable result ({type(e).__name__}: {e})") from None
    return from_data(d, p.stem)


def dumps_pretty(d: Any) -> str:
    """``d`` as indented JSON (NaN written as a string), for ``<pre>`` blocks."""
    return json.dumps(json.loads(dumps(d)), indent=2)


def command_caption(command: str) -> str:
    return f"<p class='caption'>Command: <code>{escape(command)}</code></p>" if command else ""

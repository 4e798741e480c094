"""The head taxonomy's vocabulary: :class:`HeadClass`, with a positional head's offset kept as a
field of its own (never parsed out of a string).

A head record (``HeadReport.heads``) has ``"class"`` (a :class:`HeadClass`) and ``"offset"``
(the offset ``d`` of a positional head, which attends to ``q - d``; None otherwise). Files
written before this vocabulary spelled a positional head ``"positional(3)"``:
:func:`parse_class` reads both.
"""

from __future__ import annotations

import re
from enum import Enum
from typing import Any, Optional


class HeadClass(str, Enum):
    """What a head does, as the taxonomy decides it against its nulls (see ``heads.py``)."""

    PREVIOUS_TOKEN = "previous-token"
    INDUCTION = "induction"
    DUPLICATE = "duplicate"
    SINK = "sink"
    DELIMITER = "delimiter"
    POSITIONAL = "positional"
    BROAD = "broad"
    OTHER_STRUCTURED = "other-structured"
    RANDOM_LIKE = "random-like"

    def __str__(self) -> str:  # f-strings and tables show the value, not HeadClass.SINK
        return self.value

    @property
    def structured(self) -> bool:
        """A named structure cleared its null (the first six classes)."""
        return self not in (HeadClass.BROAD, HeadClass.OTHER_STRUCTURED, HeadClass.RANDOM_LIKE)

    @property
    def color(self) -> str:
        return _COLORS[self]


_COLORS = {
    HeadClass.PREVIOUS_TOKEN: "#3056d3", HeadClass.INDUCTION: "#b3261e",
    HeadClass.DUPLICATE: "#8e44ad", HeadClass.SINK: "#5b6577", HeadClass.DELIMITER: "#b36b00",
    HeadClass.POSITIONAL: "#1b7f3b", HeadClass.BROAD: "#0f7c8c",
    HeadClass.OTHER_STRUCTURED: "#6d4c41", HeadClass.RANDOM_LIKE: "#9aa3b2",
}

_LEGACY = re.compile(r"^\s*([a-z-]+)\s*(?:\(\s*(-?\d+)\s*\))?\s*$")


def parse_class(value: Any, offset: Any = None) -> tuple[Optional[HeadClass], Optional[int]]:
    """``(HeadClass, offset)`` from a record's class and offset fields, reading the older
    ``"positional(3)"`` spelling too; ``(None, None)`` for a string that names no class (a
    paraphrase verdict shown in the viewer, say)."""
    if isinstance(value, HeadClass):
        return value, _int_or_none(offset)
    m = _LEGACY.match(str(value or ""))
    if not m:
        return None, None
    try:
        cls = HeadClass(m.group(1))
    except ValueError:
        return None, None
    off = _int_or_none(offset) if offset is not None else _int_or_none(m.group(2))
    return cls, off if cls is HeadClass.POSITIONAL else None


def label(cls: Any, offset: Optional[int] = None) -> str:
    """The class as a short label: ``induction``, ``positional(3)``."""
    c, off = parse_class(cls, offset)
    if c is None:
        return str(cls or "")
    return f"{c.value}({off})" if off is not None else c.value


def _int_or_none(v: Any) -> Optional[int]:
    try:
        return None if v is None or isinstance(v, bool) else int(v)
    except (TypeError, ValueError):
        return None

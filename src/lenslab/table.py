"""Reading tables of results (CSV) with errors a user can act on.

A results table is a plain CSV with a header row; a sweep folder holds the same table as
``results.csv``, so every reader here accepts either. Problems the user can fix raise
:class:`lenslab.errors.DataError` with a one-line message (missing file, not UTF-8, missing
columns, non-numeric cells, non-positive sizes); rows whose loss is missing or not finite are
dropped with a :class:`DataWarning` that names them.
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from lenslab._io import read_user_text
from lenslab.errors import DataError

#: Strings read as a missing value in numeric columns.
MISSING = {"", "nan", "NaN", "NAN", "na", "NA", "n/a", "N/A", "null", "None", "none"}


class DataWarning(UserWarning):
    """Something in the input was skipped; the message says what."""


@dataclass
class Table:
    """A CSV read as text: ``columns[name]`` is the list of cells of that column.

    ``lines[i]`` is the 1-based line number of row ``i`` in the file (header is line 1), used to
    name rows in messages.
    """

    path: str
    columns: dict[str, list[str]]
    lines: list[int] = field(default_factory=list)

    @property
    def n_rows(self) -> int:
        return len(self.lines)

    @property
    def name(self) -> str:
        return os.path.basename(self.path) or self.path

    def has(self, *names: str) -> bool:
        return all(n in self.columns for n in names)

    def require(self, names: Iterable[str], purpose: str = "") -> None:
        """Raise :class:`DataError` listing every column in ``names`` that the table lacks."""
        missing = [n for n in names if n not in self.columns]
        if missing:
            what = f" for {purpose}" if purpose else ""
            have = ", ".join(self.columns) or "no columns"
            raise DataError(
                f"{self.name} is missing column{'s' if len(missing) > 1 else ''} "
                f"{', '.join(missing)}{what} (it has: {have})"
            )

    def text(self, name: str) -> list[str]:
        self.require([name])
        return self.columns[name]

    def numeric(self, name: str) -> np.ndarray:
        """Column ``name`` as floats ``[n_rows]``; missing cells become NaN.

        A cell that is neither a number nor a missing marker raises :class:`DataError` naming
        its line.
        """
        self.require([name])
        out = np.empty(self.n_rows)
        for i, cell in enumerate(self.columns[name]):
            s = cell.strip()
            if s in MISSING:
                out[i] = math.nan
                continue
            try:
                out[i] = float(s)
            except ValueError:
                raise DataError(
                    f"{self.name} line {self.lines[i]}: column {name} has {s[:40]!r}, not a number"
                ) from None
        return out

    def where(self, conditions: Sequence[str]) -> "Table":
        """Rows that meet every condition: ``COL=VALUE``, ``COL!=VALUE`` or ``COL~REGEX``
        (a regular expression searched in the cell). Cells are compared as stripped text, and
        as numbers when both sides are numbers (``step=1000`` matches ``1e3``)."""
        table = self
        for cond in [conditions] if isinstance(conditions, str) else conditions:
            m = re.match(r"^\s*([^=!~]+?)\s*(!=|=|~)(.*)$", cond)
            if not m:
                raise DataError(f"--where takes COLUMN=VALUE, COLUMN!=VALUE or COLUMN~REGEX, not {cond!r}")
            col, op, value = m.group(1), m.group(2), m.group(3).strip()
            table.require([col], f"--where {cond}")
            cells = [c.strip() for c in table.columns[col]]
            if op == "~":
                try:
                    rx = re.compile(value)
                except re.error as e:
                    raise DataError(f"--where {cond}: not a regular expression ({e})") from None
                keep = np.array([bool(rx.search(c)) for c in cells], dtype=bool)
            else:
                keep = np.array([_same(c, value) for c in cells], dtype=bool)
                if op == "!=":
                    keep = ~keep
            if not keep.any():
                seen = sorted(set(cells))
                shown = ", ".join(seen[:8]) + (f" and {len(seen) - 8} more" if len(seen) > 8 else "")
                raise DataError(f"{self.name}: no row has {cond.strip()} ({col} has: {shown})")
            table = table.subset(keep)
        return table

    def subset(self, keep: np.ndarray) -> "Table":
        """A new table with the rows where ``keep [n_rows]`` is true."""
        idx = np.flatnonzero(keep)
        return Table(
            self.path,
            {k: [v[i] for i in idx] for k, v in self.columns.items()},
            [self.lines[i] for i in idx],
        )


def _same(cell: str, value: str) -> bool:
    if cell == value:
        return True
    try:
        return float(cell) == float(value)
    except ValueError:
        return False


#: Size suffixes in model names (pythia-1.4b, gpt2-774M, 70m).
_SUFFIX = {"k": 1e3, "m": 1e6, "b": 1e9, "g": 1e9, "t": 1e12}


def size_values(table: Table, name: str) -> np.ndarray:
    """Column ``name`` as positive sizes: numbers, or names that carry a size with a suffix
    (``1.4b``, ``pythia-410m``, ``gpt2-774M``; k, M, B or G, T: the last M/B/T token counts,
    a k token only when there is none, since ``Yi-6B-200K`` names its context in k).
    Raises :class:`DataError` naming the first cells that are neither."""
    table.require([name])
    out = np.empty(table.n_rows)
    bad = []
    for i, cell in enumerate(table.columns[name]):
        s = cell.strip()
        try:
            out[i] = float(s)
        except ValueError:
            found = re.findall(r"(?<![\w.])(\d+(?:\.\d+)?)([kKmMbBgGtT])(?![a-zA-Z0-9])", s)
            # a k-size in a name is usually a context length (Yi-6B-200K, Llama-2-7b-32k):
            # prefer the M/B/T sizes, the last of them
            big = [f for f in found if f[1].lower() != "k"] or found
            out[i] = float(big[-1][0]) * _SUFFIX[big[-1][1].lower()] if big else math.nan
        if not (math.isfinite(out[i]) and out[i] > 0):
            bad.append(i)
    if bad:
        raise DataError(f"{table.name}: {name} must be a positive number or a size like 1.4b or "
                        f"410m in every row; not at {describe_rows(table, bad, [name], limit=4)}")
    return out


def resolve_results(path: str | os.PathLike) -> Path:
    """A CSV file as given, or ``results.csv`` inside a sweep folder."""
    p = Path(path)
    if p.is_dir():
        inner = p / "results.csv"
        if not inner.is_file():
            raise DataError(f"{p} is a folder without results.csv; pass a CSV file or a sweep folder")
        return inner
    if not p.exists():
        raise DataError(f"{p} does not exist; pass a CSV file or a sweep folder with results.csv")
    if not p.is_file():
        raise DataError(f"{p} is not a regular file")
    return p


def read_csv(path: str | os.PathLike) -> Table:
    """Read a CSV (or a sweep folder's ``results.csv``) as a :class:`Table` of strings."""
    p = resolve_results(path)
    text = read_user_text(p, "results CSV")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise DataError(f"{p} is empty; expected a header row and one row per result") from None
    except csv.Error as e:
        raise DataError(f"{p} is not a valid CSV: {e}") from None
    header = [h.strip() for h in header]
    if not any(header):
        raise DataError(f"{p} has an empty header row")
    dupes = sorted({h for h in header if h and header.count(h) > 1})
    if dupes:
        raise DataError(f"{p} has duplicate columns: {', '.join(dupes)}")
    cols: dict[str, list[str]] = {h: [] for h in header if h}
    lines: list[int] = []
    try:
        for row in reader:
            if not row or all(not c.strip() for c in row):
                continue
            line = reader.line_num
            if len(row) > len(header) and any(c.strip() for c in row[len(header):]):
                raise DataError(f"{p} line {line} has {len(row)} cells but the header has {len(header)}")
            for j, h in enumerate(header):
                if h:
                    cols[h].append(row[j] if j < len(row) else "")
            lines.append(line)
    except csv.Error as e:
        raise DataError(f"{p} is not a valid CSV (line {reader.line_num}): {e}") from None
    return Table(str(p), cols, lines)


def describe_rows(table: Table, rows: Sequence[int], cols: Sequence[str], limit: int = 6) -> str:
    """``line 5 (N=1e+06, D=2e+07), line 9 (...)`` for the first ``limit`` of ``rows``."""
    parts = []
    for i in rows[:limit]:
        vals = ", ".join(f"{c}={table.columns[c][i].strip()}" for c in cols if c in table.columns)
        parts.append(f"line {table.lines[i]}" + (f" ({vals})" if vals else ""))
    more = f" and {len(rows) - limit} more" if len(rows) > limit else ""
    return ", ".join(parts) + more


def drop_missing(table: Table, y: str, context: Sequence[str] = ()) -> Table:
    """Drop rows whose ``y`` is missing, NaN or infinite, warning with the rows' lines."""
    v = table.numeric(y)
    bad = ~np.isfinite(v)
    if bad.any():
        rows = list(np.flatnonzero(bad))
        warnings.warn(
            f"{table.name}: dropped {len(rows)} row{'s' if len(rows) > 1 else ''} with "
            f"missing or non-finite {y}: {describe_rows(table, rows, list(context))}",
            DataWarning,
            stacklevel=2,
        )
        table = table.subset(~bad)
    return table


def positive_column(table: Table, name: str) -> np.ndarray:
    """Column ``name`` as floats, raising :class:`DataError` if any value is missing or <= 0."""
    v = table.numeric(name)
    bad = ~(np.isfinite(v) & (v > 0))
    if bad.any():
        rows = list(np.flatnonzero(bad))
        raise DataError(
            f"{table.name}: {name} must be a positive number in every row; "
            f"not at {describe_rows(table, rows, [name], limit=4)}"
        )
    return v

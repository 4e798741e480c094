"""Small file helpers: atomic writes, JSON lines, hashing.

Every file lenslab writes goes through a temporary name in the same folder, is fsynced, and is
renamed into place, so a crash leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable

from lenslab.errors import DataError


def _umask() -> int:
    old = os.umask(0)
    os.umask(old)
    return old


_FILE_MODE = 0o666 & ~_umask()  # what open() would give: mkstemp alone gives 0600


def fsync_dir(path: Path) -> None:
    """Make a rename or a new entry in ``path`` durable."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, _FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


# -- numbers: the one place where values from files and arrays become Python numbers --------


def num(v: Any) -> float:
    """``v`` as a float, NaN when it is not a number (None, a string, a missing cell)."""
    if isinstance(v, bool):
        return float(v)
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def finite_or_none(v: Any) -> float | None:
    """A JSON-safe number: ``v`` as a float, or None when it is NaN, infinite or not a number."""
    f = num(v)
    return f if math.isfinite(f) else None


def plain(obj: Any) -> Any:
    """numpy and torch values as plain Python (arrays as lists, scalars via ``item()``),
    recursively through dicts, lists and tuples; NaN stays NaN."""
    if isinstance(obj, dict):
        return {(k if isinstance(k, str) else str(k)): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if hasattr(obj, "tolist") and callable(obj.tolist):  # numpy arrays, torch tensors, scalars
        return plain(obj.tolist())
    if hasattr(obj, "item") and callable(obj.item) and not isinstance(obj, (str, bytes)):
        return obj.item()
    return obj


def _clean(obj: Any) -> Any:
    """JSON has no NaN/Inf: write them as strings so every line stays valid JSON."""
    obj = plain(obj)
    if isinstance(obj, float):
        if math.isnan(obj):
            return "nan"
        if math.isinf(obj):
            return "inf" if obj > 0 else "-inf"
        return obj
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_clean(v) for v in obj]
    return obj


def dumps(obj: Any, **kw: Any) -> str:
    return json.dumps(_clean(obj), allow_nan=False, **kw)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, dumps(obj, indent=2) + "\n")


def append_jsonl(path: str | os.PathLike, record: dict) -> None:
    """Append one record and flush it to the OS (a SIGKILL loses nothing already returned)."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(dumps(record) + "\n")
        f.flush()


def read_jsonl(path: str | os.PathLike, strict: bool = True) -> list[dict]:
    """The objects of a JSON-lines file. A torn last line (a killed writer) is left out; any
    other line that is not a UTF-8 JSON object is a one-line :class:`DataError` naming the file
    and the line, or, with ``strict=False``, is left out too (a resume drops what it cannot
    read rather than dead-end)."""
    out: list[dict] = []
    p = Path(path)
    if not p.exists():
        return out
    lines = p.read_bytes().split(b"\n")
    last = max((i for i, raw in enumerate(lines) if raw.strip()), default=-1)
    for i, raw in enumerate(lines):
        if not raw.strip():
            continue
        try:
            rec = json.loads(raw.decode("utf-8"))
            if not isinstance(rec, dict):
                raise ValueError("not an object")
        except UnicodeDecodeError as e:
            if strict:
                raise DataError(f"{p} line {i + 1}: not UTF-8 (byte 0x{raw[e.start]:02x}); the "
                                "log is damaged") from None
            continue
        except ValueError:
            if i == last or not strict:
                continue
            raise DataError(f"{p} line {i + 1}: not a JSON object; the log is damaged") from None
        out.append(rec)
    return out


def rewrite_jsonl(path: str | os.PathLike, records: Iterable[dict]) -> None:
    atomic_write_text(path, "".join(dumps(r) + "\n" for r in records))


def read_user_text(path: str | os.PathLike, what: str = "file", error: type | None = None) -> str:
    """A user's text file as str (UTF-8, a BOM allowed), or one clear error that says why not.

    ``error`` is the :class:`~lenslab.errors.LensError` subclass to raise (DataError by default).
    """
    err = error or DataError
    p = Path(path)
    if p.is_dir():
        raise err(f"{p} is a folder; give a {what}")
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise err(f"{what} not found: {p}") from None
    except OSError as e:
        raise err(f"cannot read {p}: {e.strerror or e}") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise err(f"{p}: not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start}); "
                  "save it as UTF-8") from None


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


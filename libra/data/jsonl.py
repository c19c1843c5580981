"""Reading and writing the project's record files with errors that say where.

Every reader reports a bad record as ``DataError`` naming the file, the 1-based line and the field, and
with ``skip_bad`` it skips such records instead and counts them, so one broken line in a 100k-line
dump neither aborts the job nor vanishes silently. Writers go through a temporary file and a rename,
so an interrupted write never leaves a half file behind.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator


class DataError(ValueError):
    """A record that cannot be used: ``path:line: field: problem``."""

    def __init__(self, path: str | os.PathLike, line: int | None, fieldname: str | None, problem: str):
        self.path, self.line, self.field, self.problem = str(path), line, fieldname, problem
        where = self.path if line is None else f"{self.path}:{line}"
        super().__init__(f"{where}: {fieldname + ': ' if fieldname else ''}{problem}")


@dataclass
class Record:
    """One parsed record with its origin, so later checks can still name file and line."""

    data: dict
    path: str
    line: int | None

    def get(self, name: str, kind: type | tuple[type, ...] = str, *, required: bool = True, default: Any = None):
        """The field ``name`` checked against ``kind``; raises DataError naming file, line and field."""
        if name not in self.data or self.data[name] is None:
            if required:
                raise DataError(self.path, self.line, name, "missing field")
            return default
        value = self.data[name]
        if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _as_tuple(kind)):
            want = " or ".join(k.__name__ for k in _as_tuple(kind))
            raise DataError(self.path, self.line, name, f"expected {want}, got {type(value).__name__}")
        return value

    def error(self, fieldname: str | None, problem: str) -> DataError:
        return DataError(self.path, self.line, fieldname, problem)


def _as_tuple(kind) -> tuple:
    return kind if isinstance(kind, tuple) else (kind,)


@dataclass
class SkipCounter:
    """How many bad records were skipped, and the first few reasons (for the end-of-job summary)."""

    skipped: int = 0
    examples: list[str] = field(default_factory=list)

    def add(self, err: ValueError) -> None:
        self.skipped += 1
        if len(self.examples) < 5:
            self.examples.append(str(err))


def reject(err: ValueError, skip_bad: SkipCounter | None) -> None:
    """Raise ``err``, or count it when the caller asked to skip bad records."""
    if skip_bad is None:
        raise err
    skip_bad.add(err)


def read_jsonl(path: str | os.PathLike, *, skip_bad: SkipCounter | None = None) -> Iterator[Record]:
    """Records of a JSON Lines file; blank lines are ignored, every other line must be a JSON object."""
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                reject(DataError(path, number, None, f"not UTF-8 (byte {exc.start}: {raw[exc.start:exc.start + 1]!r})"),
                       skip_bad)
                continue
            if not text.strip():
                continue
            try:
                data = json.loads(text)
                if not isinstance(data, dict):
                    raise ValueError(f"expected a JSON object, got {type(data).__name__}")
            except ValueError as exc:
                reject(DataError(path, number, None, f"malformed JSON ({exc})"), skip_bad)
                continue
            yield Record(data, str(path), number)


def read_records(path: str | os.PathLike, *, skip_bad: SkipCounter | None = None) -> Iterator[Record]:
    """Records of a .jsonl, .json (a list of objects, or an object of objects keyed by anything) or
    .parquet file. JSON and parquet records carry their index as ``line`` (1-based)."""
    suffix = Path(path).suffix.lower()
    if suffix == ".jsonl":
        yield from read_jsonl(path, skip_bad=skip_bad)
        return
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        rows = pq.read_table(path).to_pylist()
    elif suffix == ".json":
        try:
            with open(path, encoding="utf-8") as f:
                loaded = json.load(f)
        except (UnicodeDecodeError, ValueError) as exc:
            raise DataError(path, None, None, f"not a readable JSON file ({exc})") from None
        rows = list(loaded.values()) if isinstance(loaded, dict) else loaded
        if not isinstance(rows, list):
            raise DataError(path, None, None, "expected a JSON list or object of records")
    else:
        raise DataError(path, None, None, f"unknown file type {suffix!r} (use .jsonl, .json or .parquet)")
    for number, data in enumerate(rows, start=1):
        if isinstance(data, dict):
            yield Record(data, str(path), number)
            continue
        reject(DataError(path, number, None, f"expected an object, got {type(data).__name__}"), skip_bad)


def _atomic_write(path: str | os.PathLike, write) -> None:
    """Call ``write(file)`` on a temporary file beside ``path``, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> None:
    """Write rows as JSON Lines, atomically."""
    _atomic_write(path, lambda f: f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write indented JSON (diff-friendly), atomically."""
    _atomic_write(path, lambda f: f.write(json.dumps(data, indent=1, ensure_ascii=False) + "\n"))


def append_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> None:
    """Append rows and flush them to disk: the building block of resumable jobs."""
    with open(path, "a", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())

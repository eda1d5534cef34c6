"""File IO that survives a killed process: atomic writes and JSON lines.

**Atomic writes.** :func:`atomic_write` and :func:`write_json` write into a temporary file in the
target's folder, flush and fsync it, rename it over the target (``os.replace``, atomic on POSIX and
Windows) and fsync the folder where the platform allows it. A reader sees the old file or the new one,
never a part: a process killed mid-write, or a serialiser that raises half-way, leaves the old file
as it was and no temporary file behind.

**JSON lines.** One JSON object per line; a line counts once its newline is written. :func:`read_jsonl`
skips a cut-off last line (the writer died while writing it: no newline, or a last line that is not
JSON) and raises :class:`JsonLinesError` for a line that is not JSON anywhere else: such a file was
damaged after it was written, and dropping records silently would hide it. :func:`cut_torn_line` removes
a cut-off last line before appending, so that the next record starts on a line of its own;
:func:`append_jsonl` appends one record, durable on return unless asked otherwise.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Callable, Iterator

from avcl.errors import UserError


class JsonLinesError(UserError, ValueError):
    """A JSON-lines file with a damaged line that is not its last one (the command line prints it as
    one line: the file and the line)."""

    def __init__(self, path: Path, line: int):
        super().__init__(f"{path}: line {line} is not valid JSON")
        self.path, self.line = path, line


# -------------------------------------------------------------------------------------- atomic writes


def fsync_folder(folder: str | Path) -> None:
    """Make a rename or a new file in ``folder`` durable; a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "wb", **kwargs: Any) -> Iterator[IO]:
    """An open temporary file that replaces ``path`` when the block ends without an exception.

    ``mode`` is ``"w"`` or ``"wb"`` (with ``open``'s other keywords, e.g. ``newline=""``). On an
    exception the temporary file is removed and ``path`` keeps its old content (or stays absent)."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes a whole file: mode 'w' or 'wb', not {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_folder(path.parent)


def atomic_write(
    path: str | Path, data: bytes | memoryview | str | Callable[[IO], None], *, binary: bool = True
) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_open`) and return ``path``.

    ``data``: bytes, a str (written as UTF-8 text), or a function that writes into the open file
    (binary unless ``binary=False``), for content that is produced while it is written."""
    if isinstance(data, str):
        with atomic_open(path, "w", encoding="utf-8") as fh:
            fh.write(data)
    elif callable(data):
        with atomic_open(path, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})) as fh:
            data(fh)
    else:
        with atomic_open(path, "wb") as fh:
            fh.write(data)
    return Path(path)


def write_json(path: str | Path, data: Any, *, indent: int | None = 2, default: Callable | None = None) -> Path:
    """Write ``data`` as JSON (and a final newline) to ``path`` atomically; return ``path``."""

    def dump(fh: IO) -> None:
        json.dump(data, fh, indent=indent, default=default)
        fh.write("\n")

    return atomic_write(path, dump, binary=False)


# ---------------------------------------------------------------------------------------- JSON lines


def scan_jsonl(path: str | Path) -> tuple[list[Any], bool]:
    """``(records, torn)``: the records of a JSON-lines file (none when it does not exist) and whether a
    cut-off last line was skipped. Raises :class:`JsonLinesError` for a damaged line before the last."""
    path = Path(path)
    if not path.exists():
        return [], False
    lines = path.read_bytes().split(b"\n")
    complete, tail = lines[:-1], lines[-1]  # tail: the bytes after the last newline, a cut-off write if any
    records = []
    for number, line in enumerate(complete, start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if number == len(complete) and not tail.strip():
                return records, True  # the last line was cut short, then a newline came from elsewhere
            raise JsonLinesError(path, number) from None
    return records, bool(tail.strip())


def read_jsonl(path: str | Path) -> list[Any]:
    """The records of a JSON-lines file (see :func:`scan_jsonl`): a cut-off last line is skipped, a
    damaged line before it raises :class:`JsonLinesError`; a missing file has none."""
    return scan_jsonl(path)[0]


def cut_torn_line(path: str | Path) -> int:
    """Cut a cut-off last line (see :func:`scan_jsonl`) off ``path`` so that appended lines start on a
    line of their own; return the number of bytes removed."""
    path = Path(path)
    if not path.exists():
        return 0
    data = path.read_bytes()
    keep = data.rfind(b"\n") + 1
    if keep == len(data) and keep:  # ends with a newline: is its last line JSON?
        start = data.rfind(b"\n", 0, keep - 1) + 1
        last = data[start : keep - 1]
        try:
            if last.strip():
                json.loads(last)
        except json.JSONDecodeError:
            keep = start
    if keep < len(data):
        with open(path, "r+b") as f:
            f.truncate(keep)
            f.flush()
            os.fsync(f.fileno())
    return len(data) - keep


def append_jsonl(file: IO[str], record: Any, *, durable: bool = True, default: Callable | None = None) -> None:
    """Append ``record`` as one line to an open text file; flushed, and fsynced unless ``durable=False``
    (for logs, whose last records a crash may lose)."""
    file.write(json.dumps(record, separators=(",", ":"), default=default) + "\n")
    file.flush()
    if durable:
        os.fsync(file.fileno())

"""Safe file I/O: atomic writes, streaming JSONL reads with line numbers, appendable JSONL for resumable jobs."""

import hashlib
import json
import os
import tempfile
from pathlib import Path
from itertools import islice
from typing import Any, Iterable, Iterator

import orjson

from arastory.errors import DataError

_ORJSON_OPTS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


def json_line(obj: Any) -> str:
    """One compact JSON line (UTF-8 text, not \\u escapes), ending in a newline. orjson: ~5x faster than json at 1M rows."""
    return orjson.dumps(obj, option=_ORJSON_OPTS).decode() + "\n"


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write text to `path` through a temporary file and a rename, so readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file ordinary permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, ensure_ascii=False, indent=2) + "\n")


def atomic_write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> None:
    atomic_write_text(path, "".join(json_line(r) for r in rows))


def iter_jsonl(path: str | os.PathLike, on_error: str = "raise", errors: list | None = None) -> Iterator[tuple[int, dict]]:
    """Yield (line number, object) for each non-blank line.

    on_error="raise" stops at the first malformed line with a DataError naming file and line;
    on_error="skip" records the DataError in `errors` and goes on.
    """
    path = Path(path)
    try:
        handle = open(path, encoding="utf-8")
    except FileNotFoundError:
        raise DataError(path, "file not found") from None
    with handle:
        lineno = 0
        while True:
            lineno += 1
            try:
                line = handle.readline()
            except UnicodeDecodeError:
                _fail(DataError(path, "not valid UTF-8", lineno), on_error, errors)
                continue
            if not line:
                break
            if not line.strip():
                continue
            if not line.endswith("\n"):
                # A killed writer can leave a partial last line; it is not data.
                try:
                    obj = orjson.loads(line)
                except json.JSONDecodeError:
                    _fail(DataError(path, "truncated last line", lineno), on_error, errors)
                    break
            else:
                try:
                    obj = orjson.loads(line)
                except json.JSONDecodeError as exc:
                    _fail(DataError(path, f"invalid JSON ({exc.msg})", lineno), on_error, errors)
                    continue
            if not isinstance(obj, dict):
                _fail(DataError(path, "expected a JSON object", lineno), on_error, errors)
                continue
            yield lineno, obj


def _fail(error: DataError, on_error: str, errors: list | None) -> None:
    if on_error == "raise":
        raise error
    if errors is not None:
        errors.append(error)


def read_jsonl(path: str | os.PathLike, on_error: str = "raise") -> list[dict]:
    return [obj for _, obj in iter_jsonl(path, on_error=on_error)]


class JsonlAppender:
    """Append-only JSONL writer for resumable jobs: each row is flushed and fsynced as it is written.

    On open, a partial last line left by a killed run is cut off, so the file always holds whole rows.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _truncate_partial_line(self.path)
        self._handle = open(self.path, "a", encoding="utf-8")

    def write(self, row: dict) -> None:
        self._handle.write(json_line(row))
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        self._handle.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _truncate_partial_line(path: Path) -> None:
    if not path.exists() or path.stat().st_size == 0:
        return
    data = path.read_bytes()
    if data.endswith(b"\n"):
        return
    cut = data.rfind(b"\n") + 1
    with open(path, "r+b") as handle:
        handle.truncate(cut)


def fingerprint(*parts: Any) -> str:
    """A short content hash of JSON-serialisable parts, used to name cached artifacts."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(json.dumps(part, sort_keys=True, ensure_ascii=False, default=str).encode())
        digest.update(b"\x00")
    return digest.hexdigest()[:16]


def file_fingerprint(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def batched(items: Iterable, size: int) -> Iterator[list]:
    """Lists of `size` consecutive items (the last one shorter), streaming: never holds more than one batch."""
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch

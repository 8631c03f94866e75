"""Safe file I/O: atomic writes, byte-safe streaming JSONL reads with true line numbers, appendable JSONL to resume."""

import errno
import hashlib
import json
import logging
import os
import stat
import tempfile
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from arastory.errors import DataError

_ORJSON_OPTS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


def json_line(obj: Any) -> str:
    """One compact JSON line (UTF-8 text, not \\u escapes), ending in a newline. orjson: ~5x json's speed at 1M rows."""
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


BOM = b"\xef\xbb\xbf"
MAX_LINE_BYTES = 32 << 20  # ours: a JSONL record over 32 MiB is no story; it is skipped (or raised) as a bad line
_UTF16_32_BOMS = (b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff")
TRUNCATED = "truncated last line (no newline at the end: an interrupted write?)"


def open_input(path: str | os.PathLike) -> BinaryIO:
    """A regular file opened for binary reading, or a one-line DataError saying why it cannot be read.

    Checked before opening: a FIFO or device would block, a directory or a symlink loop would raise a traceback.
    """
    path = Path(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise DataError(
            path, "file not found" if not path.is_symlink() else "file not found (a dangling symlink)"
        ) from None
    except OSError as error:
        raise DataError(path, f"cannot read: {_os_reason(error)}") from None
    if stat.S_ISDIR(info.st_mode):
        raise DataError(path, "is a directory, not a file")
    if not stat.S_ISREG(info.st_mode):
        raise DataError(path, "is not a regular file (a pipe, socket or device?)")
    try:
        return open(path, "rb")
    except OSError as error:
        raise DataError(path, f"cannot read: {_os_reason(error)}") from None


def _os_reason(error: OSError) -> str:
    if error.errno == errno.ELOOP:
        return "too many levels of symbolic links (a symlink loop)"
    if isinstance(error, PermissionError):
        return "permission denied"
    return (error.strerror or type(error).__name__).lower()


def check_text_start(path: Path, head: bytes) -> None:
    """Whole-file encodings no line-by-line reading can recover from: UTF-16/32 (BOM or NUL bytes)."""
    if head.startswith(_UTF16_32_BOMS):
        raise DataError(path, "is UTF-16 or UTF-32 encoded; save it as UTF-8", 1)
    if b"\x00" in head:
        raise DataError(path, "holds NUL bytes: not a UTF-8 text file (UTF-16 without a BOM, or binary?)", 1)


def iter_lines(handle: BinaryIO, max_line_bytes: int = MAX_LINE_BYTES) -> Iterator[tuple[int, bytes | None]]:
    """(line number, raw bytes) per physical line of a binary file; None for a line over `max_line_bytes` (skipped
    to its end in chunks, so a huge or newline-free file never sits in memory whole)."""
    lineno = 0
    while True:
        raw = handle.readline(max_line_bytes + 1)
        if not raw:
            return
        lineno += 1
        if len(raw) > max_line_bytes and not raw.endswith(b"\n"):
            while (rest := handle.readline(1 << 20)) and not rest.endswith(b"\n"):
                pass
            yield lineno, None
            continue
        yield lineno, raw


def iter_jsonl_entries(
    path: str | os.PathLike,
    max_line_bytes: int = MAX_LINE_BYTES,
) -> Iterator[tuple[int, dict | DataError]]:
    """(line number, object or DataError) for each non-blank line, decoded line by line from bytes.

    A bad line (not UTF-8, not JSON, not an object, too long) is one DataError with its true line number and the
    lines after it are still read; a last line without a newline that does not parse is a truncated write. Problems
    of the file as a whole (missing, a directory, UTF-16, a JSON array) raise a DataError at once.
    """
    path = Path(path)
    with open_input(path) as handle:
        first = True
        for lineno, raw in iter_lines(handle, max_line_bytes):
            if raw is None:
                yield lineno, DataError(path, f"line longer than {_size(max_line_bytes)} (not one record?)", lineno)
                continue
            if lineno == 1:
                check_text_start(path, raw[:4096])
                raw = raw.removeprefix(BOM)
            complete = raw.endswith(b"\n")
            if not raw.strip():
                continue
            try:
                text = raw.decode("utf-8")
                obj = orjson.loads(text)
            except (UnicodeDecodeError, orjson.JSONDecodeError) as exc:
                if first and raw.lstrip().startswith(b"["):
                    raise DataError(
                        path,
                        "holds a JSON array, not JSON Lines (one object per line; convert with `jq -c '.[]'`)",
                        lineno,
                    ) from None
                yield lineno, DataError(path, TRUNCATED if not complete else _bad_line(raw, exc), lineno)
                first = False
                continue
            if not isinstance(obj, dict):
                if first and isinstance(obj, list):
                    raise DataError(
                        path,
                        "holds a JSON array, not JSON Lines (one object per line; convert with `jq -c '.[]'`)",
                        lineno,
                    )
                yield lineno, DataError(path, f"expected a JSON object, found {_json_type(obj)}", lineno)
            else:
                yield lineno, obj
            first = False


def _size(n: int) -> str:
    return f"{n >> 20} MiB" if n >= 1 << 20 else f"{n} bytes"


def _bad_line(raw: bytes, exc: UnicodeDecodeError | json.JSONDecodeError) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return f"not valid UTF-8 (byte {raw[exc.start]:#04x} at column {exc.start + 1}); save the file as UTF-8"
    try:  # the standard library names the problem better than orjson ("Expecting ',' delimiter at column 33")
        json.loads(raw.decode("utf-8").rstrip("\r\n"))
    except json.JSONDecodeError as detail:
        exc = detail
    except (RecursionError, ValueError):  # nested too deep for it: orjson's own words
        pass
    return f"invalid JSON ({exc.msg} at column {exc.colno})"


def _json_type(obj) -> str:
    return {list: "an array", str: "a string", bool: "true/false", type(None): "null"}.get(type(obj), "a number")


def iter_jsonl(
    path: str | os.PathLike, on_error: str = "raise", errors: list | None = None
) -> Iterator[tuple[int, dict]]:
    """Yield (line number, object) for each non-blank line (see `iter_jsonl_entries` for what counts as bad).

    on_error="raise" stops at the first bad line with a DataError naming file and line;
    on_error="skip" records the DataError in `errors` and goes on with the next line.
    """
    for lineno, entry in iter_jsonl_entries(path):
        if isinstance(entry, DataError):
            _fail(entry, on_error, errors)
            continue
        yield lineno, entry


class _DecodedLines:
    """A binary file's lines decoded one by one for the csv module; lines that are not UTF-8 (or too long) are
    remembered by number (the record holding them is reported alone) and passed on as replacement text."""

    def __init__(self, handle: BinaryIO, path: Path, max_line_bytes: int = MAX_LINE_BYTES):
        self.lines, self.path = iter_lines(handle, max_line_bytes), path
        self.bad: dict[int, str] = {}
        self.max_line_bytes = max_line_bytes

    def __iter__(self):
        for lineno, raw in self.lines:
            if raw is None:
                self.bad[lineno] = f"line longer than {_size(self.max_line_bytes)}"
                yield "\n"
                continue
            if lineno == 1:
                check_text_start(self.path, raw[:4096])
                raw = raw.removeprefix(BOM)
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                self.bad[lineno] = _bad_line(raw, exc)
                yield raw.decode("utf-8", errors="replace")


def iter_csv_records(path: str | os.PathLike) -> Iterator[tuple[int, list[str] | DataError]]:
    """(line the record starts on, its values) per CSV record, the header first; read from bytes line by line.

    A record on a line that is not UTF-8 is a DataError for that record alone. Broken quoting (an unclosed quote
    that would swallow the rows after it into one field) is a DataError for the whole file, raised at once.
    """
    import csv

    csv.field_size_limit(MAX_LINE_BYTES)  # stories can be long; a field over this is not a story
    path = Path(path)
    with open_input(path) as handle:
        lines = _DecodedLines(handle, path)
        reader = csv.reader(lines, strict=True)
        last = 0
        while True:
            start = last + 1
            try:
                values = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise DataError(
                    path,
                    f"broken quoting in the record that starts on line {start} ({exc}); an "
                    "unclosed quote would merge the rows after it into one field",
                    start,
                ) from None
            last = reader.line_num
            bad = [n for n in range(start, last + 1) if n in lines.bad]
            yield start, (DataError(path, lines.bad[bad[0]], bad[0]) if bad else values)


def _fail(error: DataError, on_error: str, errors: list | None) -> None:
    if on_error == "raise":
        raise error
    if errors is not None:
        errors.append(error)


def read_jsonl(path: str | os.PathLike, on_error: str = "raise") -> list[dict]:
    return [obj for _, obj in iter_jsonl(path, on_error=on_error)]


class JsonlAppender:
    """Append-only JSONL writer for resumable jobs: each row is flushed and fsynced as it is written.

    On open, a partial last line left by a killed run is cut off (and counted in `trimmed_bytes`, with a warning),
    so the file always holds whole rows; a last row that is complete but lacks only its newline is kept.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.trimmed_bytes = _truncate_partial_line(self.path)
        if self.trimmed_bytes:
            logging.getLogger("arastory").warning(
                "%s: dropped a partial last line (%d bytes) left by an interrupted run; that row is redone",
                self.path,
                self.trimmed_bytes,
            )
        self._handle = open(self.path, "a", encoding="utf-8")

    def write(self, row: dict, sync: bool = True) -> None:
        """One row, flushed to the OS (a killed process keeps it); fsynced too unless `sync` is False (then call
        `sync()` where the rows must survive a machine crash, e.g. before a checkpoint that refers to them)."""
        self._handle.write(json_line(row))
        self._handle.flush()
        if sync:
            self.sync()

    def sync(self) -> None:
        os.fsync(self._handle.fileno())

    def write_many(self, rows: list[dict]) -> None:
        """Rows written together and fsynced once (a batch): a kill loses at most this batch, and a million rows
        cost a thousand fsyncs, not a million."""
        if rows:
            self._handle.write("".join(json_line(row) for row in rows))
            self._handle.flush()
            os.fsync(self._handle.fileno())

    def close(self) -> None:
        self._handle.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _truncate_partial_line(path: Path) -> int:
    """Cut a last line that has no newline; returns the bytes cut. A last line that parses (a row written whole
    but for its newline, which readers already count as done) gets its newline instead, so no row is lost."""
    if not path.exists() or path.stat().st_size == 0:
        return 0
    with open(path, "r+b") as handle:
        size = handle.seek(0, os.SEEK_END)
        tail_start = max(0, size - (1 << 16))
        while True:  # find the last newline, reading back from the end in 64 KiB steps
            handle.seek(tail_start)
            tail = handle.read(size - tail_start)
            if tail.endswith(b"\n"):
                return 0
            cut = tail.rfind(b"\n")
            if cut >= 0 or tail_start == 0:
                cut = tail_start + cut + 1
                break
            tail_start = max(0, tail_start - (1 << 16))
        handle.seek(cut)
        last = handle.read()
        if _is_json_object(last.removeprefix(BOM) if cut == 0 else last):
            handle.write(b"\n")
            return 0
        handle.truncate(cut)
        return size - cut


def _is_json_object(raw: bytes) -> bool:
    try:
        return isinstance(orjson.loads(raw), dict)
    except orjson.JSONDecodeError:
        return False


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


LOCK_FILE = ".arastory.lock"


class DirLock:
    """This process's exclusive claim on an output dir: `fcntl.flock` on `<dir>/.arastory.lock`.

    The kernel drops the lock when its holder exits in any way (SIGKILL included), so a lock file left by a dead
    process is simply taken over; the file names the holder (pid, command, start time) for the one-line error a
    second writer gets.
    """

    def __init__(self, directory: str | os.PathLike):
        self.dir = Path(directory)
        self.path = self.dir / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> "DirLock":
        import fcntl
        import sys
        import time

        from arastory.errors import LockError

        if self.dir.exists() and not self.dir.is_dir():
            raise DataError(self.dir, "is a file, not a directory (the out dir)")
        self.dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _lock_holder(fd)
            os.close(fd)
            raise LockError(self.dir, holder) from None
        previous = _lock_holder(fd, wait=0)
        if previous:
            logging.getLogger("arastory").info("%s: took over the lock of an ended process (%s)", self.dir, previous)
        command = " ".join([os.path.basename(sys.executable), *sys.argv])[:200]
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}: {command} (since {time.strftime('%Y-%m-%d %H:%M:%S')})\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def _lock_holder(fd: int, wait: float = 1.0) -> str:
    """What the lock file says about its holder (it may be mid-write for a moment after the holder locked it)."""
    import time

    deadline = time.monotonic() + wait
    while True:
        text = os.pread(fd, 1024, 0).decode("utf-8", errors="replace").strip()
        if text or time.monotonic() >= deadline:
            return text
        time.sleep(0.02)

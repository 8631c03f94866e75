"""User-facing errors: one line that names the file, line or config key at fault."""

from __future__ import annotations

import os


class ArastoryError(Exception):
    """An error caused by the user's input or configuration; printed as one line, exit code 2."""

    exit_code = 2


class ConfigError(ArastoryError):
    """A configuration value is invalid: the message names the key and the allowed values."""

    def __init__(self, key: str, message: str):
        super().__init__(f"config error: {key}: {message}")
        self.key = key


class DataError(ArastoryError):
    """A data file is malformed: the message names the file (and line when known)."""

    def __init__(self, path: str | os.PathLike[str], message: str, line: int | None = None):
        where = f"{path}:{line}" if line is not None else f"{path}"
        super().__init__(f"data error: {where}: {message}")
        self.path, self.line = str(path), line


class LockError(ArastoryError):
    """Another process is writing to the same output dir: the message names it (pid, command)."""

    def __init__(self, directory: str | os.PathLike[str], holder: str):
        who = holder or "pid unknown"
        super().__init__(
            f"lock error: {directory}: in use by another arastory process ({who}); "
            "wait for it to finish or use another out dir"
        )
        self.directory, self.holder = str(directory), holder

"""Content-addressed, resumable array caches: .npy files memory-mapped on disk and filled chunk by chunk."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Literal

import numpy as np

from arastory.io import atomic_write_json
from arastory.paths import cache_dir

STATE_FILE = "state.json"


class ArrayStore:
    """Arrays of `capacity` rows under cache_dir()/filter/<key>/, written in order; `done` rows survive a kill.

    `columns` maps a name to (dtype, row shape). A store whose state says complete is a cache hit: reading
    it never recomputes anything. Rows are flushed before `done` advances, so a resumed job restarts at `done`.
    """

    def __init__(
        self, key: str, capacity: int, columns: dict[str, tuple[str, tuple[int, ...]]], root: Path | None = None
    ):
        self.dir = (root or cache_dir() / "filter") / key
        self.capacity, self.columns = max(1, capacity), columns
        self.state = self._read_state()
        if self.state.get("capacity") != self.capacity or self.state.get("columns") != _plain(columns):
            self._reset()
        self._arrays: dict[str, np.memmap] = {}

    @property
    def complete(self) -> bool:
        return bool(self.state.get("complete"))

    @property
    def done(self) -> int:
        return int(self.state.get("done", 0))

    @property
    def rows(self) -> int:
        return int(self.state["rows"]) if self.complete else self.done

    def _read_state(self) -> dict:
        path = self.dir / STATE_FILE
        try:
            return json.loads(path.read_text()) if path.exists() else {}
        except json.JSONDecodeError:
            return {}

    def _reset(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True, exist_ok=True)
        for name, (dtype, shape) in self.columns.items():
            np.lib.format.open_memmap(
                self.dir / f"{name}.npy", mode="w+", dtype=dtype, shape=(self.capacity, *shape)
            ).flush()
        self.state = {"capacity": self.capacity, "columns": _plain(self.columns), "done": 0, "complete": False}
        atomic_write_json(self.dir / STATE_FILE, self.state)

    def _array(self, name: str, mode: Literal["r", "r+"]) -> np.memmap:
        if name not in self._arrays:
            self._arrays[name] = np.load(self.dir / f"{name}.npy", mmap_mode=mode)
        return self._arrays[name]

    def write(self, start: int, values: dict[str, np.ndarray]) -> None:
        """Store rows [start, start+n) of every column, flush them, then advance `done`."""
        n = len(next(iter(values.values())))
        for name, array in values.items():
            target = self._array(name, "r+")
            target[start : start + n] = array
            target.flush()
        self.state["done"] = start + n
        atomic_write_json(self.dir / STATE_FILE, self.state)

    @classmethod
    def open_complete(cls, key: str, root: Path | None = None) -> ArrayStore | None:
        """The finished store under `key`, or None (a miss): opening a hit needs no column sizes."""
        path = (root or cache_dir() / "filter") / key / STATE_FILE
        try:
            state = json.loads(path.read_text()) if path.exists() else {}
        except json.JSONDecodeError:
            return None
        if not state.get("complete"):
            return None
        columns = {k: (d, tuple(s)) for k, (d, s) in state["columns"].items()}
        return cls(key, state["capacity"], columns, root)

    def finish(self, rows: int, **meta: object) -> None:
        self.state.update(done=rows, rows=rows, complete=True, meta=meta)
        atomic_write_json(self.dir / STATE_FILE, self.state)
        self._arrays.clear()

    def read(self, name: str) -> np.ndarray:
        """The first `rows` rows of a column, memory-mapped read-only."""
        return np.load(self.dir / f"{name}.npy", mmap_mode="r")[: self.rows]


def _plain(columns: dict) -> dict:
    return {k: [str(np.dtype(d)), list(s)] for k, (d, s) in columns.items()}

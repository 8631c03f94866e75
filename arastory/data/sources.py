"""Training data sources built from config (`data.synthetic`, `data.translated`): where records come from and how many."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from arastory.data.readers import read_parallel_jsonl, read_stories
from arastory.errors import ConfigError
from arastory.records import ParallelRecord, StoryRecord


@dataclass
class StorySource:
    """Prompt→story records in MSA, Egyptian or Moroccan: `path` is `bundled`, a JSONL file, a released CSV or a folder."""

    path: str = "bundled"
    size: int | None = None        # per-variety cap after the held-out split (nested across sizes)
    key: str = "data.synthetic"

    def load(self) -> list[StoryRecord]:
        if self.path == "bundled":
            from arastory.data.bundled import load_bundled_stories
            return load_bundled_stories()
        if not Path(self.path).exists():
            raise ConfigError(f"{self.key}.path", f"'{self.path}' does not exist (use 'bundled', a .jsonl, a released .csv or a folder)")
        return read_stories(self.path)


@dataclass
class ParallelSource:
    """EN→AR translated pairs; training uses the Arabic side as MSA examples."""

    path: str = "bundled"
    size: int | None = None
    key: str = "data.translated"

    def load_pairs(self) -> list[ParallelRecord]:
        if self.path == "bundled":
            from arastory.data.bundled import load_bundled_parallel
            return load_bundled_parallel()
        if not Path(self.path).exists():
            raise ConfigError(f"{self.key}.path", f"'{self.path}' does not exist (use 'bundled' or a parallel .jsonl)")
        return read_parallel_jsonl(self.path)

    def load(self) -> list[StoryRecord]:
        return [pair.as_story() for pair in self.load_pairs()]

    def input_path(self) -> Path:
        """The parallel .jsonl behind `path` (the bundled file for `bundled`), for the streaming filter."""
        if self.path == "bundled":
            from arastory.data.bundled import PARALLEL_FILE
            return PARALLEL_FILE
        if not Path(self.path).exists():
            raise ConfigError(f"{self.key}.path", f"'{self.path}' does not exist (use 'bundled' or a parallel .jsonl)")
        return Path(self.path)

"""Training data sources from config (`data.synthetic`, `data.translated`): where records come from and how many."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from arastory.budget import check_failure_budget
from arastory.data.readers import iter_parallel_jsonl, iter_stories, read_parallel_jsonl
from arastory.data.stored import TextStore
from arastory.data.validate import label_disagreement, screen_pairs, screen_stories
from arastory.errors import ConfigError, DataError
from arastory.records import ParallelRecord, StoryRecord

MAX_FAILURE_RATE = 0.05  # ours: more unusable records than this stops training (fix the data, or raise the budget)


@dataclass
class StorySource:
    """Prompt→story records in MSA, Egyptian or Moroccan; `path`: `bundled`, a JSONL file, a released CSV, a folder."""

    path: str = "bundled"
    size: int | None = None  # per-variety cap after the held-out split (nested across sizes)
    key: str = "data.synthetic"
    max_failure_rate: float = MAX_FAILURE_RATE  # share of unusable records (skipped, counted) tolerated
    check_labels: bool = True  # the dialect identifier must read a dialect's stories mostly as that dialect
    skipped: list[str] = field(default_factory=list, repr=False)  # filled by load(): why each record was skipped

    def load(self) -> list[StoryRecord]:
        if self.path == "bundled":
            from arastory.data.bundled import load_bundled_stories

            return load_bundled_stories()
        if not Path(self.path).exists() and not Path(self.path).is_symlink():
            raise ConfigError(
                f"{self.key}.path",
                f"'{self.path}' does not exist (use 'bundled', a .jsonl, a released .csv or a folder)",
            )
        bad: list[DataError] = []
        store = TextStore()  # the stories stream from the file; their texts wait on disk (`StoredStory`)
        screened = screen_stories(iter_stories(self.path, skipped=bad), keep=store.add)
        if self.check_labels and screened.kept:
            finding = _label_finding(self.path, screened.kept)
            if finding:
                raise DataError(self.path, f"{finding} (set {self.key}.check_labels=false to train on it anyway)")
        self.skipped = [str(e) for e in bad] + screened.skipped
        return _within_budget(self.key, self.path, screened.kept, self.skipped, self.max_failure_rate)


@dataclass
class ParallelSource:
    """EN→AR translated pairs; training uses the Arabic side as MSA examples."""

    path: str = "bundled"
    size: int | None = None
    key: str = "data.translated"
    max_failure_rate: float = MAX_FAILURE_RATE
    skipped: list[str] = field(default_factory=list, repr=False)  # filled by load_pairs()

    def load_pairs(self) -> list[ParallelRecord]:
        if self.path == "bundled":
            from arastory.data.bundled import load_bundled_parallel

            return load_bundled_parallel()
        self._check_path()
        bad: list[DataError] = []
        screened = screen_pairs(read_parallel_jsonl(self.path, skipped=bad))
        self.skipped = [str(e) for e in bad] + screened.skipped
        return _within_budget(self.key, self.path, screened.kept, self.skipped, self.max_failure_rate)

    def load(self) -> list[StoryRecord]:
        """The Arabic sides as training records; from a file, streamed, their texts kept on disk (`StoredStory`)."""
        if self.path == "bundled":
            return [pair.as_story() for pair in self.load_pairs()]
        self._check_path()
        bad: list[DataError] = []
        store = TextStore()
        screened = screen_pairs(
            iter_parallel_jsonl(self.path, skipped=bad), keep=lambda pair: store.add(pair.as_story())
        )
        self.skipped = [str(e) for e in bad] + screened.skipped
        return _within_budget(self.key, self.path, screened.kept, self.skipped, self.max_failure_rate)

    def _check_path(self) -> None:
        if not Path(self.path).exists() and not Path(self.path).is_symlink():
            raise ConfigError(f"{self.key}.path", f"'{self.path}' does not exist (use 'bundled' or a parallel .jsonl)")

    def input_path(self) -> Path:
        """The parallel .jsonl behind `path` (the bundled file for `bundled`), for the streaming filter."""
        if self.path == "bundled":
            from arastory.data.bundled import PARALLEL_FILE

            return PARALLEL_FILE
        if not Path(self.path).exists():
            raise ConfigError(f"{self.key}.path", f"'{self.path}' does not exist (use 'bundled' or a parallel .jsonl)")
        return Path(self.path)


_LABEL_FINDINGS: dict[tuple, str | None] = {}  # training loads a source up to three times; read the labels once


def _label_finding(path: str, records: list[StoryRecord]) -> str | None:
    from arastory.dialect import ngram_identifier

    key = (str(Path(path).resolve()), len(records), hash(tuple(r.id for r in records)))
    if key not in _LABEL_FINDINGS:
        _LABEL_FINDINGS[key] = label_disagreement(records, ngram_identifier())
    return _LABEL_FINDINGS[key]


def _within_budget(key: str, path, kept: list, skipped: list[str], max_failure_rate: float) -> list:
    """`kept`, after a one-line warning counting the skipped records; a DataError-style stop (exit 2) when nothing
    is usable or more than `max_failure_rate` of the records are not."""
    if skipped:
        logging.getLogger("arastory").warning(
            "%s: skipped %d of %d records from %s (first: %s)",
            key,
            len(skipped),
            len(kept) + len(skipped),
            path,
            skipped[0],
        )
    check_failure_budget(
        f"{key}.path={path}",
        len(kept),
        len(skipped),
        max_failure_rate,
        noun="records",
        detail=f"first problem: {skipped[0]}" if skipped else "",
        key=f"{key}.max_failure_rate",
        failed_are_input=True,
    )
    return kept

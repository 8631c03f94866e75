"""Read story and parallel records from JSONL, the study's released CSVs, Parquet files or HF datasets."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from arastory.data.validate import is_placeholder, screen_stories
from arastory.errors import DataError
from arastory.io import iter_csv_records, iter_jsonl, open_input
from arastory.records import VARIETIES, ParallelRecord, StoryRecord

if TYPE_CHECKING:
    import datasets

# The released files are named after the variety in English (Formatted-Egyptian-prompts-...csv).
RELEASED_NAME_TO_VARIETY = {"msa": "msa", "egyptian": "egy", "moroccan": "mor", "egy": "egy", "mor": "mor"}

STORY_REQUIRED = ("id", "variety", "prompt", "story")
PARALLEL_REQUIRED = ("id", "en_prompt", "en_story", "ar_prompt", "ar_story")


def variety_from_filename(path: str | Path) -> str | None:
    """Guess the variety from a file name such as Formatted-Moroccan-prompts-stories.csv or stories_egy.jsonl."""
    for token in re.split(r"[^a-z]+", Path(path).stem.lower()):
        if token in RELEASED_NAME_TO_VARIETY:
            return RELEASED_NAME_TO_VARIETY[token]
    return None


def _bad(error: DataError, skipped: list | None) -> None:
    """Raise a bad record's DataError, or count it in `skipped` (the caller's counted skips)."""
    if skipped is None:
        raise error
    skipped.append(error)


def _missing_text(obj: dict, keys: tuple[str, ...]) -> list[str]:
    """Required text fields that are absent, not text, empty, or a spreadsheet placeholder ("NaN", "None", ...)."""
    return [k for k in keys if not isinstance(obj.get(k), str) or is_placeholder(obj[k])]


def read_story_jsonl(path: str | Path, source: str | None = None, skipped: list | None = None) -> list[StoryRecord]:
    """Story records; a bad line or record raises a DataError (file:line), or is counted in `skipped` when given."""
    return list(iter_story_jsonl(path, source, skipped))


def iter_story_jsonl(path: str | Path, source: str | None = None, skipped: list | None = None) -> Iterator[StoryRecord]:
    """`read_story_jsonl`'s records one at a time."""
    for lineno, obj in iter_jsonl(path, on_error="raise" if skipped is None else "skip", errors=skipped):
        missing = _missing_text(obj, STORY_REQUIRED)
        if missing:
            _bad(DataError(path, f"missing or empty field(s): {', '.join(missing)}", lineno), skipped)
            continue
        if obj["variety"] not in VARIETIES:
            _bad(DataError(path, f"variety '{obj['variety']}' is not one of: {', '.join(VARIETIES)}", lineno), skipped)
            continue
        record = StoryRecord.from_dict(obj)
        if source:
            record.source = source
        yield record


def read_released_csv(path: str | Path, variety: str | None = None, skipped: list | None = None) -> list[StoryRecord]:
    """The study's release format: columns `Prompt` and `Story` (plus an unnamed index), one file per variety."""
    return list(iter_released_csv(path, variety, skipped))


def iter_released_csv(
    path: str | Path, variety: str | None = None, skipped: list | None = None
) -> Iterator[StoryRecord]:
    """`read_released_csv`'s records one at a time."""
    path = Path(path)
    variety = variety or variety_from_filename(path)
    if variety not in VARIETIES:
        raise DataError(
            path, f"cannot tell the variety from the file name; name it after one of {', '.join(VARIETIES)}"
        )
    rows = iter_csv_records(path)
    _, columns = next(rows, (1, None))
    if not columns:
        raise DataError(path, "empty CSV file (no header row)", 1)
    if isinstance(columns, DataError):
        raise columns
    for needed in ("Prompt", "Story"):
        if needed not in columns:
            raise DataError(path, f"missing column '{needed}' (columns: {', '.join(c for c in columns if c)})", 1)
    count = 0
    for line, values in rows:
        if isinstance(values, DataError):
            _bad(values, skipped)
            continue
        if not any(v.strip() for v in values):
            continue
        if len(values) != len(columns):
            _bad(DataError(path, f"expected {len(columns)} columns, found {len(values)}", line), skipped)
            continue
        row = dict(zip(columns, values, strict=False))
        prompt, story = row["Prompt"].strip(), row["Story"].strip()
        if is_placeholder(prompt) or is_placeholder(story):
            _bad(DataError(path, "empty Prompt or Story (or a placeholder such as NaN/None)", line), skipped)
            continue
        index = (row.get("") or str(count)).strip()
        count += 1
        yield StoryRecord(
            id=f"released-{variety}-{index}", variety=variety, prompt=prompt, story=story, source="released"
        )


def read_stories(
    path: str | Path, variety: str | None = None, source: str | None = None, skipped: list | None = None
) -> list[StoryRecord]:
    """Story records from a .jsonl, a released-format .csv, or a directory of them.

    With `skipped=None` any bad line or unusable record (see validate.screen_stories: unknown variety, NaN/None
    text, too little Arabic script, a repeated id or story) is a one-line DataError; with a list, bad lines are
    counted in it and skipped, and the caller screens the records (training's sources count and budget them).
    """
    records = _read_story_files(Path(path), variety, source, skipped)
    if skipped is None:
        if not records:
            raise DataError(path, "holds no story records")
        screened = screen_stories(records)
        if screened.skipped:
            raise DataError(path, f"{len(screened.skipped)} unusable record(s), e.g. {screened.skipped[0]}")
    return records


def _read_story_files(path: Path, variety: str | None, source: str | None, skipped: list | None) -> list[StoryRecord]:
    return list(iter_stories(path, variety, source, skipped))


def iter_stories(
    path: str | Path, variety: str | None = None, source: str | None = None, skipped: list | None = None
) -> Iterator[StoryRecord]:
    """`read_stories`'s records one at a time, unscreened (a bad line raises, or is counted in `skipped`)."""
    path = Path(path)
    if path.is_dir():
        try:
            files = sorted(p for p in path.iterdir() if p.suffix in (".jsonl", ".csv"))
        except OSError as error:
            raise DataError(path, f"cannot list the directory: {error.strerror or error}") from None
        if not files:
            raise DataError(path, "directory holds no .jsonl or .csv files")
        for file in files:
            yield from iter_stories(file, variety, source, skipped)
        return
    if not path.exists():
        open_input(path).close()  # the precise reason: not found, a dangling symlink, a symlink loop
    if path.suffix == ".csv":
        yield from iter_released_csv(path, variety=variety, skipped=skipped)
    elif path.suffix == ".jsonl":
        yield from iter_story_jsonl(path, source=source, skipped=skipped)
    else:
        raise DataError(path, "unsupported story file type (use .jsonl or the released .csv format)")


def read_parallel_jsonl(path: str | Path, skipped: list | None = None) -> list[ParallelRecord]:
    return list(iter_parallel_jsonl(path, skipped))


def iter_parallel_jsonl(path: str | Path, skipped: list | None = None) -> Iterator[ParallelRecord]:
    """The pairs of a parallel .jsonl one at a time (bad lines: raised, or appended to `skipped` and passed over)."""
    for lineno, obj in iter_jsonl(path, on_error="raise" if skipped is None else "skip", errors=skipped):
        missing = _missing_text(obj, PARALLEL_REQUIRED)
        if missing:
            _bad(DataError(path, f"missing or empty field(s): {', '.join(missing)}", lineno), skipped)
            continue
        yield ParallelRecord.from_dict(obj)


def to_hf_dataset(records: Iterable[StoryRecord | ParallelRecord]) -> datasets.Dataset:
    """Records as a `datasets.Dataset` (features and meta kept as JSON strings so columns stay uniform)."""
    import json

    import datasets

    rows = []
    for record in records:
        row = record.to_dict()
        for key in ("features", "meta"):
            if key in row:
                row[key] = json.dumps(row[key], ensure_ascii=False)
        rows.append(row)
    return datasets.Dataset.from_list(rows)

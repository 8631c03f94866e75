"""Read story and parallel records from JSONL, the study's released CSVs, Parquet files or HF datasets."""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Iterable

from arastory.errors import DataError
from arastory.io import iter_jsonl
from arastory.records import VARIETIES, ParallelRecord, StoryRecord

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


def read_story_jsonl(path: str | Path, source: str | None = None) -> list[StoryRecord]:
    records = []
    for lineno, obj in iter_jsonl(path):
        missing = [k for k in STORY_REQUIRED if not isinstance(obj.get(k), str) or not obj.get(k).strip()]
        if missing:
            raise DataError(path, f"missing or empty field(s): {', '.join(missing)}", lineno)
        record = StoryRecord.from_dict(obj)
        if source:
            record.source = source
        records.append(record)
    return records


def read_released_csv(path: str | Path, variety: str | None = None) -> list[StoryRecord]:
    """The study's release format: columns `Prompt` and `Story` (plus an unnamed index), one file per variety."""
    path = Path(path)
    variety = variety or variety_from_filename(path)
    if variety not in VARIETIES:
        raise DataError(path, f"cannot tell the variety from the file name; name it after one of {', '.join(VARIETIES)}")
    try:
        handle = open(path, encoding="utf-8", newline="")
    except FileNotFoundError:
        raise DataError(path, "file not found") from None
    with handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        for needed in ("Prompt", "Story"):
            if needed not in columns:
                raise DataError(path, f"missing column '{needed}' (columns: {', '.join(c for c in columns if c)})", 1)
        records = []
        for row in reader:
            line = reader.line_num
            prompt, story = (row.get("Prompt") or "").strip(), (row.get("Story") or "").strip()
            if not prompt or not story:
                raise DataError(path, "empty Prompt or Story", line)
            index = (row.get("") or str(len(records))).strip()
            records.append(StoryRecord(id=f"released-{variety}-{index}", variety=variety, prompt=prompt,
                                       story=story, source="released"))
    return records


def read_stories(path: str | Path, variety: str | None = None, source: str | None = None) -> list[StoryRecord]:
    """Story records from a .jsonl, a released-format .csv, or a directory of them."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in (".jsonl", ".csv"))
        if not files:
            raise DataError(path, "directory holds no .jsonl or .csv files")
        return [r for f in files for r in read_stories(f, variety=variety, source=source)]
    if not path.exists():
        raise DataError(path, "file not found")
    if path.suffix == ".csv":
        return read_released_csv(path, variety=variety)
    if path.suffix == ".jsonl":
        return read_story_jsonl(path, source=source)
    raise DataError(path, "unsupported story file type (use .jsonl or the released .csv format)")


def read_parallel_jsonl(path: str | Path) -> list[ParallelRecord]:
    records = []
    for lineno, obj in iter_jsonl(path):
        missing = [k for k in PARALLEL_REQUIRED if not isinstance(obj.get(k), str) or not obj.get(k).strip()]
        if missing:
            raise DataError(path, f"missing or empty field(s): {', '.join(missing)}", lineno)
        records.append(ParallelRecord.from_dict(obj))
    return records


def to_hf_dataset(records: Iterable[StoryRecord | ParallelRecord]):
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

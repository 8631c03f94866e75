"""Stream English (prompt, story) records from JSONL, CSV, Parquet, a saved HF dataset dir or an HF dataset id.

Rows are yielded one at a time (never the whole file in memory), each either a `SourceItem` or a `DataError`
naming the file and line (or row) of a bad record, so the caller decides to skip or stop. Problems with the
source as a whole (missing file, missing column) are raised at once: no record of such a source can be read.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from arastory.data.validate import is_placeholder
from arastory.errors import ConfigError, DataError
from arastory.io import iter_csv_records, iter_jsonl_entries, open_input
from arastory.text import latin_share

if TYPE_CHECKING:
    from omegaconf import DictConfig

# Field names tried, in order, when `fields.*` is left null (TinyStories has `text`; the study's CSVs `Prompt`/`Story`).
AUTO_STORY = ("story", "text", "Story", "en_story")
AUTO_PROMPT = ("prompt", "Prompt", "en_prompt")
AUTO_ID = ("id", "ID")
FILE_TYPES = (".jsonl", ".csv", ".parquet")
DATA_DIR_FILES = (".jsonl", ".json", ".csv", ".parquet", ".arrow")  # what `datasets` loads from a plain folder
MIN_ENGLISH_SHARE = 0.5  # ours: a source story with fewer Latin letters than this is not English (skipped, counted)
SCRIPT_SAMPLE_CHARS = 20_000  # the script share is read from the start of a story (a 20 MB one costs no more)


@dataclass
class SourceItem:
    """One English record to translate; `prompt` is None for a story-only source."""

    id: str
    prompt: str | None
    story: str
    where: str  # file:line (or dataset:row) for messages


@dataclass
class Fields:
    """Which field holds what; None means: pick the first of the usual names present."""

    story: str | None = None
    prompt: str | None = None
    id: str | None = None
    story_only: bool = False  # true: ignore any prompt field (TinyStories)

    def resolve(self, columns: list[str], path: str, line: int | None = None, noun: str = "column") -> Fields:
        """Concrete names for these columns; a missing named column is fatal for the whole source."""
        listed = f"({noun}s: {', '.join(columns)})"

        def missing(what: str, role: str, hint: str = "") -> DataError:
            return DataError(path, f"missing {noun} {what} for the {role} {listed}{hint}", line)

        story = self.story or _first_present(AUTO_STORY, columns)
        if story is None or story not in columns:
            wanted = f"'{self.story}'" if self.story else f"one of {', '.join(AUTO_STORY)}"
            raise missing(wanted, "story", "; set fields.story=<name>")
        prompt = None
        if not self.story_only:
            prompt = self.prompt or _first_present(AUTO_PROMPT, columns)
            if self.prompt and self.prompt not in columns:
                raise missing(f"'{self.prompt}'", "prompt", "; set fields.prompt=<name> or fields.story_only=true")
        ident = self.id or _first_present(AUTO_ID, columns)
        if self.id and self.id not in columns:
            raise missing(f"'{self.id}'", "id")
        return Fields(story=story, prompt=prompt, id=ident, story_only=prompt is None)


def _first_present(names: tuple[str, ...], columns: list[str]) -> str | None:
    return next((name for name in names if name in columns), None)


def source_kind(source: str) -> str:
    """`bundled`, `jsonl`, `csv`, `parquet`, `dataset_dir` (save_to_disk) or `hub` (an HF dataset id or a data dir)."""
    if source == "bundled":
        return "bundled"
    path = Path(source)
    if path.is_dir():
        if path.suffix.lower() in FILE_TYPES:
            raise DataError(path, "is a directory, not a file")
        if (path / "dataset_dict.json").exists() or (path / "state.json").exists():
            return "dataset_dir"
        if next((p for p in path.rglob("*") if p.suffix.lower() in DATA_DIR_FILES and p.is_file()), None) is None:
            raise ConfigError(
                "source",
                f"'{source}': the folder is not a saved dataset and holds no data files ({', '.join(DATA_DIR_FILES)})",
            )
        return "hub"
    if os.path.lexists(path):
        open_input(path).close()  # not a regular, readable file (a FIFO, a symlink loop, no permission): one line
        if path.suffix.lower() not in FILE_TYPES:
            raise ConfigError(
                "source",
                f"'{source}': unsupported file type (use {', '.join(FILE_TYPES)}, a dataset dir or an HF dataset id)",
            )
        return path.suffix.lower()[1:]
    if path.suffix.lower() in FILE_TYPES or source.startswith((".", "/")):
        raise ConfigError("source", f"'{source}' does not exist")
    if not re.fullmatch(r"[\w.-]+(/[\w.-]+)?", source):
        raise ConfigError("source", f"'{source}' is neither a file, a dataset dir nor an HF dataset id")
    return "hub"


def default_id_prefix(source: str, split: str) -> str:
    if source == "bundled":
        return "bundled"
    path = Path(source)
    if path.is_file():
        return path.stem
    name = path.name if path.is_dir() else source.replace("/", "_")
    return f"{name}-{split}"


def iter_source(
    source: str,
    fields: Fields,
    split: str = "train",
    id_prefix: str | None = None,
) -> Iterator[SourceItem | DataError]:
    """Every record of `source` in a stable order (ids stay the same across reruns, so resume can match them)."""
    kind = source_kind(source)
    prefix = id_prefix or default_id_prefix(source, split)
    rows = {
        "bundled": _bundled_rows,
        "jsonl": _jsonl_rows,
        "csv": _csv_rows,
        "parquet": _parquet_rows,
        "dataset_dir": _saved_dataset_rows,
        "hub": _hub_rows,
    }[kind](source, split)
    resolved: Fields | None = None
    for index, (where, row) in enumerate(rows):
        if isinstance(row, DataError):
            yield row
            continue
        if resolved is None:
            path, _, line = where.rpartition(":")
            try:
                if kind == "jsonl":  # no header: the first line with the fields names them
                    resolved = fields.resolve(list(row), path, int(line), noun="field")
                else:
                    resolved = fields.resolve(list(row), path, 1 if kind == "csv" else None)
            except DataError as error:
                if kind != "jsonl":
                    raise  # a missing column: no row of this source can be read
                yield error
                continue
        yield _to_item(row, resolved, f"{prefix}-{index}", where)


def source_size(source: str, split: str = "train") -> int | None:
    """Number of rows when the format knows it without reading the data (for the progress bar)."""
    kind = source_kind(source)
    try:
        if kind == "parquet":
            import pyarrow.parquet as pq

            return pq.ParquetFile(source).metadata.num_rows
        if kind == "dataset_dir":
            return len(_load_saved(source, split))
        if kind == "bundled":
            from arastory.data.bundled import load_bundled_parallel

            return len(load_bundled_parallel(validate=False))
    except Exception:
        return None
    return None


def _to_item(row: dict, fields: Fields, default_id: str, where: str) -> SourceItem | DataError:
    path, _, line = where.rpartition(":")
    lineno = int(line) if line.isdigit() else None

    def bad(message: str) -> DataError:
        return DataError(path or where, message, lineno)

    if fields.story not in row:
        return bad(f"missing field '{fields.story}'")
    story = row[fields.story]
    if not isinstance(story, str):
        return bad(f"field '{fields.story}' is not text")
    if not story.strip():
        return bad("empty story")
    if is_placeholder(story):
        return bad(f"story is a placeholder ('{story.strip()}'), not text")
    share = latin_share(story[:SCRIPT_SAMPLE_CHARS])
    if share < MIN_ENGLISH_SHARE:
        return bad(f"story is not English ({share:.0%} Latin letters < {MIN_ENGLISH_SHARE:.0%})")
    prompt = None
    if fields.prompt:
        prompt = row.get(fields.prompt)
        if prompt is None or (isinstance(prompt, str) and is_placeholder(prompt)):
            return bad(f"missing or empty field '{fields.prompt}' (or a placeholder such as NaN/None)")
        if not isinstance(prompt, str):
            return bad(f"field '{fields.prompt}' is not text")
    ident = row.get(fields.id) if fields.id else None
    ident = default_id if ident is None or str(ident).strip() == "" else str(ident)
    return SourceItem(id=ident, prompt=prompt.strip() if prompt else None, story=story.strip(), where=where)


# --- row readers: yield (where, row dict | DataError) ---------------------------------------------------------


def _bundled_rows(source: str, split: str):
    from arastory.data.bundled import load_bundled_parallel

    for n, pair in enumerate(load_bundled_parallel(), start=1):
        yield f"bundled:{n}", {"id": pair.id, "prompt": pair.en_prompt, "story": pair.en_story}


def _jsonl_rows(source: str, split: str):
    """arastory.io's byte-safe reader: one bad line is reported alone (with its line number), the rest still read."""
    for lineno, entry in iter_jsonl_entries(source):
        yield f"{source}:{lineno}", entry


def _csv_rows(source: str, split: str):
    records = iter_csv_records(source)
    _, header = next(records, (1, None))
    if not header:
        raise DataError(source, "empty CSV file (no header row)", 1)
    if isinstance(header, DataError):
        raise DataError(source, f"header: {str(header).rsplit(': ', 1)[-1]}", 1)
    for start, values in records:
        where = f"{source}:{start}"
        if isinstance(values, DataError):
            yield where, values
            continue
        if not any(v.strip() for v in values):
            continue
        if len(values) != len(header):
            yield where, DataError(source, f"expected {len(header)} columns, found {len(values)}", start)
            continue
        yield where, dict(zip(header, values, strict=False))


def _parquet_rows(source: str, split: str):
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(source)
    except Exception as exc:
        raise DataError(source, f"not a readable Parquet file ({str(exc).splitlines()[0][:150]})") from None
    row = 0
    for batch in parquet.iter_batches(batch_size=1024):
        for obj in batch.to_pylist():
            row += 1
            yield f"{source}:{row}", obj


def _load_saved(source: str, split: str):
    import datasets

    data = datasets.load_from_disk(source)
    if isinstance(data, datasets.DatasetDict):
        if split not in data:
            raise ConfigError("split", f"'{split}' is not one of the splits in {source}: {', '.join(data)}")
        data = data[split]
    return data


def _saved_dataset_rows(source: str, split: str):
    """save_to_disk output: Arrow files memory-mapped by `datasets`, read row by row."""
    data = _load_saved(source, split)
    for row, obj in enumerate(data, start=1):
        yield f"{source}[{split}]:{row}", obj


def _hub_rows(source: str, split: str):
    """An HF dataset id (or a folder of data files) streamed: nothing beyond the current shard is held."""
    import datasets

    try:
        data = datasets.load_dataset(source, split=split, streaming=True)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise ConfigError("source", f"cannot open HF dataset '{source}' (split {split}): {first}") from None
    for row, obj in enumerate(data, start=1):
        yield f"{source}[{split}]:{row}", obj


def fields_from_config(cfg: DictConfig | dict) -> Fields:
    return Fields(
        story=cfg.get("story"),
        prompt=cfg.get("prompt"),
        id=cfg.get("id"),
        story_only=bool(cfg.get("story_only", False)),
    )

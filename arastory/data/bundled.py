"""The corpus that ships with arastory: original MSA/Egyptian/Moroccan stories and an EN→AR parallel set."""

from __future__ import annotations

from pathlib import Path

from arastory.data.readers import read_parallel_jsonl, read_story_jsonl
from arastory.data.validate import validate_parallel, validate_stories
from arastory.errors import DataError
from arastory.paths import BUNDLED_DIR
from arastory.records import VARIETIES, ParallelRecord, StoryRecord

PARALLEL_FILE = BUNDLED_DIR / "parallel_en_ar.jsonl"
FLAWS = ("truncated", "meaning_changed", "other_story", "untranslated", "wrong_variety", "repeated_sentences")
STORY_WORDS = (120, 300)  # bounds the data card promises
EN_STORY_WORDS = (80, 200)


def story_file(variety: str) -> Path:
    return BUNDLED_DIR / f"stories_{variety}.jsonl"


def load_bundled_stories(
    varieties: tuple[str, ...] | list[str] = VARIETIES, validate: bool = True
) -> list[StoryRecord]:
    records = [r for v in varieties for r in read_story_jsonl(story_file(v))]
    if validate:
        report = validate_stories(records, min_arabic=0.95, min_words=STORY_WORDS[0], max_words=STORY_WORDS[1])
        if not report.ok:
            raise DataError(
                BUNDLED_DIR, f"bundled stories fail validation: {report.problems[0]} (+{len(report.problems) - 1} more)"
            )
    return records


def load_bundled_parallel(validate: bool = True) -> list[ParallelRecord]:
    records = read_parallel_jsonl(PARALLEL_FILE)
    if validate:
        report = validate_parallel(records, *EN_STORY_WORDS)
        bad_flaws = [r.id for r in records if r.flaw is not None and r.flaw not in FLAWS]
        if bad_flaws:
            report.add(bad_flaws[0], f"unknown flaw label (allowed: {', '.join(FLAWS)})")
        if not report.ok:
            raise DataError(PARALLEL_FILE, f"bundled parallel set fails validation: {report.problems[0]}")
    return records

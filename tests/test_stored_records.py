"""Training pairs read from a file keep their texts on disk (ids and offsets in memory) and read back exactly."""

import json

from arastory.data.bundled import load_bundled_parallel
from arastory.data.sources import ParallelSource
from arastory.data.stored import StoredStory


def test_translated_pairs_from_a_file_keep_their_texts_on_disk_and_read_back_exactly(tmp_path):
    pairs = load_bundled_parallel()
    rows = [pair.to_dict() for pair in pairs] + [pairs[0].to_dict()]  # a repeated id: skipped and counted
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(json.dumps(row, ensure_ascii=False) for row in rows) + "\n{not json\n", encoding="utf-8")
    source = ParallelSource(path=str(path), max_failure_rate=0.5)
    records = source.load()
    assert all(isinstance(record, StoredStory) and not hasattr(record, "__dict__") for record in records)
    streamed_skips = source.skipped
    in_memory = source.load_pairs()  # the pairs as read whole, screened the same way
    assert streamed_skips == source.skipped and len(streamed_skips) >= 2, "the same skips, counted the same way"
    assert len(records) == len(in_memory) > 50
    assert [record.to_dict() for record in records] == [pair.as_story().to_dict() for pair in in_memory]
    assert records[3].story == in_memory[3].ar_story and records[3].prompt == in_memory[3].ar_prompt

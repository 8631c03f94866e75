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


def test_synthetic_stories_from_a_file_stream_with_their_texts_and_features_on_disk(tmp_path):
    from arastory.data.bundled import load_bundled_stories
    from arastory.data.readers import read_stories
    from arastory.data.sources import StorySource
    from arastory.data.validate import screen_stories

    stories = load_bundled_stories()
    rows = [story.to_dict() for story in stories] + [{**stories[0].to_dict(), "id": "again"}]  # a repeated story
    path = tmp_path / "stories.jsonl"
    path.write_text("\n".join(json.dumps(row, ensure_ascii=False) for row in rows) + "\n", encoding="utf-8")
    source = StorySource(path=str(path), max_failure_rate=0.5, check_labels=False)  # (the identifier: slow to build)
    records = source.load()
    assert all(isinstance(record, StoredStory) for record in records), "the stories' texts wait on disk"
    expected = screen_stories(read_stories(path, skipped=[]))
    assert source.skipped == expected.skipped and len(source.skipped) == 1
    assert [record.to_dict() for record in records] == [story.to_dict() for story in expected.kept]
    assert records[5].features == stories[5].features != {} and records[5].story == stories[5].story


def test_the_in_training_filter_hands_its_kept_pairs_back_with_their_texts_on_disk(tmp_path):
    from hydra import compose, initialize_config_dir

    from arastory.cli import register_resolvers
    from arastory.paths import CONF_DIR
    from arastory.train.data import build_training_data

    register_resolvers()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=["dialect=msa", "data.filter.enabled=true"])
    data = build_training_data(cfg.data, "msa", ["translated"], seed=0, out_dir=tmp_path)
    records = data.train["translated"]
    assert records and all(isinstance(record, StoredStory) for record in records), "no texts held in memory"
    kept = {row["id"]: row for row in map(json.loads, (tmp_path / "filter" / "kept.jsonl").read_text().splitlines())}
    assert data.counts["translated"]["read"] == len(kept) and {r.id for r in records} <= set(kept)
    for record in records:
        assert (record.prompt, record.story) == (kept[record.id]["ar_prompt"], kept[record.id]["ar_story"])

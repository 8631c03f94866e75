"""The bundled corpus: schema, counts, uniqueness, prompt/feature agreement, dialect authenticity, validation."""

import json
from collections import Counter

import pytest

from arastory.data.bundled import FLAWS, load_bundled_parallel, load_bundled_stories, story_file
from arastory.data.readers import read_stories, read_story_jsonl, to_hf_dataset
from arastory.data.validate import validate_stories
from arastory.dialect.classifier import DialectClassifier
from arastory.dialect.markers import PUBLISHED_MARKERS, markers_in
from arastory.errors import DataError
from arastory.prompts import PromptSampler
from arastory.records import VARIETIES
from arastory.text import arabic_share, word_count


@pytest.fixture(scope="module")
def stories():
    return load_bundled_stories()


def test_counts_schema_and_bounds(stories):
    per_variety = Counter(r.variety for r in stories)
    assert all(per_variety[v] >= 60 for v in VARIETIES) and len(stories) >= 180
    assert len({r.id for r in stories}) == len(stories)
    assert len({r.story for r in stories}) == len(stories)
    for r in stories:
        assert 120 <= word_count(r.story) <= 300, r.id
        assert arabic_share(r.story) > 0.95 and arabic_share(r.prompt) > 0.95
        assert {"age", "ending", "n_characters", "country"} <= set(r.features)
        assert r.source == "bundled"


def test_corpus_is_varied(stories):
    for variety in VARIETIES:
        records = [r for r in stories if r.variety == variety]
        assert set(Counter(r.features["ending"] for r in records)) == {"happy", "sad"}
        assert set(Counter(r.features["n_characters"] for r in records)) == {1, 2, 3}
        assert len({r.features["country"] for r in records}) >= 15
        assert sum(1 for r in records if r.features.get("dialogue")) >= 10


def test_prompt_is_the_rendering_of_its_features(stories):
    samplers = {v: PromptSampler(v) for v in VARIETIES}
    for r in stories:
        assert r.prompt == samplers[r.variety].render(r.features), r.id


def test_dialect_stories_carry_their_markers_and_msa_none(stories):
    for r in stories:
        found = markers_in(r.story, PUBLISHED_MARKERS)
        if r.variety == "msa":
            assert not found["egy"] and not found["mor"], (r.id, found)
        else:
            other = "mor" if r.variety == "egy" else "egy"
            assert found[r.variety], (r.id, "no marker of its own dialect")
            assert len(found[r.variety]) > len(found[other]), (r.id, found)


def test_classifier_trained_on_released_stories_labels_bundled_ones(stories, released_dir):
    model = DialectClassifier(folds=3).fit(read_stories(released_dir)[::6])  # every 6th story: ~140 per variety
    predicted = model.predict([r.story for r in stories])
    accuracy = sum(p == r.variety for p, r in zip(predicted, stories, strict=False)) / len(stories)
    assert accuracy >= 0.90, accuracy


def test_parallel_set_has_faithful_and_labelled_flawed_pairs():
    pairs = load_bundled_parallel()
    assert len(pairs) >= 100 and len({p.id for p in pairs}) == len(pairs)
    flawed = [p for p in pairs if p.flaw]
    assert len(flawed) >= 20 and {p.flaw for p in flawed} == set(FLAWS)
    for p in pairs:
        assert 80 <= word_count(p.en_story) <= 200
        if p.flaw is None:
            assert arabic_share(p.ar_story) > 0.95
    untranslated = [p for p in flawed if p.flaw == "untranslated"]
    assert all(arabic_share(p.ar_story) < 0.5 for p in untranslated)


def test_loader_gives_hf_dataset(stories):
    dataset = to_hf_dataset([r for r in stories if r.variety == "mor"])
    assert len(dataset) == 64 and set(dataset.column_names) >= {"id", "variety", "prompt", "story", "features"}
    assert json.loads(dataset[0]["features"])["country"]


def test_validation_reports_each_problem(stories):
    bad = [stories[0], stories[0]]
    bad[1] = type(stories[0])(id="x", variety="lev", prompt="Write a story", story=stories[0].story)
    report = validate_stories(bad, min_words=120, max_words=300)
    text = "\n".join(report.problems)
    assert "variety 'lev'" in text and "Arabic script" in text and "duplicate story" in text


def test_malformed_jsonl_names_file_and_line(tmp_path):
    path = tmp_path / "stories.jsonl"
    good = story_file("msa").read_text(encoding="utf-8").splitlines()[0]
    path.write_text(good + "\n{not json\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"stories.jsonl:2: invalid JSON"):
        read_story_jsonl(path)
    path.write_text(good + '\n{"id": "a", "variety": "msa", "prompt": "x"}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"stories.jsonl:2: missing or empty field\(s\): story"):
        read_story_jsonl(path)

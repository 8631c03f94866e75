"""Quality gates: each gate rejects what it should, none rejects the study's released stories, order never matters."""

import pytest

from arastory.data.bundled import load_bundled_stories
from arastory.data.readers import read_stories
from arastory.dialect import ngram_identifier
from arastory.errors import ConfigError
from arastory.synthesize.gates import GATES, QualityGates

ENGLISH = " ".join(["Once upon a time a little girl walked to the market with her grandmother."] * 12)


@pytest.fixture(scope="module")
def stories():
    by_variety = {}
    for record in load_bundled_stories():
        by_variety.setdefault(record.variety, []).append(record.story)
    return by_variety


@pytest.fixture(scope="module")
def identifier():
    return ngram_identifier("bundled")


def near_copy(story: str) -> str:
    """The same story with three words changed (still well above the 0.8 Jaccard threshold)."""
    words = story.split()
    for i in (5, len(words) // 2, len(words) - 3):
        words[i] = "قطة"
    return " ".join(words)


def test_each_gate_rejects_its_case(stories, identifier):
    gates = QualityGates(identifier=identifier)
    egy, msa = stories["egy"], stories["msa"]
    cases = [
        ("a", egy[0], None),
        ("b", "   ", "empty"),
        ("c", "As an AI language model, I cannot write stories about this topic.", "refusal"),
        ("d", "عذراً، لا أستطيع كتابة هذه القصة.", "refusal"),
        ("e", "إليك القصة:\n\n" + egy[1], "refusal"),  # meta text before the story
        ("f", egy[2] + "\n\nI hope you enjoyed the story! Here is the story summary.", "refusal"),
        ("g", " ".join(egy[3].split()[:60]), "too_short"),
        ("h", " ".join([egy[4]] * 4), "too_long"),
        ("i", ENGLISH, "non_arabic"),
        ("j", msa[0], "wrong_variety"),  # MSA drift in an Egyptian run
        ("k", egy[0], "duplicate"),
        ("l", near_copy(egy[0]), "near_duplicate"),
        ("m", egy[5], None),
    ]
    for story_id, story, expected in cases:
        result = gates.check(story_id, story, "egy")
        assert result.reason == expected, (story_id, result.reason, result.detail)
    assert gates.check("n", egy[0], "egy").checks["duplicate_of"] == "a"
    kept = gates.check("o", egy[6], "egy")
    assert kept.kept and kept.checks["dialect"]["predicted"] == "egy" and kept.checks["dialect"]["target_share"] > 0.5
    assert "مش" in kept.checks["dialect"]["markers"]["egy"] or kept.checks["dialect"]["markers"]["egy"]
    assert kept.checks["words"] == len(egy[6].split()) and kept.checks["arabic_share"] > 0.95


def test_rejected_stories_do_not_block_later_ones(stories, identifier):
    gates = QualityGates(identifier=identifier)
    story = stories["mor"][0]
    assert gates.check("x", story, "egy").reason == "wrong_variety"
    assert gates.check("y", story, "mor").kept  # not a duplicate of the rejected one


def test_the_released_stories_pass_every_content_gate(released_dir):
    """No false positives on real GPT-4 stories: no refusal/meta text, right length, Arabic, no (near) duplicates."""
    records = read_stories(released_dir)
    gates = QualityGates(check_variety=False)
    rejected = [
        (r.id, res.reason, res.detail) for r in records if not (res := gates.check(r.id, r.story, r.variety)).kept
    ]
    assert len(records) == 846 + 850 + 850 and rejected == []


def test_bad_gate_settings_are_config_errors():
    with pytest.raises(ConfigError, match=r"gates.min_words: 500 is above gates.max_words \(100\)"):
        QualityGates(min_words=500, max_words=100)
    with pytest.raises(ConfigError, match=r"gates.near_duplicate_jaccard: must be in \[0, 1\]"):
        QualityGates(near_duplicate_jaccard=1.5)
    assert GATES[0] == "empty" and GATES[-1] == "near_duplicate"

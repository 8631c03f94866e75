"""Dialect identification: accuracy on held-out released stories, configurable training text, caching, CAMeL backend."""

import random
from collections import defaultdict

import pytest

from arastory.data.readers import read_stories
from arastory.dialect import DialectClassifier, load_or_train, ngram_identifier, training_records
from arastory.dialect.classifier import bundled_text_documents
from arastory.errors import ConfigError, DataError
from arastory.paths import cache_dir


def split_released(released_dir, per_variety: int = 100, held_out: int = 200, seed: int = 0):
    by_variety = defaultdict(list)
    for record in read_stories(released_dir):
        by_variety[record.variety].append(record)
    rng = random.Random(seed)
    train, test = [], []
    for records in by_variety.values():
        records = sorted(records, key=lambda r: r.id)
        rng.shuffle(records)
        train += records[:per_variety]
        test += records[per_variety : per_variety + held_out]
    return train, test


def test_classifier_trained_on_part_of_the_release_labels_held_out_stories(released_dir):
    """100 stories per variety for training; 200 other released stories per variety are labelled at >= 95%."""
    train, test = split_released(released_dir)
    model = DialectClassifier().fit(train)
    predicted = model.predict([r.story for r in test])
    accuracy = sum(p == r.variety for p, r in zip(predicted, test, strict=False)) / len(test)
    assert len(test) == 600 and accuracy >= 0.95, accuracy
    for variety in ("msa", "egy", "mor"):  # and per variety, not only on average
        pairs = [(p, r) for p, r in zip(predicted, test, strict=False) if r.variety == variety]
        assert sum(p == r.variety for p, r in pairs) / len(pairs) >= 0.9, variety

    egy_story = next(r.story for r in test if r.variety == "egy" and "مش" in r.story.split())
    analysis = model.analyze(egy_story, "egy")
    assert analysis.predicted == "egy" and abs(sum(analysis.probabilities.values()) - 1) < 1e-3
    assert analysis.dialect_share > 0.5 and "مش" in analysis.markers["egy"]
    assert model.analyze(egy_story, "msa").dialect_share < 0.5  # the share is of sentences in the *target*


def test_training_text_is_configurable(tmp_path, released_dir):
    egy_txt, mor_txt = tmp_path / "egy.txt", tmp_path / "mor.txt"
    egy_txt.write_text("الولد ده مش عايز يروح المدرسة النهارده\n\nعشان كده قعد في البيت\n", encoding="utf-8")
    mor_txt.write_text("الدري بغا يمشي للمدرسة دابا\nهاد الشي زوين بزاف\n", encoding="utf-8")
    records = training_records({"egy": str(egy_txt), "mor": str(mor_txt)})
    assert [(r.variety, r.story) for r in records][:2] == [
        ("egy", "الولد ده مش عايز يروح المدرسة النهارده"),
        ("egy", "عشان كده قعد في البيت"),
    ]
    assert len(records) == 4 and records[-1].variety == "mor"
    mixed = training_records(["bundled", str(released_dir / "Formatted-Moroccan-prompts-stories-for-fine-tuning.csv")])
    assert len(mixed) == 3 * 64 + len(bundled_text_documents()) + 850 and {r.variety for r in mixed} == {
        "msa",
        "egy",
        "mor",
    }
    with pytest.raises(DataError, match=r"missing\.txt: file not found"):
        training_records({"egy": str(tmp_path / "missing.txt")})


def test_classifier_is_cached_by_data_and_params(released_dir):
    train, _ = split_released(released_dir, per_variety=8, held_out=0)
    before = set((cache_dir() / "dialect").glob("*.joblib")) if (cache_dir() / "dialect").exists() else set()
    first = load_or_train(train, ngram_range=(2, 4), max_features=20_000)
    made = set((cache_dir() / "dialect").glob("*.joblib")) - before
    assert len(made) == 1
    again = load_or_train(train, ngram_range=(2, 4), max_features=20_000)
    assert set((cache_dir() / "dialect").glob("*.joblib")) - before == made  # loaded, not retrained
    assert again.predict([train[0].story]) == first.predict([train[0].story])
    load_or_train(train, ngram_range=(2, 4), max_features=10_000)
    assert len(set((cache_dir() / "dialect").glob("*.joblib")) - before) == 2  # new params, new model


def test_bundled_identifier_knows_the_three_varieties():
    model = ngram_identifier("bundled")
    assert model.classes == ["egy", "mor", "msa"]


def test_camel_backend_is_optional_with_a_one_line_error():
    from arastory.dialect import CamelIdentifier

    try:
        import camel_tools  # noqa: F401
    except ImportError:
        missing = r"dialect_id: the camel backend needs camel_tools.*pip install 'arastory\[camel\]'"
        with pytest.raises(ConfigError, match=missing):
            CamelIdentifier()
    else:
        pytest.skip("camel_tools is installed here; the missing-package error cannot be exercised")


def test_lexicon_reads_moroccan_morphology_and_not_msa_look_alikes():
    """Moroccan كيـ verbs of unlisted stems, ka-/ta- prefixes and ما...ش negation count; MSA look-alikes don't."""
    from arastory.dialect.lexicon import GROUPS, lexicon_features, lexicon_words

    def distinct(text):
        return dict(zip(GROUPS, lexicon_features(text)[0::2], strict=False))

    moroccan = (
        "قال الولد لأمه: نبغيك تجي معايا، الطفلة كيعانقو باباها وكتسناه، وتايلعب الولد، ماكيعرفش علاش طاحت الكرة."
    )
    found = lexicon_words(moroccan)
    assert {"كيعانقو", "وتايلعب", "نبغيك", "علاش", "طاحت"} <= set(found["mor"]), found
    assert "ماكيعرفش" in found["dialect"] and not found["egy"], found
    assert distinct(moroccan)["mor"] > 0 and distinct(moroccan)["dialect"] > 0
    msa = (
        "كيف حالك؟ كان الكيميائي يزن كيلوغرامًا من السكر، ثم وضع الكيكة في كيسها، وكنت أكتب كتابًا عن كيان الأسرة "
        "وعن كتلة الجليد، وكيف كانت وكيلتها ووكيلها، وماذا فعل الماريشال حين رأى النقوش المدهشة."
    )
    assert not any(lexicon_words(msa).values()) and not any(distinct(msa).values())

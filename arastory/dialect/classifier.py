"""A character n-gram dialect classifier (scikit-learn), trained at first use from labelled text and cached."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import joblib
import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from arastory.dialect.markers import markers_in
from arastory.io import fingerprint
from arastory.paths import cache_dir
from arastory.records import StoryRecord
from arastory.text import normalize_arabic, sentences


@dataclass
class DialectAnalysis:
    """What the classifier says about one story."""

    probabilities: dict[str, float]
    predicted: str
    dialect_share: float          # share of sentences predicted as the target variety
    markers: dict[str, list[str]]  # marker words seen, per variety


def training_units(text: str, min_words: int = 6) -> list[str]:
    """Split a story into sentence chunks of at least `min_words`, so the model also learns short spans."""
    units, current = [], []
    for sentence in sentences(text):
        current.append(sentence)
        if sum(len(s.split()) for s in current) >= min_words:
            units.append(" ".join(current))
            current = []
    if current:
        units.append(" ".join(current))
    return units


class DialectClassifier:
    """TF-IDF over character n-grams (within word boundaries) + logistic regression."""

    def __init__(self, ngram_range: tuple[int, int] = (1, 5), max_features: int = 200_000, C: float = 10.0):
        self.params = {"ngram_range": list(ngram_range), "max_features": max_features, "C": C}
        self.pipeline = Pipeline([
            ("tfidf", TfidfVectorizer(analyzer="char_wb", ngram_range=tuple(ngram_range), min_df=2,
                                      sublinear_tf=True, max_features=max_features, preprocessor=normalize_arabic)),
            ("clf", LogisticRegression(C=C, max_iter=2000)),
        ])

    @property
    def classes(self) -> list[str]:
        return [str(c) for c in self.pipeline.classes_]

    def fit(self, records: list[StoryRecord]) -> "DialectClassifier":
        texts, labels = [], []
        for record in records:
            for unit in training_units(record.story):
                texts.append(unit)
                labels.append(record.variety)
        if len(set(labels)) < 2:
            raise ValueError("the dialect classifier needs labelled text of at least two varieties")
        self.pipeline.fit(texts, labels)
        return self

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        return self.pipeline.predict_proba(texts)

    def predict(self, texts: list[str]) -> list[str]:
        return [str(p) for p in self.pipeline.predict(texts)]

    def analyze(self, story: str, target: str | None = None) -> DialectAnalysis:
        probs = dict(zip(self.classes, self.predict_proba([story])[0].round(4).tolist()))
        predicted = max(probs, key=probs.get)
        target = target or predicted
        units = sentences(story) or [story]
        share = float(np.mean([p == target for p in self.predict(units)]))
        return DialectAnalysis(probs, predicted, share, markers_in(story))

    def analyze_many(self, stories: list[str], targets: list[str | None]) -> list[DialectAnalysis]:
        return [self.analyze(story, target) for story, target in zip(stories, targets)]

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        joblib.dump({"params": self.params, "pipeline": self.pipeline}, tmp)
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path) -> "DialectClassifier":
        blob = joblib.load(path)
        model = cls(**{**blob["params"], "ngram_range": tuple(blob["params"]["ngram_range"])})
        model.pipeline = blob["pipeline"]
        return model


def load_or_train(records: list[StoryRecord], use_cache: bool = True, **params) -> DialectClassifier:
    """Train on `records`, or load the cached model trained on exactly the same data and parameters."""
    key = fingerprint(sorted((r.variety, r.story) for r in records), params)
    path = cache_dir() / "dialect" / f"char-ngram-{key}.joblib"
    if use_cache and path.exists():
        return DialectClassifier.load(path)
    model = DialectClassifier(**params).fit(records)
    if use_cache:
        model.save(path)
    return model


def training_records(source: str | list | dict = "bundled") -> list[StoryRecord]:
    """Labelled text for the classifier.

    `source` is `bundled` (default), a path to story JSONL / released CSVs / a folder of them, a list of such
    sources, or a mapping {variety: path} whose files are all of that variety (.txt: one text per non-blank line).
    """
    if _is_sequence(source):   # lists and tuples, also OmegaConf ListConfig
        return [record for item in source for record in training_records(item)]
    if hasattr(source, "items"):   # dicts, also OmegaConf DictConfig
        return [record for variety, path in source.items() for record in _labelled_file(str(path), str(variety))]
    source = str(source)
    if source == "bundled":
        from arastory.data.bundled import load_bundled_stories
        return load_bundled_stories()
    from arastory.data.readers import read_stories
    return read_stories(source)


def _is_sequence(obj) -> bool:
    return not isinstance(obj, (str, bytes, dict)) and hasattr(obj, "__iter__") and not hasattr(obj, "items")


def _labelled_file(path: str, variety: str) -> list[StoryRecord]:
    """Every text in `path` labelled `variety` (plain .txt: one text per non-blank line; else a story file)."""
    from arastory.errors import DataError

    file = Path(path)
    if not file.exists():
        raise DataError(file, "file not found")
    if file.suffix == ".txt":
        lines = [line.strip() for line in file.read_text(encoding="utf-8").splitlines() if line.strip()]
        return [StoryRecord(id=f"{file.stem}-{i}", variety=variety, prompt="", story=line) for i, line in enumerate(lines)]
    from arastory.data.readers import read_stories
    records = read_stories(file, variety=variety)
    for record in records:
        record.variety = variety
    return records

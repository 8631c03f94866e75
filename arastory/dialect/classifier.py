"""The default dialect classifier: n-gram sentence model + story-level model on mixture evidence, trained at first use.

Two levels (scikit-learn):
1. Sentences: TF-IDF over character n-grams (within word boundaries) and word n-grams, a class-balanced logistic
   model (SGD, log loss) over MSA / Egyptian / Moroccan.
2. Stories: a multinomial logistic regression on evidence features (evidence.py: mixture log-likelihood ratios,
   Egyptian/Moroccan log-odds, lexicon counts), fitted on *out-of-fold* sentence probabilities of the training
   stories and of their MSA-drift / pan-dialect variants (augment.py). Fitting it on held-out predictions is what
   calibrates the story probabilities (stacking, a Platt-style calibration), and the variants are what make a
   GPT-4 story that narrates in MSA with dialect dialogue come out as dialect.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.model_selection import GroupKFold
from sklearn.pipeline import FeatureUnion, Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from arastory.dialect.augment import DRIFT_FRACTIONS, PAN_DIALECT_FRACTIONS, UnitTable, meta_training_set
from arastory.dialect.evidence import sentence_labels, story_features, story_units, unit_weights, weighted_share
from arastory.dialect.markers import markers_in
from arastory.io import fingerprint
from arastory.paths import BUNDLED_DIR, cache_dir
from arastory.records import StoryRecord
from arastory.text import normalize_arabic

FORMAT_VERSION = 2  # saved models of another format are refused with a clear error
TEXT_FILE = BUNDLED_DIR / "dialect_text.jsonl"
PASSAGES_PER_DOCUMENT = 8  # ours: bundled text passages are grouped into story-sized training documents


@dataclass
class DialectAnalysis:
    """What the classifier says about one story."""

    probabilities: dict[str, float]
    predicted: str
    dialect_share: float  # (weighted) share of sentences classified as the target variety
    markers: dict[str, list[str]]  # marker words seen, per variety
    msa_share: float = 0.0  # (weighted) share of sentences classified as MSA: dialect drift
    sentences: int = 0


class DialectClassifier:
    """Sentence n-gram model + story-level evidence model; `predict_proba` answers per story."""

    def __init__(
        self,
        ngram_range: tuple[int, int] = (1, 5),
        max_features: int = 200_000,
        word_ngram_range: tuple[int, int] = (1, 2),
        word_max_features: int = 100_000,
        alpha: float = 1e-4,
        story_C: float = 1.0,
        folds: int = 5,
        drift_fractions: Sequence[float] = DRIFT_FRACTIONS,
        pan_dialect_fractions: Sequence[float] = PAN_DIALECT_FRACTIONS,
        seed: int = 0,
        thresholds: dict | None = None,
    ):
        self.params: dict[str, Any] = {
            "ngram_range": list(ngram_range),
            "max_features": int(max_features),
            "word_ngram_range": list(word_ngram_range),
            "word_max_features": int(word_max_features),
            "alpha": float(alpha),
            "story_C": float(story_C),
            "folds": int(folds),
            "drift_fractions": [float(f) for f in drift_fractions],
            "pan_dialect_fractions": [float(f) for f in pan_dialect_fractions],
            "seed": int(seed),
        }
        # Gate thresholds on P(target) per variety, set from config or by cross-validation (thresholds.py).
        self.thresholds: dict[str, float] = {str(k): float(v) for k, v in (thresholds or {}).items()}
        self.sentence_model: Pipeline | None = None
        self.story_model: Pipeline | None = None
        self.training: dict = {}

    # ------------------------------------------------------------------------------------------------ training
    def _features(self) -> FeatureUnion:
        p = self.params
        return FeatureUnion(
            [
                (
                    "chars",
                    TfidfVectorizer(
                        analyzer="char_wb",
                        ngram_range=tuple(p["ngram_range"]),
                        min_df=2,
                        sublinear_tf=True,
                        max_features=p["max_features"],
                        preprocessor=normalize_arabic,
                    ),
                ),
                (
                    "words",
                    TfidfVectorizer(
                        analyzer="word",
                        ngram_range=tuple(p["word_ngram_range"]),
                        sublinear_tf=True,
                        max_features=p["word_max_features"],
                        preprocessor=normalize_arabic,
                        token_pattern=r"(?u)\b\w+\b",
                    ),
                ),
            ]
        )

    def _sentence_learner(self) -> SGDClassifier:
        return SGDClassifier(
            loss="log_loss",
            alpha=self.params["alpha"],
            class_weight="balanced",
            max_iter=50,
            tol=None,
            random_state=self.params["seed"],
        )

    @property
    def classes(self) -> list[str]:
        return [str(c) for c in self.story_model.classes_] if self.story_model is not None else []

    def fit(self, records: list[StoryRecord]) -> DialectClassifier:
        table, document_labels = _unit_table(records)
        if set(table.labels) != {"egy", "mor", "msa"}:
            from arastory.errors import ConfigError

            raise ConfigError(
                "dialect_id.source",
                "the dialect classifier needs labelled text of all three varieties "
                f"(msa, egy, mor), got {', '.join(sorted(set(table.labels))) or 'none'}",
            )
        # TF-IDF is fitted once on all sentences (unsupervised); the folds refit only the sentence learner.
        features = self._features()
        matrix = features.fit_transform(table.texts)
        table.probs = self._out_of_fold(table, matrix)
        examples, labels = meta_training_set(
            table,
            document_labels,
            self.params["seed"],
            self.params["drift_fractions"],
            self.params["pan_dialect_fractions"],
        )
        self.story_model = make_pipeline(
            StandardScaler(), LogisticRegression(C=self.params["story_C"], max_iter=2000, class_weight="balanced")
        )
        self.story_model.fit(examples, labels)
        self.sentence_model = Pipeline(
            [("features", features), ("clf", self._sentence_learner().fit(matrix, table.labels))]
        )
        self.training = {
            "documents": len(document_labels),
            "sentences": len(table.texts),
            "story_examples": len(labels),
            "per_variety": {v: sum(1 for d in document_labels.values() if d == v) for v in self.classes},
        }
        return self

    def _out_of_fold(self, table: UnitTable, matrix) -> np.ndarray:
        """Each sentence's class probabilities from a learner that never saw its document."""
        probs = np.zeros((len(table.texts), len(table.classes)))
        folds = min(self.params["folds"], len(set(table.documents)))
        labels = np.array(table.labels)
        for train, held in GroupKFold(n_splits=folds).split(table.texts, table.labels, table.documents):
            learner = self._sentence_learner().fit(matrix[train], labels[train])
            order = [list(learner.classes_).index(c) for c in table.classes]
            probs[held] = learner.predict_proba(matrix[held])[:, order]
        return probs

    # ----------------------------------------------------------------------------------------------- inference
    def sentence_proba(self, units: list[str]) -> np.ndarray:
        """Sentence-level class probabilities, columns in `self.classes` order."""
        if not units:
            return np.zeros((0, len(self.classes)))
        if self.sentence_model is None:
            raise RuntimeError("the dialect classifier is not trained (fit it or load_or_train it first)")
        order = [list(self.sentence_model.classes_).index(c) for c in self.classes]
        return self.sentence_model.predict_proba(units)[:, order]

    def _evidence(self, stories: list[str]) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
        """Story-level probabilities and, per story, (sentence probabilities, sentence weights); one batched pass."""
        if self.story_model is None:
            raise RuntimeError("the dialect classifier is not trained (call fit or load)")
        units = [story_units(story or "") for story in stories]
        flat = self.sentence_proba([u for story in units for u in story])
        per_story, start = [], 0
        for story_units_ in units:
            per_story.append((flat[start : start + len(story_units_)], unit_weights(story_units_)))
            start += len(story_units_)
        pairs = zip(per_story, stories, strict=False)
        features = [story_features(p, w, story or "", self.classes) for (p, w), story in pairs]
        return self.story_model.predict_proba(features), per_story

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        """Story-level probabilities, columns in `self.classes` order."""
        return self._evidence(list(texts))[0]

    def predict(self, texts: list[str]) -> list[str]:
        return [self.classes[i] for i in self.predict_proba(texts).argmax(axis=1)]

    def analyze_many(self, stories: list[str], targets: list[str | None]) -> list[DialectAnalysis]:
        story_probs, per_story = self._evidence(list(stories))
        out = []
        for story, target, row, (probs, weights) in zip(stories, targets, story_probs, per_story, strict=False):
            probabilities = dict(zip(self.classes, row.round(4).tolist(), strict=False))
            predicted = max(probabilities, key=probabilities.__getitem__)
            labels = sentence_labels(probs, self.classes)
            out.append(
                DialectAnalysis(
                    probabilities,
                    predicted,
                    weighted_share(labels, weights, target or predicted),
                    markers_in(story or ""),
                    weighted_share(labels, weights, "msa"),
                    len(labels),
                )
            )
        return out

    def analyze(self, story: str, target: str | None = None) -> DialectAnalysis:
        return self.analyze_many([story], [target])[0]

    # ----------------------------------------------------------------------------------------------- persistence
    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        joblib.dump(
            {
                "format": FORMAT_VERSION,
                "params": self.params,
                "thresholds": self.thresholds,
                "training": self.training,
                "sentence_model": self.sentence_model,
                "story_model": self.story_model,
            },
            tmp,
        )
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path) -> DialectClassifier:
        from arastory.errors import DataError

        path = Path(path)
        if not path.is_file():
            raise DataError(path, "no saved dialect classifier here (make one with `python -m arastory.dialect train`)")
        try:
            blob = joblib.load(path)
        except Exception as error:
            raise DataError(path, f"not a saved dialect classifier ({type(error).__name__})") from None
        if not isinstance(blob, dict) or blob.get("format") != FORMAT_VERSION:
            raise DataError(
                path,
                f"not a dialect classifier of format {FORMAT_VERSION} (retrain it with "
                "`python -m arastory.dialect train`)",
            )
        params = dict(blob["params"])
        for key in ("ngram_range", "word_ngram_range"):
            params[key] = tuple(params[key])
        model = cls(**params, thresholds=blob.get("thresholds"))
        model.sentence_model, model.story_model = blob["sentence_model"], blob["story_model"]
        model.training = blob.get("training", {})
        return model


def _unit_table(records: list[StoryRecord]) -> tuple[UnitTable, dict[int, str]]:
    texts, labels, documents = [], [], []
    for index, record in enumerate(records):
        for unit in story_units(record.story):
            texts.append(unit)
            labels.append(record.variety)
            documents.append(index)
    classes = sorted(set(labels))
    table = UnitTable(texts, labels, documents, unit_weights(texts), np.zeros((len(texts), len(classes))), classes)
    return table, {index: record.variety for index, record in enumerate(records)}


def load_or_train(
    records: list[StoryRecord], use_cache: bool = True, thresholds: dict | None = None, **params: Any
) -> DialectClassifier:
    """Train on `records`, or load the cached model trained on exactly the same data and parameters."""
    key = fingerprint(sorted((r.variety, r.story) for r in records), params, FORMAT_VERSION, recipe_fingerprint())
    path = cache_dir() / "dialect" / f"dialect-v{FORMAT_VERSION}-{key}.joblib"
    if use_cache and path.exists():
        model = DialectClassifier.load(path)
    else:
        model = DialectClassifier(**params).fit(records)
        if use_cache:
            model.save(path)
    if thresholds:
        model.thresholds = {str(k): float(v) for k, v in thresholds.items()}
    return model


def recipe_fingerprint() -> str:
    """What else decides a trained model: the lexicon and the evidence/augmentation constants (cache key part)."""
    from arastory.dialect import augment, evidence, lexicon

    return fingerprint(
        lexicon.LEXICON,
        lexicon.VERB_STEMS,
        lexicon.VERB_SUFFIXES,
        lexicon.VERB_PREFIXES,
        sorted(lexicon._MSA_LOOKALIKES),
        lexicon.MIN_PATTERN_LENGTH,
        lexicon._KI_MSA_PREFIXES,
        sorted(lexicon._KI_MSA_WORDS),
        evidence.MIXTURE_PIS,
        evidence.FULL_WEIGHT_WORDS,
        augment.DRIFT_FRACTIONS,
        augment.PAN_DIALECT_FRACTIONS,
        PASSAGES_PER_DOCUMENT,
    )


def training_records(source: str | list | dict = "bundled") -> list[StoryRecord]:
    """Labelled text for the classifier.

    `source` is `bundled` (the bundled stories and dialect text, the default), a path to story JSONL / released CSVs
    / a folder of them, a list of such sources, or a mapping {variety: path} whose files are all of that variety
    (.txt: one text per non-blank line).
    """
    if _is_sequence(source):  # lists and tuples, also OmegaConf ListConfig
        return [record for item in source for record in training_records(item)]
    if hasattr(source, "items"):  # dicts, also OmegaConf DictConfig
        return [record for variety, path in source.items() for record in _labelled_file(str(path), str(variety))]
    source = str(source)
    if source == "bundled":
        from arastory.data.bundled import load_bundled_stories

        return load_bundled_stories() + bundled_text_documents()
    from arastory.data.readers import read_stories

    return read_stories(source)


def bundled_text_documents(path: Path = TEXT_FILE) -> list[StoryRecord]:
    """The bundled classifier text (one passage per line), grouped into story-sized documents per variety."""
    from arastory.errors import DataError
    from arastory.io import iter_jsonl

    passages: dict[str, list[str]] = {}
    for lineno, row in iter_jsonl(path):
        if row.get("variety") not in ("msa", "egy", "mor") or not str(row.get("text") or "").strip():
            raise DataError(path, "each line needs `variety` (msa, egy or mor) and a non-empty `text`", lineno)
        passages.setdefault(row["variety"], []).append(row["text"].strip())
    documents = []
    for variety in sorted(passages):
        lines = passages[variety]
        for k in range(0, len(lines), PASSAGES_PER_DOCUMENT):
            documents.append(
                StoryRecord(
                    id=f"dialect-text-{variety}-{k // PASSAGES_PER_DOCUMENT:03d}",
                    variety=variety,
                    prompt="",
                    story="\n".join(lines[k : k + PASSAGES_PER_DOCUMENT]),
                    source="bundled",
                )
            )
    return documents


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
        return [
            StoryRecord(id=f"{file.stem}-{i}", variety=variety, prompt="", story=line) for i, line in enumerate(lines)
        ]
    from arastory.data.readers import read_stories

    records = read_stories(file, variety=variety)
    for record in records:
        record.variety = variety
    return records

"""Dialect identification backends built from config: arastory's classifier (default, or a saved one) or CAMeL Tools.

All answer `analyze(story, target) -> DialectAnalysis` (variety probabilities, predicted variety, share of
sentences in the target variety and in MSA, marker words seen), which is what the synthesis gates and evaluation use.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, TypeAlias

import numpy as np

from arastory.dialect.classifier import DialectAnalysis, DialectClassifier, load_or_train, training_records
from arastory.dialect.markers import markers_in
from arastory.errors import ConfigError
from arastory.text import sentences

# CAMeL Tools' MADAR-6 labels → our varieties (the other three cities are reported as "other").
CAMEL_LABELS = {"MSA": "msa", "CAI": "egy", "RAB": "mor"}

if TYPE_CHECKING:
    from omegaconf import DictConfig


def ngram_identifier(
    source: str | list | dict = "bundled",
    ngram_range: Sequence[int] = (1, 5),
    max_features: int = 200_000,
    word_ngram_range: Sequence[int] = (1, 2),
    word_max_features: int = 100_000,
    alpha: float = 1e-4,
    story_C: float = 1.0,
    folds: int = 5,
    use_cache: bool = True,
    path: str | None = None,
    thresholds: dict | None = None,
) -> DialectClassifier:
    """arastory's classifier: the one saved at `path` (with the gate thresholds its training chose), or one trained on
    `source` (see `training_records`), cached by data and params, carrying `thresholds` ({variety: P(variety) needed}).
    """
    if path:
        return DialectClassifier.load(path)
    return load_or_train(
        training_records(source),
        use_cache=use_cache,
        thresholds=thresholds,
        ngram_range=tuple(ngram_range),
        max_features=int(max_features),
        word_ngram_range=tuple(word_ngram_range),
        word_max_features=int(word_max_features),
        alpha=float(alpha),
        story_C=float(story_C),
        folds=int(folds),
    )


def metrics_identifier(metrics_cfg: DictConfig) -> DialectClassifier:
    """Evaluation's classifier: `metrics.dialect_id.path` (a saved one), else trained on `metrics.classifier_data`."""
    from omegaconf import DictConfig, OmegaConf

    from arastory.plain import plain_dict

    path = (
        OmegaConf.select(metrics_cfg, "dialect_id.path", default=None) if isinstance(metrics_cfg, DictConfig) else None
    )
    if path:
        return DialectClassifier.load(path)
    source = metrics_cfg.classifier_data
    return load_or_train(training_records(plain_dict(source) if isinstance(source, DictConfig) else source))


class CamelIdentifier:
    """CAMeL Tools' DIDModel6 (MADAR 6-way: MSA, Cairo, Rabat, Beirut, Doha, Tunis), when installed with its data."""

    def __init__(self, labels: dict[str, str] | None = None):
        self.labels = dict(labels or CAMEL_LABELS)
        self.model = _load_camel_model()

    @property
    def classes(self) -> list[str]:
        return sorted(set(self.labels.values()))

    def _scores(self, texts: list[str]) -> list[dict[str, float]]:
        out = []
        for prediction in self.model.predict(texts):
            scores: dict[str, float] = {}
            for label, score in prediction.scores.items():
                variety = self.labels.get(label, "other")
                scores[variety] = scores.get(variety, 0.0) + float(score)
            out.append(scores)
        return out

    def analyze(self, story: str, target: str | None = None) -> DialectAnalysis:
        probs = {k: round(v, 4) for k, v in self._scores([story])[0].items()}
        predicted = max(probs, key=probs.__getitem__)
        target = target or predicted
        units = sentences(story) or [story]
        labels = [max(s, key=s.__getitem__) for s in self._scores(units)]
        share, msa_share = (float(np.mean([label == v for label in labels])) for v in (target, "msa"))
        return DialectAnalysis(probs, predicted, share, markers_in(story), msa_share, len(labels))

    def analyze_many(self, stories: list[str], targets: list[str | None]) -> list[DialectAnalysis]:
        return [self.analyze(story, target) for story, target in zip(stories, targets, strict=False)]


def _load_camel_model():
    """Import camel_tools lazily; a one-line error says what to install when it or its data is missing."""
    hint = "pip install 'arastory[camel]' && camel_data -i dialectid-default (or use dialect_id=ngram)"
    try:
        import camel_tools.dialectid as dialectid
    except ImportError:
        raise ConfigError(
            "dialect_id", f"the camel backend needs camel_tools, which is not installed: {hint}"
        ) from None
    try:
        if hasattr(dialectid, "DIDModel6"):
            return dialectid.DIDModel6.pretrained()
        return dialectid.DialectIdentifier.pretrained(model_name="model6")
    except Exception as error:
        raise ConfigError(
            "dialect_id", f"camel_tools' dialect model could not be loaded ({type(error).__name__}): {hint}"
        ) from None


# What answers `analyze(story, target)`: arastory's classifier or CAMeL Tools' (dialect_id=ngram | camel).
DialectIdentifier: TypeAlias = DialectClassifier | CamelIdentifier

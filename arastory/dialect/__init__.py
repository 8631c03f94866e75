"""Dialect identification: published marker words, arastory's two-level classifier, an optional CAMeL Tools backend."""

from arastory.dialect.classifier import DialectAnalysis, DialectClassifier, load_or_train, training_records
from arastory.dialect.identify import CamelIdentifier, ngram_identifier
from arastory.dialect.markers import MARKERS, markers_in

__all__ = [
    "MARKERS",
    "CamelIdentifier",
    "DialectAnalysis",
    "DialectClassifier",
    "load_or_train",
    "markers_in",
    "ngram_identifier",
    "training_records",
]

"""Training stories the way LLMs write them, made from held-out sentence predictions of clean training text.

The bundled text is pure: every Egyptian or Moroccan passage is dialect throughout. GPT-4 stories asked for a
dialect are not: many narrate in MSA, and Moroccan ones often slip into pan-dialect forms (كانوا يلعبوا) that
read Egyptian. The story-level model learns to expect both from these variants (all labelled with the original
dialect), built only from out-of-fold sentence probabilities so the model never sees its own training fit:

- drift: a share of a dialect story's sentences replaced by MSA sentences from other stories;
- pan-dialect (Moroccan only): a share of its dialect sentences replaced by Egyptian sentences that hold no
  Egyptian-only word, on top of the drift.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from arastory.dialect.evidence import story_features
from arastory.dialect.lexicon import NORMALIZED_LEXICON
from arastory.text import normalize_arabic, words

DRIFT_FRACTIONS = (0.3, 0.5, 0.7, 0.85)  # ours: share of sentences replaced by MSA
PAN_DIALECT_FRACTIONS = (0.15, 0.3)  # ours: share of a Moroccan story's dialect sentences made pan-dialect


@dataclass
class UnitTable:
    """Every training sentence with its document, label, weight and out-of-fold class probabilities."""

    texts: list[str]
    labels: list[str]
    documents: list[int]
    weights: np.ndarray
    probs: np.ndarray
    classes: list[str]

    def features(self, rows: list[int]) -> list[float]:
        return story_features(self.probs[rows], self.weights[rows], " ".join(self.texts[i] for i in rows), self.classes)


def plain_egyptian(table: UnitTable) -> list[int]:
    """Egyptian sentences without an Egyptian-only lexicon word (they read as generic dialect)."""
    egyptian_only = NORMALIZED_LEXICON["egy"]
    return [
        i
        for i, label in enumerate(table.labels)
        if label == "egy" and not {normalize_arabic(t) for t in words(table.texts[i])} & egyptian_only
    ]


def meta_training_set(
    table: UnitTable,
    document_labels: dict[int, str],
    seed: int = 0,
    drift_fractions: Sequence[float] = DRIFT_FRACTIONS,
    pan_dialect_fractions: Sequence[float] = PAN_DIALECT_FRACTIONS,
) -> tuple[list[list[float]], list[str]]:
    """(features, labels) for every training document and its drift / pan-dialect variants."""
    rng = random.Random(seed)
    rows_of: dict[int, list[int]] = {}
    for i, document in enumerate(table.documents):
        rows_of.setdefault(document, []).append(i)
    msa_rows = [i for i, label in enumerate(table.labels) if label == "msa"]
    plain_egy = plain_egyptian(table)
    features, labels = [], []
    for document, rows in rows_of.items():
        variety = document_labels[document]
        features.append(table.features(rows))
        labels.append(variety)
        if variety == "msa" or not msa_rows:
            continue
        for fraction in drift_fractions:
            mixed = [rng.choice(msa_rows) if rng.random() < fraction else i for i in rows]
            if all(table.labels[i] == "msa" for i in mixed):
                continue  # nothing of the dialect left: not a dialect story any more
            if variety == "mor" and plain_egy:
                for share in pan_dialect_fractions:
                    pan = [
                        rng.choice(plain_egy) if table.labels[i] != "msa" and rng.random() < share else i for i in mixed
                    ]
                    features.append(table.features(pan))
                    labels.append(variety)
            features.append(table.features(mixed))
            labels.append(variety)
    return features, labels

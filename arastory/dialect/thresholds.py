"""Cross-validated accuracy and gate thresholds for a classifier recipe, from its training text alone.

The procedure (docs/dialect.md): split the training documents into `folds` stratified folds; for each fold, train
the recipe on the others and score the held-out documents, plus MSA-drift variants of the held-out dialect
documents (a share of their sentences swapped for sentences of held-out MSA documents: genuine dialect stories
as LLMs write them). For each target variety, the gate's threshold on P(target) is the one that minimises the
balanced error, (false rejects of genuine target stories + false accepts of stories in another variety) / 2,
smoothed: each story counts by a logistic of its distance to the threshold (width SMOOTHING), so among thresholds
with the same error the one farthest from the held-out stories of both kinds wins. No story the gate is later
evaluated on is involved.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from sklearn.model_selection import StratifiedKFold
from tqdm.auto import tqdm

from arastory.dialect.evidence import story_units
from arastory.records import StoryRecord

if TYPE_CHECKING:
    from arastory.dialect.identify import DialectIdentifier

HELD_OUT_DRIFT = (0.5, 0.7)  # ours: MSA shares of the drift variants counted as genuine dialect stories
GRID = np.round(np.arange(0.01, 1.0, 0.01), 2)
SMOOTHING = 0.05  # ours: width of the logistic that smooths the error count


@dataclass
class HeldOut:
    """One held-out story's cross-validated probabilities."""

    id: str
    variety: str
    kind: str  # "original" or "drift0.5", ...
    probabilities: dict[str, float]


def cross_validate(
    records: list[StoryRecord], params: dict, folds: int = 5, seed: int = 0, progress: bool = True
) -> list[HeldOut]:
    """Held-out probabilities of every training document (and drift variants) under models that never saw it."""
    from arastory.dialect.classifier import DialectClassifier

    labels = [r.variety for r in records]
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    rng = random.Random(seed)
    out: list[HeldOut] = []
    splits = list(splitter.split(np.zeros(len(records)), labels))
    for train_idx, held_idx in tqdm(splits, desc="cross-validation", unit="fold", disable=not progress):
        model = DialectClassifier(**params).fit([records[i] for i in train_idx])
        held = [records[i] for i in held_idx]
        stories = [(r.id, r.variety, "original", r.story) for r in held]
        msa_sentences = [s for r in held if r.variety == "msa" for s in story_units(r.story)]
        for r in held:
            if r.variety != "msa" and msa_sentences:
                for share in HELD_OUT_DRIFT:
                    mixed = [rng.choice(msa_sentences) if rng.random() < share else s for s in story_units(r.story)]
                    stories.append((r.id, r.variety, f"drift{share}", " ".join(mixed)))
        probs = model.predict_proba([s[3] for s in stories])
        out += [
            HeldOut(i, v, kind, dict(zip(model.classes, row.round(4).tolist(), strict=False)))
            for (i, v, kind, _), row in zip(stories, probs, strict=False)
        ]
    return out


def balanced_errors(
    positives: np.ndarray, negatives: np.ndarray, grid: np.ndarray = GRID, width: float = SMOOTHING
) -> np.ndarray:
    """Smoothed (false-reject rate + false-accept rate) / 2 at each threshold (accept when P >= threshold)."""

    def rate(margins: np.ndarray) -> np.ndarray:  # margins: thresholds x stories, > 0 where the story is an error
        return (1.0 / (1.0 + np.exp(-margins / width))).mean(axis=1) if margins.shape[1] else np.zeros(len(grid))

    return (rate(grid[:, None] - positives[None, :]) + rate(negatives[None, :] - grid[:, None])) / 2


def choose_thresholds(held_out: list[HeldOut], varieties: list[str]) -> dict[str, float]:
    """Per target variety: the threshold with the least smoothed balanced error on the held-out stories."""
    thresholds = {}
    for target in varieties:
        positives = np.array([h.probabilities.get(target, 0.0) for h in held_out if h.variety == target])
        negatives = np.array(
            [h.probabilities.get(target, 0.0) for h in held_out if h.variety != target and h.kind == "original"]
        )
        errors = balanced_errors(positives, negatives)
        best = GRID[np.isclose(errors, errors.min())]
        thresholds[target] = float(np.round(np.median(best), 2))
    return thresholds


def cross_validated_summary(held_out: list[HeldOut], thresholds: dict[str, float]) -> dict:
    """Accuracy per variety (original documents) and the gate's rates at `thresholds`, all on held-out folds."""
    originals = [h for h in held_out if h.kind == "original"]
    accuracy = {}
    for variety in sorted({h.variety for h in originals}):
        rows = [h for h in originals if h.variety == variety]
        accuracy[variety] = round(
            sum(max(h.probabilities, key=h.probabilities.__getitem__) == variety for h in rows) / len(rows), 4
        )
    gate: dict[str, dict[str, float]] = {"false_reject": {}, "false_accept": {}}
    for target, threshold in thresholds.items():
        genuine = [h for h in held_out if h.variety == target]
        others = [h for h in originals if h.variety != target]
        gate["false_reject"][target] = round(
            float(np.mean([h.probabilities.get(target, 0) < threshold for h in genuine])), 4
        )
        gate["false_accept"][target] = round(
            float(np.mean([h.probabilities.get(target, 0) >= threshold for h in others])), 4
        )
    return {
        "accuracy": accuracy,
        "gate": gate,
        "documents": len(originals),
        "drift_variants": len(held_out) - len(originals),
    }


def gate_threshold(identifier: DialectIdentifier | None, variety: str, override: dict | float | None = None) -> float:
    """The P(variety) a story needs to pass the gate: an override, else the identifier's own, else 0.5."""
    if isinstance(override, (int, float)):
        return float(override)
    if override and variety in override:
        return float(override[variety])
    return float(getattr(identifier, "thresholds", {}).get(variety, 0.5))

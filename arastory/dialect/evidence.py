"""Story-level dialect evidence from sentence probabilities, built to survive MSA-heavy dialect stories.

LLMs asked for a dialect often narrate in MSA and keep the dialect for dialogue and particles. So a dialect story is
modelled as a mixture: each sentence is in the dialect with probability pi, in MSA otherwise. Against "all MSA" its
log-likelihood ratio is sum_i w_i log(pi r_i + 1 - pi), r_i being sentence i's dialect/MSA likelihood ratio: an MSA
sentence costs little (log(1 - pi)), a clearly dialectal one counts a lot. Which dialect is a second question,
answered by the dialect-weighted Egyptian/Moroccan log-odds of the sentences. These and the lexicon counts are what
the story-level model is fitted on (classifier.py).
"""

from __future__ import annotations

import numpy as np

from arastory.dialect.lexicon import lexicon_features
from arastory.text import sentences

MIXTURE_PIS = (0.1, 0.3, 0.6)  # ours: a few dialect shares, from a little dialect to mostly dialect
FULL_WEIGHT_WORDS = 5  # ours: shorter sentences ("واو!", "ما اسمك؟") count in proportion to their words
EPS = 1e-4
DIALECTS = ("egy", "mor")
FEATURE_NAMES = (
    *(f"mixture_llr_pi{pi}" for pi in MIXTURE_PIS),
    "egy_vs_mor_logodds_sum",
    "egy_vs_mor_logodds_mean",
    *(f"lexicon_{group}_{kind}" for group in ("egy", "mor", "dialect") for kind in ("distinct", "per100")),
)


def story_units(story: str) -> list[str]:
    """The sentences the evidence is summed over (the whole text when it has no sentence break)."""
    return sentences(story) or [story]


def unit_weights(units: list[str]) -> np.ndarray:
    return np.array([min(1.0, len(u.split()) / FULL_WEIGHT_WORDS) for u in units])


def story_features(probs: np.ndarray, weights: np.ndarray, text: str, classes: list[str]) -> list[float]:
    """Evidence features of one story from its sentences' class probabilities (rows) and weights."""
    p = np.clip(probs, EPS, 1.0)
    egy, mor, msa = (p[:, classes.index(c)] for c in ("egy", "mor", "msa"))
    # Sentence probabilities come from a class-balanced model, so the dialect/MSA prior odds are 2:1.
    ratio = (egy + mor) / msa / 2.0
    features = [float((weights * np.log(pi * ratio + 1.0 - pi)).sum()) for pi in MIXTURE_PIS]
    dialectness = (egy + mor) * weights
    logodds = dialectness * np.log(egy / mor)
    features += [float(logodds.sum()), float(logodds.sum() / max(dialectness.sum(), 1e-3))]
    return features + lexicon_features(text)


def sentence_labels(probs: np.ndarray, classes: list[str]) -> list[str]:
    return [classes[i] for i in probs.argmax(axis=1)]


def weighted_share(labels: list[str], weights: np.ndarray, variety: str) -> float:
    """The weighted share of sentences labelled `variety` (short sentences count less)."""
    total = float(weights.sum())
    if total <= 0:
        return 0.0
    return float(sum(w for label, w in zip(labels, weights, strict=False) if label == variety) / total)

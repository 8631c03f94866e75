"""Statistics for evaluation scores: percentile bootstrap CIs, paired comparisons on shared prompts, grouped summaries."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Iterable

import numpy as np

from arastory.errors import ArastoryError

# Bootstrap resamples are drawn in blocks so memory stays bounded (n_boot x n indices) for large sets.
_BLOCK_CELLS = 2_000_000


def _clean(values: Iterable) -> np.ndarray:
    """Numbers only: None and NaN are dropped (an unscored story is missing data, not a zero)."""
    kept = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return np.asarray(kept, dtype=float)


def bootstrap_means(values: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Means of `n_boot` resamples (with replacement, same size) of `values`."""
    n = len(values)
    rows_per_block = max(1, _BLOCK_CELLS // n)
    means = np.empty(n_boot)
    for start in range(0, n_boot, rows_per_block):
        stop = min(n_boot, start + rows_per_block)
        means[start:stop] = values[rng.integers(0, n, size=(stop - start, n))].mean(axis=1)
    return means


def bootstrap_ci(values, n_boot: int = 2000, alpha: float = 0.05, seed: int = 0) -> dict:
    """Mean with a percentile bootstrap (1 - alpha) CI: {"mean", "ci_low", "ci_high", "n"} (None when empty)."""
    data = _clean(values)
    if len(data) == 0:
        return {"mean": None, "ci_low": None, "ci_high": None, "n": 0}
    means = bootstrap_means(data, n_boot, np.random.default_rng(seed))
    low, high = np.percentile(means, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return {"mean": float(data.mean()), "ci_low": float(low), "ci_high": float(high), "n": int(len(data))}


def paired_comparison(a: dict, b: dict, n_boot: int = 2000, seed: int = 0, alpha: float = 0.05) -> dict:
    """System A against system B on the prompt ids both scored: mean difference (A - B) with a paired bootstrap CI,
    and the share of prompts where A scored higher (win), the same (tie) or lower (loss).

    Also returns a two-sided p-value from a paired sign-flip permutation test (n_boot flips, seeded).
    """
    shared = sorted(k for k in set(a) & set(b) if _number(a[k]) and _number(b[k]))
    if not shared:
        raise ArastoryError("paired comparison: the two systems share no scored prompt ids "
                            "(evaluate them on the same prompts.jsonl)")
    score_a = np.array([float(a[k]) for k in shared])
    score_b = np.array([float(b[k]) for k in shared])
    diff = score_a - score_b
    rng = np.random.default_rng(seed)
    means = bootstrap_means(diff, n_boot, rng)
    low, high = np.percentile(means, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return {
        "n": len(shared),
        "mean_a": float(score_a.mean()),
        "mean_b": float(score_b.mean()),
        "mean_diff": float(diff.mean()),
        "ci_low": float(low),
        "ci_high": float(high),
        "win_rate": float(np.mean(diff > 0)),
        "tie_rate": float(np.mean(diff == 0)),
        "loss_rate": float(np.mean(diff < 0)),
        "p_value": sign_flip_p_value(diff, n_boot, rng),
    }


def sign_flip_p_value(diff: np.ndarray, n_flips: int, rng: np.random.Generator) -> float:
    """Two-sided paired permutation test of mean difference 0: flip each pair's sign at random."""
    observed = abs(diff.mean())
    if observed == 0:
        return 1.0
    signs = rng.choice(np.array([-1.0, 1.0]), size=(n_flips, len(diff)))
    flipped = np.abs((signs * diff).mean(axis=1))
    # Count the observed assignment itself, so p is never 0 (Phipson & Smyth 2010).
    return float((np.sum(flipped >= observed - 1e-12) + 1) / (n_flips + 1))


def _number(value) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def summarize(rows: list[dict], by: str, values: list[str], n_boot: int = 2000, seed: int = 0) -> dict:
    """{group: {value: bootstrap_ci(...)}} over rows grouped by `rows[i][by]`; None and missing values are skipped."""
    grouped: dict = defaultdict(lambda: defaultdict(list))
    for row in rows:
        for name in values:
            if _number(row.get(name)):
                grouped[row.get(by)][name].append(row[name])
    return {group: {name: bootstrap_ci(per_value.get(name, []), n_boot=n_boot, seed=seed) for name in values}
            for group, per_value in sorted(grouped.items(), key=lambda item: str(item[0]))}

"""Statistics for evaluation scores: BCa bootstrap and Wilson CIs, paired comparisons with Holm-adjusted p-values,
agreement CIs (kappa, Spearman, Krippendorff's alpha) and grouped summaries.

Rules (ours, documented in docs/compare.md): a rate (a yes/no metric) gets a Wilson score interval; any other mean gets
a BCa bootstrap interval when n >= MIN_N_BOOTSTRAP and no interval below (a percentile bootstrap covered a 95% interval
only ~82% of the time at n=6; see bench/bench_eval_ci.py).
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import Literal

import numpy as np
from scipy.stats import norm

from arastory.errors import ArastoryError

# Bootstrap resamples are drawn in blocks so memory stays bounded (n_boot x n indices) for large sets.
_BLOCK_CELLS = 2_000_000
MIN_N_BOOTSTRAP = 10  # ours: below it a bootstrap CI of a mean under-covers badly, so none is reported
EXACT_SIGN_FLIP_MAX_N = 16  # up to 2^16 sign patterns are enumerated exactly; above, a seeded Monte Carlo sample


def _clean(values: Iterable) -> np.ndarray:
    """Numbers only: None and NaN are dropped (an unscored story is missing data, not a zero)."""
    kept = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return np.asarray(kept, dtype=float)


def is_binary(data: np.ndarray) -> bool:
    return len(data) > 0 and bool(np.all((data == 0) | (data == 1)))


def bootstrap_means(values: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Means of `n_boot` resamples (with replacement, same size) of `values`."""
    n = len(values)
    rows_per_block = max(1, _BLOCK_CELLS // n)
    means = np.empty(n_boot)
    for start in range(0, n_boot, rows_per_block):
        stop = min(n_boot, start + rows_per_block)
        means[start:stop] = values[rng.integers(0, n, size=(stop - start, n))].mean(axis=1)
    return means


def bca_interval(data: np.ndarray, boot_means: np.ndarray, alpha: float = 0.05) -> tuple[float, float]:
    """Bias-corrected and accelerated percentile interval of the mean (Efron 1987), acceleration by jackknife."""
    mean = float(data.mean())
    if np.all(data == data[0]):
        return mean, mean
    # Ties with the estimate count half, so discrete 1-5 scores do not push z0 one way.
    below = (np.sum(boot_means < mean) + 0.5 * np.sum(boot_means == mean)) / len(boot_means)
    z0 = norm.ppf(min(max(below, 1e-10), 1 - 1e-10))
    jack = (data.sum() - data) / (len(data) - 1)
    spread = jack.mean() - jack
    denominator = 6.0 * np.sum(spread**2) ** 1.5
    accel = float(np.sum(spread**3) / denominator) if denominator > 0 else 0.0
    levels = []
    for z_alpha in (norm.ppf(alpha / 2), norm.ppf(1 - alpha / 2)):
        shifted = z0 + (z0 + z_alpha) / (1 - accel * (z0 + z_alpha))
        levels.append(100 * float(norm.cdf(shifted)))
    low, high = np.percentile(boot_means, levels)
    return float(low), float(high)


def wilson_interval(successes: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Wilson score interval of a proportion: never [0, 0] for 0 of n, unlike a bootstrap or Wald interval."""
    if n == 0:
        return math.nan, math.nan
    z = float(norm.ppf(1 - alpha / 2))
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def bootstrap_ci(
    values: Iterable[float | None], n_boot: int = 2000, alpha: float = 0.05, seed: int = 0, rate: bool = False
) -> dict:
    """Mean with a (1 - alpha) CI: {"mean", "ci_low", "ci_high", "n"}.

    `rate` (0/1 values of a yes/no metric): Wilson interval at any n; else a BCa bootstrap (seeded) from
    MIN_N_BOOTSTRAP values on, and no interval (None) below. A count that happens to be 0 or 1 is not a rate.
    """
    data = _clean(values)
    if len(data) == 0:
        return {"mean": None, "ci_low": None, "ci_high": None, "n": 0}
    mean = float(data.mean())
    if rate and not is_binary(data):
        raise ValueError("a rate takes 0/1 values only")
    low: float | None
    high: float | None
    if rate:
        low, high = wilson_interval(int(data.sum()), len(data), alpha)
    elif len(data) < MIN_N_BOOTSTRAP:
        low = high = None
    else:
        low, high = bca_interval(data, bootstrap_means(data, n_boot, np.random.default_rng(seed)), alpha)
    return {"mean": mean, "ci_low": low, "ci_high": high, "n": len(data)}


def paired_comparison(a: dict, b: dict, n_boot: int = 2000, seed: int = 0, alpha: float = 0.05) -> dict:
    """System A against system B on the keys both scored (the same prompts): mean difference (A - B) with a paired
    BCa bootstrap CI (none below MIN_N_BOOTSTRAP pairs), win/tie/loss shares with Wilson CIs, and a two-sided
    sign-flip permutation p-value (exact up to EXACT_SIGN_FLIP_MAX_N pairs).
    """
    shared = sorted(k for k in set(a) & set(b) if _number(a[k]) and _number(b[k]))
    if not shared:
        raise ArastoryError(
            "paired comparison: the two systems share no scored prompts (evaluate them on the same prompts.jsonl)"
        )
    score_a = np.array([float(a[k]) for k in shared])
    score_b = np.array([float(b[k]) for k in shared])
    diff = score_a - score_b
    rng = np.random.default_rng(seed)
    low: float | None
    high: float | None
    if len(diff) >= MIN_N_BOOTSTRAP:
        low, high = bca_interval(diff, bootstrap_means(diff, n_boot, rng), alpha)
    else:
        low = high = None
    wins, ties, losses = int(np.sum(diff > 0)), int(np.sum(diff == 0)), int(np.sum(diff < 0))
    return {
        "n_pairs": len(shared),
        "mean_a": float(score_a.mean()),
        "mean_b": float(score_b.mean()),
        "mean_diff": float(diff.mean()),
        "ci_low": low,
        "ci_high": high,
        "win_rate": wins / len(diff),
        "tie_rate": ties / len(diff),
        "loss_rate": losses / len(diff),
        "win_ci": list(wilson_interval(wins, len(diff), alpha)),
        "loss_ci": list(wilson_interval(losses, len(diff), alpha)),
        "p_value": sign_flip_p_value(diff, n_boot, rng),
    }


def sign_flip_p_value(diff: np.ndarray, n_flips: int, rng: np.random.Generator) -> float:
    """Two-sided paired permutation test of mean difference 0: each pair's sign flipped at random.

    Exact (every sign pattern) for up to EXACT_SIGN_FLIP_MAX_N pairs; else n_flips seeded patterns, counting the
    observed one so p is never 0 (Phipson & Smyth 2010).
    """
    observed = abs(diff.mean())
    if observed == 0:
        return 1.0
    if len(diff) <= EXACT_SIGN_FLIP_MAX_N:
        signs = np.array(list(itertools.product((-1.0, 1.0), repeat=len(diff))))
        flipped = np.abs(signs @ diff / len(diff))
        return float(np.mean(flipped >= observed - 1e-12))
    signs = rng.choice(np.array([-1.0, 1.0]), size=(n_flips, len(diff)))
    flipped = np.abs((signs * diff).mean(axis=1))
    return float((np.sum(flipped >= observed - 1e-12) + 1) / (n_flips + 1))


def holm_adjust(p_values: list[float]) -> list[float]:
    """Holm's step-down adjustment (controls the family-wise error rate); same order as the input."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted, running = [0.0] * m, 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted


def _number(value) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def summarize(
    rows: list[dict], by: str, values: list[str], n_boot: int = 2000, seed: int = 0, rates: Iterable[str] = ()
) -> dict:
    """{group: {value: bootstrap_ci(...)}} over rows grouped by `rows[i][by]`; None and missing values are skipped;
    the names in `rates` are yes/no metrics (Wilson intervals)."""
    rates = set(rates)
    grouped: dict = defaultdict(lambda: defaultdict(list))
    for row in rows:
        for name in values:
            if _number(row.get(name)):
                grouped[row.get(by)][name].append(row[name])
    return {
        group: {
            name: bootstrap_ci(per_value.get(name, []), n_boot=n_boot, seed=seed, rate=name in rates) for name in values
        }
        for group, per_value in sorted(grouped.items(), key=lambda item: str(item[0]))
    }


# ---- agreement -------------------------------------------------------------------------------------------------


def percentile_ci(
    statistic: Callable[[np.ndarray], float], n: int, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0
) -> tuple[float | None, float | None]:
    """Percentile bootstrap interval of `statistic(indices)` over resampled item indices; undefined resamples
    (e.g. constant scores) are left out, and no interval is given when more than 5% are undefined or n is small."""
    if n < MIN_N_BOOTSTRAP:
        return None, None
    rng = np.random.default_rng(seed)
    values = np.array([statistic(rng.integers(0, n, size=n)) for _ in range(n_boot)], dtype=float)
    finite = values[np.isfinite(values)]
    if len(finite) < 0.95 * n_boot:
        return None, None
    low, high = np.percentile(finite, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(low), float(high)


def cohen_kappa(
    a: np.ndarray, b: np.ndarray, labels: Sequence[int] = (1, 2, 3, 4, 5), weights: str | None = None
) -> float:
    """Cohen's kappa on integer labels (equal to sklearn's cohen_kappa_score; numpy, for fast bootstraps)."""
    k = len(labels)
    index = {label: i for i, label in enumerate(labels)}
    observed = np.zeros((k, k))
    np.add.at(observed, ([index[int(x)] for x in a], [index[int(y)] for y in b]), 1)
    expected = np.outer(observed.sum(axis=1), observed.sum(axis=0)) / observed.sum()
    if weights is None:
        w = 1.0 - np.eye(k)
    else:
        grid = np.arange(k)
        distance = np.abs(grid[:, None] - grid[None, :]).astype(float)
        w = distance**2 if weights == "quadratic" else distance
    denominator = float(np.sum(w * expected))
    return math.nan if denominator == 0 else 1.0 - float(np.sum(w * observed)) / denominator


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    from scipy.stats import rankdata

    rx, ry = rankdata(x), rankdata(y)
    if np.std(rx) == 0 or np.std(ry) == 0:
        return math.nan
    return float(np.corrcoef(rx, ry)[0, 1])


def krippendorff_alpha(
    ratings: np.ndarray,
    level: Literal["nominal", "ordinal", "interval", "ratio"] = "ordinal",
    domain: Sequence[int] = (1, 2, 3, 4, 5),
) -> float:
    """Krippendorff's alpha (the `krippendorff` package) of a raters x items matrix, NaN = not rated."""
    import krippendorff

    usable = ratings[:, np.sum(np.isfinite(ratings), axis=0) >= 2]
    if usable.shape[1] == 0 or len(np.unique(usable[np.isfinite(usable)])) < 2:
        return math.nan
    return float(krippendorff.alpha(reliability_data=usable, level_of_measurement=level, value_domain=list(domain)))

"""Statistics against known values: BCa and Wilson CIs, paired comparisons (exact sign flips), Holm, kappa, Spearman,
Krippendorff's alpha, grouped summaries."""

import math

import numpy as np
import pytest
from scipy.stats import bootstrap, spearmanr
from sklearn.metrics import cohen_kappa_score

from arastory.errors import ArastoryError
from arastory.evaluate.stats import (
    MIN_N_BOOTSTRAP,
    bootstrap_ci,
    cohen_kappa,
    holm_adjust,
    krippendorff_alpha,
    paired_comparison,
    percentile_ci,
    spearman,
    summarize,
    wilson_interval,
)


def test_constant_data_has_zero_width():
    ci = bootstrap_ci([4] * 12)
    assert ci == {"mean": 4.0, "ci_low": 4.0, "ci_high": 4.0, "n": 12}


def test_missing_values_are_skipped_empty_gives_none_and_small_n_gives_no_interval():
    assert bootstrap_ci([None, float("nan")]) == {"mean": None, "ci_low": None, "ci_high": None, "n": 0}
    small = bootstrap_ci([1, None, 3, float("nan"), 4, 2, 5, 3])
    assert small == {"mean": 3.0, "ci_low": None, "ci_high": None, "n": 6}  # below MIN_N_BOOTSTRAP: no CI
    assert bootstrap_ci(list(range(1, MIN_N_BOOTSTRAP + 1)))["ci_low"] is not None


def test_rates_get_wilson_intervals_never_zero_width():
    # Known value: 0 of 10 → [0, 0.2775] (Wilson 1927); a percentile bootstrap gives [0, 0].
    assert wilson_interval(0, 10) == (0.0, pytest.approx(0.27754, abs=1e-4))
    low, high = wilson_interval(7, 10)
    assert (low, high) == (pytest.approx(0.39677, abs=1e-4), pytest.approx(0.89222, abs=1e-4))
    ci = bootstrap_ci([0] * 10, rate=True)
    assert (ci["mean"], ci["ci_low"], ci["n"]) == (0.0, 0.0, 10) and ci["ci_high"] == pytest.approx(0.27754, abs=1e-4)
    assert bootstrap_ci([1, 0, 1], rate=True)["ci_high"] < 1.0  # Wilson even at n=3: rates always get an interval
    assert bootstrap_ci([1] * 12) == {"mean": 1.0, "ci_low": 1.0, "ci_high": 1.0, "n": 12}  # a count, not a rate
    with pytest.raises(ValueError, match="0/1 values only"):
        bootstrap_ci([0, 2], rate=True)


def test_bca_matches_scipy():
    values = np.random.default_rng(3).exponential(1.0, size=40)  # skewed: BCa differs from the percentile interval
    ours = bootstrap_ci(values, n_boot=20000, seed=1)
    theirs = bootstrap((values,), np.mean, method="BCa", n_resamples=20000, random_state=2).confidence_interval
    assert ours["ci_low"] == pytest.approx(theirs.low, abs=0.03) and ours["ci_high"] == pytest.approx(
        theirs.high, abs=0.03
    )
    percentile = np.percentile(
        [values[np.random.default_rng(s).integers(0, 40, 40)].mean() for s in range(4000)], [2.5, 97.5]
    )
    assert ours["ci_high"] > percentile[1]  # shifted right, as BCa does for right skew


def test_seeded_and_deterministic():
    values = np.random.default_rng(5).normal(size=50)
    assert bootstrap_ci(values, seed=1) == bootstrap_ci(values, seed=1)
    assert bootstrap_ci(values, seed=1) != bootstrap_ci(values, seed=2)


def test_width_matches_the_normal_approximation_for_a_large_sample():
    values = np.random.default_rng(0).normal(3.0, 2.0, size=5000)  # 5000 x 2000 resamples: drawn in blocks
    ci = bootstrap_ci(values)
    expected_half_width = 1.96 * values.std(ddof=1) / math.sqrt(len(values))
    assert ci["ci_low"] < ci["mean"] < ci["ci_high"]
    assert (ci["ci_high"] - ci["ci_low"]) / 2 == pytest.approx(expected_half_width, rel=0.1)


def test_ci_covers_the_true_mean_at_about_the_nominal_rate_on_judge_like_scores():
    rng = np.random.default_rng(42)
    probabilities = [0.05, 0.1, 0.2, 0.4, 0.25]  # discrete, skewed 1-5 scores
    true_mean = sum((i + 1) * p for i, p in enumerate(probabilities))
    repeats, hits = 300, 0
    for seed in range(repeats):
        ci = bootstrap_ci(rng.choice([1, 2, 3, 4, 5], p=probabilities, size=20), n_boot=1000, seed=seed)
        hits += ci["ci_low"] <= true_mean <= ci["ci_high"]
    assert 0.90 <= hits / repeats <= 0.99  # 95% nominal, binomial sd over 300 repeats ~1.3%


def test_paired_comparison_hand_computed():
    a = {"p1": 5, "p2": 4, "p3": 3, "p4": 2, "only_a": 1}
    b = {"p1": 3, "p2": 4, "p3": 4, "p4": 1, "only_b": 5, "p5": None}
    result = paired_comparison(a, b)
    # shared p1..p4, differences 2, 0, -1, 1
    assert result["n_pairs"] == 4
    assert (result["mean_a"], result["mean_b"], result["mean_diff"]) == (3.5, 3.0, 0.5)
    assert (result["win_rate"], result["tie_rate"], result["loss_rate"]) == (0.5, 0.25, 0.25)
    assert result["ci_low"] is None and result["ci_high"] is None  # 4 pairs: too few for a bootstrap CI
    # Exact sign flips of |d| = 2, 0, 1, 1: signed sums 4, 2, 2, 0, 0, -2, -2, -4 (each twice); |sum| >= 2 in 6 of 8.
    assert result["p_value"] == 0.75
    assert result["win_ci"][0] == pytest.approx(wilson_interval(2, 4)[0])


def test_paired_comparison_is_antisymmetric():
    rng = np.random.default_rng(3)
    a = {f"p{i}": int(v) for i, v in enumerate(rng.integers(1, 6, size=60))}
    b = {f"p{i}": int(v) for i, v in enumerate(rng.integers(1, 6, size=60))}
    ab, ba = paired_comparison(a, b, seed=7), paired_comparison(b, a, seed=7)
    assert ab["mean_diff"] == pytest.approx(-ba["mean_diff"])
    assert ab["ci_low"] == pytest.approx(-ba["ci_high"], abs=0.05) and ab["ci_high"] == pytest.approx(
        -ba["ci_low"], abs=0.05
    )
    assert (ab["win_rate"], ab["tie_rate"], ab["loss_rate"]) == (ba["loss_rate"], ba["tie_rate"], ba["win_rate"])
    assert ab["p_value"] == pytest.approx(ba["p_value"], abs=0.02)


def test_paired_comparison_detects_a_real_difference_and_not_a_null_one():
    rng = np.random.default_rng(11)
    base = rng.integers(1, 5, size=80)
    better = {f"p{i}": int(v) + 1 for i, v in enumerate(base)}
    same = {f"p{i}": int(v) for i, v in enumerate(base)}
    strong = paired_comparison(better, same)
    assert strong["mean_diff"] == 1.0 and strong["ci_low"] == strong["ci_high"] == 1.0
    assert strong["win_rate"] == 1.0 and strong["p_value"] < 0.01
    assert paired_comparison(same, dict(same))["p_value"] == 1.0


def test_paired_comparison_without_shared_prompts_is_an_error():
    with pytest.raises(ArastoryError, match="share no scored prompts"):
        paired_comparison({"a": 1}, {"b": 2})


def test_holm_adjustment_hand_computed():
    # sorted 0.005 x4 = 0.02, 0.01 x3 = 0.03, 0.03 x2 = 0.06, 0.04 x1 = 0.04 -> kept monotone at 0.06
    assert holm_adjust([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm_adjust([0.5, 0.9]) == [1.0, 1.0] and holm_adjust([]) == []


def test_fast_kappa_and_spearman_equal_sklearn_and_scipy():
    rng = np.random.default_rng(0)
    a, b = rng.integers(1, 6, size=40), rng.integers(1, 6, size=40)
    b[:20] = a[:20]
    assert cohen_kappa(a, b) == pytest.approx(cohen_kappa_score(a, b, labels=[1, 2, 3, 4, 5]))
    assert cohen_kappa(a, b, weights="quadratic") == pytest.approx(
        cohen_kappa_score(a, b, labels=[1, 2, 3, 4, 5], weights="quadratic")
    )
    assert spearman(a, b) == pytest.approx(spearmanr(a, b).statistic)
    low, high = percentile_ci(lambda i: spearman(a[i], b[i]), len(a))
    assert low < spearman(a, b) < high
    assert percentile_ci(lambda i: 0.0, 5) == (None, None)  # too few items for an interval


def test_krippendorff_alpha_known_values():
    # Krippendorff (2011), "Computing Krippendorff's alpha-reliability": 4 observers x 12 units, missing values.
    nan = np.nan
    data = np.array(
        [
            [1, 2, 3, 3, 2, 1, 4, 1, 2, nan, nan, nan],
            [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, nan, 3],
            [nan, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, nan],
            [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, nan],
        ]
    )
    assert krippendorff_alpha(data, "nominal") == pytest.approx(0.743, abs=5e-4)
    assert krippendorff_alpha(data, "ordinal") == pytest.approx(0.815, abs=5e-4)
    assert krippendorff_alpha(data, "interval") == pytest.approx(0.849, abs=5e-4)
    assert math.isnan(krippendorff_alpha(np.full((3, 4), 3.0)))  # no variation: undefined


def test_summarize_groups_and_skips_none():
    rows = [
        {"variety": "egy", "fluency": 4, "words": 100},
        {"variety": "egy", "fluency": None, "words": 120},
        {"variety": "msa", "fluency": 2, "words": None},
        {"variety": "msa", "fluency": 5},
    ]
    out = summarize(rows, "variety", ["fluency", "words"], seed=3)
    assert summarize([{"v": "a", "ok": 0}] * 3, "v", ["ok"], rates=["ok"])["a"]["ok"]["ci_high"] > 0
    assert set(out) == {"egy", "msa"}
    assert out["egy"]["fluency"] == bootstrap_ci([4], seed=3)
    assert out["egy"]["words"] == bootstrap_ci([100, 120], seed=3)
    assert out["msa"]["fluency"] == bootstrap_ci([2, 5], seed=3)
    assert out["msa"]["words"]["n"] == 0 and out["msa"]["words"]["mean"] is None

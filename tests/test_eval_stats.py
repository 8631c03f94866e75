"""Bootstrap CIs, paired comparisons and grouped summaries against known values."""

import math

import numpy as np
import pytest

from arastory.errors import ArastoryError
from arastory.evaluate.stats import bootstrap_ci, paired_comparison, summarize


def test_constant_data_has_zero_width():
    ci = bootstrap_ci([4, 4, 4, 4, 4])
    assert ci == {"mean": 4.0, "ci_low": 4.0, "ci_high": 4.0, "n": 5}


def test_missing_values_are_skipped_and_empty_gives_none():
    assert bootstrap_ci([None, float("nan")]) == {"mean": None, "ci_low": None, "ci_high": None, "n": 0}
    ci = bootstrap_ci([1, None, 3, float("nan")])
    assert ci["n"] == 2 and ci["mean"] == 2.0


def test_hand_computed_two_point_example():
    # Resampling {0, 1} twice gives means 0 (p=.25), .5 (p=.5), 1 (p=.25):
    # the 2.5th and 97.5th percentiles are 0 and 1; the 30th and 70th are both .5.
    ci = bootstrap_ci([0, 1], n_boot=20000)
    assert (ci["mean"], ci["ci_low"], ci["ci_high"]) == (0.5, 0.0, 1.0)
    narrow = bootstrap_ci([0, 1], n_boot=20000, alpha=0.6)
    assert (narrow["ci_low"], narrow["ci_high"]) == (0.5, 0.5)


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


def test_ci_covers_the_true_mean_at_about_the_nominal_rate():
    rng = np.random.default_rng(42)
    repeats, hits = 300, 0
    for seed in range(repeats):
        ci = bootstrap_ci(rng.normal(3.0, 1.0, size=40), n_boot=1000, seed=seed)
        hits += ci["ci_low"] <= 3.0 <= ci["ci_high"]
    # Percentile bootstrap at n=40 slightly under-covers; 95% nominal, binomial sd over 300 repeats ~1.3%.
    assert 0.89 <= hits / repeats <= 0.985


def test_paired_comparison_hand_computed():
    a = {"p1": 5, "p2": 4, "p3": 3, "p4": 2, "only_a": 1}
    b = {"p1": 3, "p2": 4, "p3": 4, "p4": 1, "only_b": 5, "p5": None}
    result = paired_comparison(a, b)
    # shared p1..p4, differences 2, 0, -1, 1
    assert result["n"] == 4
    assert (result["mean_a"], result["mean_b"], result["mean_diff"]) == (3.5, 3.0, 0.5)
    assert (result["win_rate"], result["tie_rate"], result["loss_rate"]) == (0.5, 0.25, 0.25)
    assert -1.0 <= result["ci_low"] <= 0.5 <= result["ci_high"] <= 2.0
    assert 0 < result["p_value"] <= 1


def test_paired_comparison_is_antisymmetric():
    rng = np.random.default_rng(3)
    a = {f"p{i}": int(v) for i, v in enumerate(rng.integers(1, 6, size=60))}
    b = {f"p{i}": int(v) for i, v in enumerate(rng.integers(1, 6, size=60))}
    ab, ba = paired_comparison(a, b, seed=7), paired_comparison(b, a, seed=7)
    assert ab["mean_diff"] == pytest.approx(-ba["mean_diff"])
    assert ab["ci_low"] == pytest.approx(-ba["ci_high"]) and ab["ci_high"] == pytest.approx(-ba["ci_low"])
    assert (ab["win_rate"], ab["tie_rate"], ab["loss_rate"]) == (ba["loss_rate"], ba["tie_rate"], ba["win_rate"])
    assert ab["p_value"] == pytest.approx(ba["p_value"])


def test_paired_comparison_detects_a_real_difference_and_not_a_null_one():
    rng = np.random.default_rng(11)
    base = rng.integers(1, 5, size=80)
    better = {f"p{i}": int(v) + 1 for i, v in enumerate(base)}
    same = {f"p{i}": int(v) for i, v in enumerate(base)}
    strong = paired_comparison(better, same)
    assert strong["mean_diff"] == 1.0 and strong["ci_low"] == strong["ci_high"] == 1.0
    assert strong["win_rate"] == 1.0 and strong["p_value"] < 0.01
    assert paired_comparison(same, dict(same))["p_value"] == 1.0


def test_paired_comparison_without_shared_ids_is_an_error():
    with pytest.raises(ArastoryError, match="share no scored prompt ids"):
        paired_comparison({"a": 1}, {"b": 2})


def test_summarize_groups_and_skips_none():
    rows = [{"variety": "egy", "fluency": 4, "words": 100}, {"variety": "egy", "fluency": None, "words": 120},
            {"variety": "msa", "fluency": 2, "words": None}, {"variety": "msa", "fluency": 5}]
    out = summarize(rows, "variety", ["fluency", "words"], seed=3)
    assert set(out) == {"egy", "msa"}
    assert out["egy"]["fluency"] == bootstrap_ci([4], seed=3)
    assert out["egy"]["words"] == bootstrap_ci([100, 120], seed=3)
    assert out["msa"]["fluency"] == bootstrap_ci([2, 5], seed=3)
    assert out["msa"]["words"]["n"] == 0 and out["msa"]["words"]["mean"] is None

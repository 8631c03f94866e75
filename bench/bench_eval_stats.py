"""Measure what evaluation's statistics promise, against the baseline they replaced, in one run:

1. Coverage of 95% intervals for the mean of judge-like 1-5 scores at small n: the old percentile bootstrap against
   BCa (what bootstrap_ci uses from MIN_N_BOOTSTRAP stories on) and a Student t interval.
2. Coverage of 95% intervals for a rate (e.g. dialect accuracy): percentile bootstrap against Wilson.
3. Diversity against the number of stories: distinct-2 and self-BLEU over the whole set (the old corpus metrics)
   against the mean over random 50-story subsets (diversity_at), for sets of 10 to 800 stories of one generator.

    python bench/bench_eval_stats.py                       # released stories from ../shared when present, else bundled
    python bench/bench_eval_stats.py --repeats 2000        # tighter coverage estimates (slower)
"""

import argparse
import csv
import sys
from pathlib import Path

import numpy as np
from scipy import stats as scipy_stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from arastory.evaluate.metrics import distinct_n, diversity_at, self_bleu
from arastory.evaluate.stats import bca_interval, bootstrap_means, wilson_interval

JUDGE_LIKE = [0.05, 0.1, 0.2, 0.4, 0.25]  # a skewed 1-5 score distribution


def coverage_of_means(ns, repeats: int, n_boot: int) -> None:
    rng = np.random.default_rng(0)
    truth = sum((i + 1) * p for i, p in enumerate(JUDGE_LIKE))
    print("\n1. 95% CI coverage of a mean of 1-5 scores (target 0.95)")
    print(f"{'n':>4} {'percentile':>11} {'BCa':>6} {'t':>6}")
    for n in ns:
        hits = {"percentile": 0, "BCa": 0, "t": 0}
        for _ in range(repeats):
            data = rng.choice([1, 2, 3, 4, 5], p=JUDGE_LIKE, size=n).astype(float)
            boots = bootstrap_means(data, n_boot, rng)
            low, high = np.percentile(boots, [2.5, 97.5])
            hits["percentile"] += low <= truth <= high
            low, high = bca_interval(data, boots)
            hits["BCa"] += low <= truth <= high
            half = scipy_stats.t.ppf(0.975, n - 1) * data.std(ddof=1) / np.sqrt(n) if data.std() > 0 else 0.0
            hits["t"] += data.mean() - half <= truth <= data.mean() + half
        print(
            f"{n:>4} " + " ".join(f"{hits[k] / repeats:>{w}.3f}" for k, w in (("percentile", 11), ("BCa", 6), ("t", 6)))
        )


def coverage_of_rates(ns, p: float, repeats: int, n_boot: int) -> None:
    rng = np.random.default_rng(1)
    print(f"\n2. 95% CI coverage of a rate p={p} (target 0.95)")
    print(f"{'n':>4} {'percentile':>11} {'Wilson':>7}")
    for n in ns:
        hits_boot = hits_wilson = 0
        for _ in range(repeats):
            data = (rng.random(n) < p).astype(float)
            low, high = np.percentile(bootstrap_means(data, n_boot, rng), [2.5, 97.5])
            hits_boot += low <= p <= high
            low, high = wilson_interval(int(data.sum()), n)
            hits_wilson += low <= p <= high
        print(f"{n:>4} {hits_boot / repeats:>11.3f} {hits_wilson / repeats:>7.3f}")


def stories() -> tuple[str, list[str]]:
    released = Path(__file__).resolve().parents[2] / "shared" / "data" / "arastories"
    files = sorted(released.glob("Formatted-MSA-*.csv"))
    if files:
        with open(files[0], encoding="utf-8", newline="") as handle:
            return "released MSA stories", [row["Story"] for row in csv.DictReader(handle)]
    from arastory.data.bundled import load_bundled_stories

    return "bundled stories", [r.story for r in load_bundled_stories()]


def diversity_against_n(sizes, k: int) -> None:
    name, texts = stories()
    rng = np.random.default_rng(2)
    print(f"\n3. Diversity against the number of stories ({name}, one generator): whole set vs {k}-story subsets")
    print(
        f"{'n':>5} {'distinct-2 (set)':>17} {'self-BLEU (set)':>16} "
        f"{'distinct-2 @' + str(k):>15} {'self-BLEU @' + str(k):>14}"
    )
    for n in [s for s in sizes if s <= len(texts)]:
        sample = [texts[i] for i in rng.choice(len(texts), size=n, replace=False)]
        fixed = diversity_at(sample, k, repeats=100)
        cell = lambda m, fixed=fixed: "–" if fixed[m]["mean"] is None else f"{fixed[m]['mean']:.3f}"
        print(
            f"{n:>5} {distinct_n(sample, 2):>17.3f} {self_bleu(sample):>16.2f} "
            f"{cell('distinct_2'):>15} {cell('self_bleu'):>14}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1000)
    parser.add_argument("--n-boot", type=int, default=1000)
    args = parser.parse_args()
    coverage_of_means([6, 10, 20, 40], args.repeats, args.n_boot)
    coverage_of_rates([10, 30, 100], 0.9, args.repeats, args.n_boot)
    diversity_against_n([10, 50, 100, 200, 400, 800], k=50)


if __name__ == "__main__":
    main()

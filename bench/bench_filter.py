"""Benchmark the translation filter: scoring pairs/s (lexicon scorer, tiny sentence encoder) and the cost of a
5-threshold sweep relative to one threshold, measured in the same process (aim: <= 1.3x).

    python bench/bench_filter.py                 # ~10k pairs (the bundled 104, varied), a fresh cache dir
    python bench/bench_filter.py --copies 200    # ~20k pairs
"""

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def make_pairs(copies: int, path: Path) -> int:
    """The bundled pairs repeated with per-copy edits (names swapped, a sentence dropped), so few are duplicates."""
    from arastory.data.bundled import load_bundled_parallel

    rng = random.Random(0)
    rows = []
    for k in range(copies):
        for pair in load_bundled_parallel():
            row = pair.to_dict()
            row["id"] = f"{pair.id}-{k}"
            ar, en = row["ar_story"].split(". "), row["en_story"].split(". ")
            drop = rng.randrange(len(ar))
            row["ar_story"] = ". ".join(ar[:drop] + ar[drop + 1 :]) + f" ({k})"
            row["en_story"] = ". ".join(en[: min(drop, len(en) - 1)] + en[min(drop, len(en) - 1) + 1 :]) + f" ({k})"
            rows.append(row)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return len(rows)


def settings(threshold: float):
    from omegaconf import OmegaConf

    from arastory.filter.build import settings_from_config
    from arastory.paths import CONF_DIR

    section = OmegaConf.load(CONF_DIR / "filter_settings" / "default.yaml")
    return settings_from_config(OmegaConf.merge(section, {"threshold": threshold, "progress": False}))


def scoring_rate(encoder, pairs) -> float:
    start = time.perf_counter()
    encoder.encode_pairs(pairs)
    return len(pairs) / (time.perf_counter() - start)


def sweep_cost(make_encoder, data: Path, out: Path) -> tuple[float, float, list]:
    """(one cold run, five runs: cold + 4 cached thresholds) in seconds, and the kept counts."""
    from arastory.filter.pipeline import Filter

    thresholds = [0.92, 0.8, 0.85, 0.9, 0.95]
    times, kept = [], []
    for t in thresholds:
        start = time.perf_counter()
        report = Filter(data, out / str(t), make_encoder(), settings(t)).run()
        times.append(time.perf_counter() - start)
        kept.append(report["counts"]["kept"])
        assert (report["cache"]["scores"] == "miss") == (t == thresholds[0])
    return times[0], sum(times), kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=100)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-filter-"))
    os.environ["ARASTORY_CACHE"] = str(work / "cache")
    from arastory.data.bundled import load_bundled_parallel
    from arastory.filter.build import build_encoder, encoder_config
    from arastory.filter.encoders import SentenceEncoder
    from arastory.filter.tiny import build_tiny_sentence_encoder

    data = work / "pairs.jsonl"
    n = make_pairs(args.copies, data)
    pairs = load_bundled_parallel() * 10
    texts = [t for p in load_bundled_parallel() for t in (p.en_prompt, p.en_story, p.ar_prompt, p.ar_story)]
    tiny = build_tiny_sentence_encoder(work / "tiny", texts)

    def lexicon():
        return build_encoder(encoder_config("lexicon"))

    def tiny_encoder():
        return SentenceEncoder(str(tiny), batch_size=64)

    print(f"[bench_filter] {n} pairs in {data}, {os.cpu_count()} CPU cores")
    for name, make in (("lexicon", lexicon), ("tiny sentence encoder", tiny_encoder)):
        encoder = make()
        scoring_rate(encoder, pairs[:32])  # warm-up (model load, caches)
        print(f"  scoring, {name}: {scoring_rate(encoder, pairs):.0f} pairs/s")
    for name, make in (("lexicon", lexicon), ("tiny sentence encoder", tiny_encoder)):
        one, five, kept = sweep_cost(make, data, work / name.replace(" ", "_"))
        print(
            f"  sweep, {name}: one threshold {one:.2f}s, five thresholds {five:.2f}s -> {five / one:.2f}x "
            f"(aim <= 1.3x); kept at 0.92/0.8/0.85/0.9/0.95: {kept}"
        )


if __name__ == "__main__":
    main()

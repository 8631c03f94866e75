"""Benchmark: a million items through translate (translator=identity, the benchmark/testing translator), the filter
(lexicon scorer), the training data path (without and with the in-training filter) and a synthetic stories file's
loading, each stage in its own process: peak RSS and wall time at --n items
against a --base run of the same stage in the same command (time should grow ~n/base, memory should not). CPU time
(user + system) is printed next to wall time: on a shared machine it is the number that shows linear growth.

    python bench/bench_scale.py                       # 1,000,000 vs 100,000 items, every stage (hours on 2 cores)
    python bench/bench_scale.py --n 100000 --base 20000 --stages train_data translate
    python bench/bench_scale.py --n 1000000 --base 100000 --stages filter train_data_filtered synthetic_data

The training data path keeps per example its id and a few numbers in memory; texts and token ids wait on disk.
Measured numbers and what they say: docs/scaling.md ("A million items with bounded memory").

The inputs are generated (streamed to disk): English/Arabic sentences drawn from the filter's bundled lexicon, so
the lexicon scorer keeps most pairs and the near-duplicate index holds most of them; every 50th row repeats an
earlier row with one word changed, a near-duplicate the filter must find (its report's `dedup_recall` says how many
the approximate index missed, sampled against an exact search).
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
STAGES = ("translate", "filter", "train_data", "train_data_filtered", "synthetic_data")
NEAR_EVERY = 50  # every 50th generated row near-duplicates an earlier one (the filter's dedup must find it)


# -------------------------------------------------------------------------------------------------------- inputs
def write_inputs(n: int, work: Path) -> tuple[Path, Path]:
    """`english.jsonl` (id, prompt, story), `pairs.jsonl` (parallel records) and `stories.jsonl` (MSA story records,
    a synthetic stories file), n rows each, streamed."""
    import numpy as np

    from arastory.filter.lexicon import BUNDLED_LEXICON

    entries = [
        line.split("\t")
        for line in BUNDLED_LEXICON.read_text(encoding="utf-8").splitlines()
        if line and not line.startswith("#") and "\t" in line
    ]
    english = [e for e, _ in entries]
    arabic = [a.split("|")[0] for _, a in entries]
    rng = np.random.default_rng(0)
    english_path, pairs_path = work / f"english-{n}.jsonl", work / f"pairs-{n}.jsonl"
    with (
        open(english_path, "w", encoding="utf-8") as en_out,
        open(pairs_path, "w", encoding="utf-8") as pair_out,
        open(work / f"stories-{n}.jsonl", "w", encoding="utf-8") as story_out,
    ):
        for start in range(0, n, 10_000):
            words = rng.integers(0, len(entries), size=(min(10_000, n - start), 60))
            for offset, row in enumerate(words):
                i = start + offset
                if offset % NEAR_EVERY == NEAR_EVERY - 1:  # a near-duplicate: an earlier row, one word changed
                    row = words[offset - 7].copy()
                    row[30] = (row[30] + 1) % len(entries)
                en = " ".join(english[w] for w in row[:12]) + ". " + " ".join(english[w] for w in row[12:]) + "."
                ar = " ".join(arabic[w] for w in row[:12]) + ". " + " ".join(arabic[w] for w in row[12:]) + "."
                prompt_en = f"Write a story about {english[row[0]]} and {english[row[1]]}."
                prompt_ar = f"اكتب قصة عن {arabic[row[0]]} و{arabic[row[1]]}."
                en_out.write(json.dumps({"id": f"b{i}", "prompt": prompt_en, "story": en}) + "\n")
                story = {"id": f"s{i}", "variety": "msa", "prompt": prompt_ar, "story": ar, "source": "synthetic"}
                story_out.write(json.dumps(story, ensure_ascii=False) + "\n")
                pair_out.write(
                    json.dumps(
                        {
                            "id": f"b{i}",
                            "en_prompt": prompt_en,
                            "en_story": en,
                            "ar_prompt": prompt_ar,
                            "ar_story": ar,
                            "translator": "bench",
                        },
                        ensure_ascii=False,
                    )
                    + "\n"
                )
    return english_path, pairs_path


# --------------------------------------------------------------------------------------------------------- stages
def run_translate(english: Path, pairs: Path, out: Path) -> dict:
    from hydra import compose, initialize_config_dir

    from arastory.cli import register_resolvers
    from arastory.paths import CONF_DIR
    from arastory.translate.pipeline import translate

    register_resolvers()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose(
            "translate", overrides=[f"source={english}", "translator=identity", f"out={out}", "batch_size=512"]
        )
    report = translate(cfg)
    return {"items": report["translated"]}


def run_filter(english: Path, pairs: Path, out: Path) -> dict:
    from omegaconf import OmegaConf

    from arastory.filter.build import build_encoder, encoder_config, settings_from_config
    from arastory.filter.pipeline import Filter
    from arastory.paths import CONF_DIR

    section = OmegaConf.merge(
        OmegaConf.load(CONF_DIR / "filter_settings" / "default.yaml"), {"progress": False, "plots": False, "workers": 1}
    )
    report = Filter(pairs, out, build_encoder(encoder_config("lexicon")), settings_from_config(section)).run()
    counts = report["counts"]
    return {
        "items": counts["read"],
        "kept": counts["kept"],
        "near_duplicate": counts["near_duplicate"],
        "index": report["dedup_index"],
        "recall": report["dedup_recall"],
        "filter_seconds": report["seconds"],
    }


def run_train_data(english: Path, pairs: Path, out: Path, filtered: bool = False) -> dict:
    """What `python train.py strategy=sequential data.translated.path=<pairs> data.filter.enabled=false` does before
    the first step: read and split the pairs (their texts spilled to a temporary file), tokenize every example into
    the token cache (memory-mapped), drop the texts, then one pass over the training loader's batches. `filtered`:
    `data.filter.enabled=true` (the default): the filter (lexicon scorer) runs inside training first and its kept
    pairs stream back the same way."""
    from omegaconf import OmegaConf

    from arastory.paths import CONF_DIR, cache_dir
    from arastory.train.data import build_training_data
    from arastory.train.datamodule import StoryDataModule
    from arastory.train.formatting import ExampleFormatter
    from arastory.train.model import load_tokenizer
    from arastory.train.tiny import build_tiny_model

    data_cfg = OmegaConf.load(CONF_DIR / "data" / "bundled.yaml")
    data_cfg = OmegaConf.merge(
        {k: v for k, v in data_cfg.items() if k != "defaults"},
        {"translated": {"path": str(pairs)}, "max_length": 256},
        {"filter": {"enabled": filtered, "progress": False, "plots": False, "workers": 1}},
    )
    data = build_training_data(data_cfg, "egy", needed=["translated"], seed=0, out_dir=out)
    spec = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "model" / "tiny.yaml"))["tiny"]
    formatter = ExampleFormatter(load_tokenizer(build_tiny_model(**spec)), 256, "truncate")
    module = StoryDataModule(
        data.train["translated"], data.val, formatter, batch_size=8, token_cache=cache_dir() / "tokens"
    )
    module.setup("fit")
    data.train.clear()  # as the recipe does once the examples are tokenized
    batches = sum(1 for _ in module.train_dataloader())
    return {
        "items": len(module.train_set),
        "batches": batches,
        **data.counts["translated"].get("filter", {}).get("counts", {}),
    }


def run_train_data_filtered(english: Path, pairs: Path, out: Path) -> dict:
    return run_train_data(english, pairs, out, filtered=True)


def run_synthetic_data(english: Path, pairs: Path, out: Path) -> dict:
    """What `python train.py data.synthetic.path=<stories.jsonl> dialect=msa` does to a synthetic stories file before
    tokenizing: stream and screen it (texts spilled to a temporary file), split the held-out stories, read each
    training story once."""
    from omegaconf import OmegaConf

    from arastory.paths import CONF_DIR
    from arastory.train.data import build_training_data

    data_cfg = OmegaConf.load(CONF_DIR / "data" / "bundled.yaml")
    stories = pairs.with_name(pairs.name.replace("pairs-", "stories-"))
    data_cfg = OmegaConf.merge(
        {k: v for k, v in data_cfg.items() if k != "defaults"}, {"synthetic": {"path": str(stories)}}
    )
    data = build_training_data(data_cfg, "msa", needed=["synthetic"], seed=0)
    characters = sum(len(record.story) for record in data.train["synthetic"])
    return {"items": data.counts["synthetic"]["read"], "train": len(data.train["synthetic"]), "characters": characters}


class AnonymousPeak:
    """The peak of this process's anonymous memory (heap: `RssAnon` in /proc/self/status), sampled every 0.1 s.
    Peak RSS also counts the pages of memory-mapped files (the filter's caches), which the kernel reclaims at will."""

    def __init__(self):
        import threading

        self.peak_kb, self._stop = 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            self.sample()

    def sample(self) -> None:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                self.peak_kb = max(self.peak_kb, int(line.split()[1]))

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        self.sample()
        return round(self.peak_kb / 1024, 1)


def child(stage: str, english: Path, pairs: Path, out: Path) -> None:
    start, anonymous = time.perf_counter(), AnonymousPeak()
    stages = {
        "translate": run_translate,
        "filter": run_filter,
        "train_data": run_train_data,
        "train_data_filtered": run_train_data_filtered,
        "synthetic_data": run_synthetic_data,
    }
    result = stages[stage](english, pairs, out)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result.update(
        seconds=round(time.perf_counter() - start, 2),
        cpu_seconds=round(usage.ru_utime + usage.ru_stime, 2),
        peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        peak_anon_mb=anonymous.stop(),
    )
    print("RESULT " + json.dumps(result))


def measure(stage: str, n: int, work: Path) -> dict:
    english, pairs = work / f"english-{n}.jsonl", work / f"pairs-{n}.jsonl"
    env = {**os.environ, "ARASTORY_CACHE": str(work / f"cache-{stage}-{n}"), "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(
        [sys.executable, __file__, "--child", stage, str(english), str(pairs), str(work / f"{stage}-{n}")],
        capture_output=True,
        text=True,
        env=env,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode or not lines:
        raise SystemExit(f"{stage} at {n} failed:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][7:])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]), Path(sys.argv[5]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--base", type=int, default=100_000)
    parser.add_argument("--stages", nargs="+", default=list(STAGES), choices=STAGES)
    parser.add_argument(
        "--work", type=Path, default=None, help="a dir for the inputs and outputs (default: a temp dir)"
    )
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    for n in (args.base, args.n):
        if not (work / f"stories-{n}.jsonl").exists():
            start = time.perf_counter()
            write_inputs(n, work)
            print(f"[bench_scale] wrote {n} English items and {n} pairs in {time.perf_counter() - start:.0f}s ({work})")
    print(
        f"[bench_scale] {os.cpu_count()} CPU cores; each stage in its own process; ratios are {args.n:,} items vs "
        f"{args.base:,} (linear time: {args.n / args.base:.1f}x)"
    )
    for stage in args.stages:
        base = measure(stage, args.base, work)
        print(f"  {stage:<10} {args.base:>9,}: {summary(base)}", flush=True)
        big = measure(stage, args.n, work)
        per_item = (big["peak_anon_mb"] - base["peak_anon_mb"]) * 2**20 / (args.n - args.base)
        counts = {k: v for k, v in big.items() if k not in ("seconds", "cpu_seconds", "peak_rss_mb", "peak_anon_mb")}
        print(
            f"  {stage:<10} {args.n:>9,}: {summary(big)} | CPU time x{big['cpu_seconds'] / base['cpu_seconds']:.2f}, "
            f"wall x{big['seconds'] / base['seconds']:.2f}, heap x{big['peak_anon_mb'] / base['peak_anon_mb']:.2f} "
            f"({per_item:.0f} bytes/item)  "
            f"{json.dumps(counts)}",
            flush=True,
        )


def summary(result: dict) -> str:
    return (
        f"{result['cpu_seconds']:>7.1f}s CPU ({result['seconds']:>7.1f}s wall), "
        f"peak RSS {result['peak_rss_mb']:>6.0f} MB "
        f"(heap {result['peak_anon_mb']:>5.0f} MB)"
    )


if __name__ == "__main__":
    main()

"""The filter with a real (tiny, locally built) sentence-transformers encoder: loading by path, batching, the
embedding cache across thresholds through the CLI, and the threshold sweep inside `python train.py -m`."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import yaml

from arastory.data.bundled import load_bundled_parallel
from tests.conftest import FAST_TRAIN, run_cli


@pytest.fixture(scope="module")
def tiny_sentence_encoder(tmp_path_factory) -> Path:
    """A 1-layer BERT with a WordPiece tokenizer trained on the bundled pairs, saved as a SentenceTransformer."""
    from arastory.filter.tiny import build_tiny_sentence_encoder

    texts = [t for p in load_bundled_parallel() for t in (p.en_prompt, p.en_story, p.ar_prompt, p.ar_story)]
    return build_tiny_sentence_encoder(tmp_path_factory.mktemp("tiny-st"), texts)


def read_report(out: Path) -> dict:
    return json.loads((out / "report.json").read_text())


def test_cli_with_a_sentence_encoder_encodes_once_across_thresholds(tmp_path, tiny_sentence_encoder):
    env_cache = tmp_path / "cache"
    os.environ["ARASTORY_CACHE"], old = str(env_cache), os.environ["ARASTORY_CACHE"]
    try:
        args = [
            "-m",
            "arastory.filter",
            "input=bundled",
            "encoder=labse",
            f"encoder.model={tiny_sentence_encoder}",
            "encoder.batch_size=16",
            "filter.chunk_size=40",
        ]
        first = run_cli([*args, f"out={tmp_path}/t1", "filter.threshold=0.5", "wandb.mode=offline"], check=True)
        second = run_cli([*args, f"out={tmp_path}/t2", "filter.threshold=0.9", "wandb.mode=disabled"], check=True)
    finally:
        os.environ["ARASTORY_CACHE"] = old
    one, two = read_report(tmp_path / "t1"), read_report(tmp_path / "t2")
    assert one["cache"]["scores"] == "miss" and one["cache"]["pairs_encoded"] == 104
    assert two["cache"] == {"checks": "hit", "scores": "hit", "pairs_encoded": 0, "pairs_checked": 0}
    assert one["encoder"]["id"] == two["encoder"]["id"] and one["encoder"]["id"].startswith("st-")
    # Same cached scores, different threshold: the kept-vs-threshold curves agree and the counts follow the threshold.
    assert one["kept_vs_threshold"] == two["kept_vs_threshold"]
    curve = dict(one["kept_vs_threshold"])
    for report, t in ((one, 0.5), (two, 0.9)):
        counts = report["counts"]
        assert counts["kept_at_threshold"] == curve[t]
        assert counts["kept"] + counts["rejected"] == counts["read"] == 104
        assert counts["passed_checks"] == 104 - sum(counts["rejected_by_check"].values()) == 88
        kept = [
            json.loads(line)
            for line in (tmp_path / ("t1" if t == 0.5 else "t2") / "kept.jsonl").read_text().splitlines()
        ]
        assert len(kept) == counts["kept"] and all(r["meta"]["similarity"] >= t for r in kept)
    # Embeddings live on disk as a memory-mappable .npy of (rows, dim).
    store = next(p for p in (tmp_path / "cache" / "filter").iterdir() if p.name.startswith("st-"))
    embeddings = np.load(store / "ar.npy", mmap_mode="r")
    assert embeddings.shape[1] == 32 and np.allclose(np.linalg.norm(embeddings[:104], axis=1), 1, atol=1e-4)
    for out in ("t1", "t2"):
        assert (tmp_path / out / "similarity_hist.png").stat().st_size > 1000
        assert (tmp_path / out / "kept_vs_threshold.png").stat().st_size > 1000
    assert list((tmp_path / "t1" / "wandb").glob("offline-run-*")), "an offline W&B run with the plots"
    assert "kept" in first.stdout and "'scores': 'hit'" in second.stdout


def test_train_threshold_sweep_encodes_once_and_reports_counts(tmp_path):
    sweep = tmp_path / "sweep"
    env = {"ARASTORY_CACHE": str(tmp_path / "cache")}
    old = os.environ["ARASTORY_CACHE"]
    os.environ["ARASTORY_CACHE"] = env["ARASTORY_CACHE"]
    try:
        run_cli(
            [
                "train.py",
                "-m",
                *FAST_TRAIN,
                "strategy=sequential",
                "dialect=msa",
                "strategy.stages.0.max_steps=1",
                "strategy.stages.1.max_steps=1",
                "data.translated.size=null",
                "data.filter.threshold=0.5,0.995",
                f"hydra.sweep.dir={sweep}",
            ],
            check=True,
        )
    finally:
        os.environ["ARASTORY_CACHE"] = old
    jobs = [json.loads((sweep / str(k) / "metrics.json").read_text())["data"]["translated"] for k in (0, 1)]
    filters = [job["filter"] for job in jobs]
    assert [f["threshold"] for f in filters] == [0.5, 0.995]
    assert filters[0]["cache"]["scores"] == "miss" and filters[0]["cache"]["pairs_encoded"] == 104
    assert filters[1]["cache"]["scores"] == "hit" and filters[1]["cache"]["pairs_encoded"] == 0
    assert filters[0]["counts"]["kept"] > filters[1]["counts"]["kept"]
    for job, f in zip(jobs, filters, strict=False):
        assert job["train"] + job["heldout"] == f["counts"]["kept"]
    assert (sweep / "0" / "filter" / "kept.jsonl").exists() and (
        sweep / "1" / "filter" / "similarity_hist.png"
    ).exists()
    assert yaml.safe_load((sweep / "1" / "config.yaml").read_text())["data"]["filter"]["threshold"] == 0.995

"""Translation filter: real signal on the bundled set, cache reuse across thresholds, dedup, leakage, bad input, CLI."""

import json
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from arastory.budget import BudgetExceeded
from arastory.data.bundled import PARALLEL_FILE, load_bundled_parallel
from arastory.filter.build import build_encoder, encoder_config, settings_from_config
from arastory.filter.dedup import DedupSettings, near_duplicates, near_duplicates_measured
from arastory.filter.pipeline import Filter
from arastory.paths import CONF_DIR
from arastory.records import StoryRecord
from tests.conftest import run_cli

FILTER_CONF = OmegaConf.create({"filter": OmegaConf.load(CONF_DIR / "filter_settings" / "default.yaml")})


def settings(**overrides):
    section = OmegaConf.merge(FILTER_CONF.filter, {"progress": False, "plots": False, **overrides})
    return settings_from_config(section)


def lexicon():
    return build_encoder(encoder_config("lexicon"))


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_lexicon_scorer_rejects_every_planted_flaw_at_default_settings(tmp_path):
    report = Filter(PARALLEL_FILE, tmp_path, lexicon(), settings()).run()
    labels, counts = report["labels"], report["counts"]
    assert labels["flawed"]["n"] == 24 and labels["flawed"]["rejected"] == 24
    assert labels["faithful"]["n"] == 80 and labels["faithful"]["kept"] / 80 >= 0.9
    assert labels["flawed"]["mean_similarity"] < labels["faithful"]["mean_similarity"] - 0.3
    rejected = {r["id"]: r for r in read_jsonl(tmp_path / "rejected.jsonl")}
    truth = {p.id: p.flaw for p in load_bundled_parallel()}
    # The flaws no cheap check can see are caught by the lexicon score itself.
    for row in rejected.values():
        if truth[row["id"]] in ("meaning_changed", "other_story"):
            assert row["reason"] == "below_threshold" and row["score"] < 0.92, row["id"]
    assert {truth[i] for i, r in rejected.items() if r["reason"] == "wrong_variety"} == {"wrong_variety"}
    assert {truth[i] for i, r in rejected.items() if r["reason"] == "untranslated"} == {"untranslated"}
    assert counts["read"] == 104 and counts["kept"] + counts["rejected"] == 104
    assert counts["kept"] == len(read_jsonl(tmp_path / "kept.jsonl"))
    assert all(r["meta"]["similarity"] >= 0.92 for r in read_jsonl(tmp_path / "kept.jsonl"))
    print(
        f"\nbundled: flawed rejected {labels['flawed']['rejected']}/24, faithful kept {labels['faithful']['kept']}/80, "
        f"mean similarity flawed {labels['flawed']['mean_similarity']} "
        f"vs faithful {labels['faithful']['mean_similarity']}"
    )


def test_training_and_cli_compose_the_same_filter_settings():
    from hydra import compose, initialize_config_dir

    from arastory.cli import register_resolvers

    register_resolvers()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        training = compose(config_name="train").data.filter
        cli = compose(config_name="filter").filter
    assert training.enabled and training.threshold == 0.92 and training.encoder == "lexicon"
    for part in ("threshold", "checks", "dedup", "leakage"):
        assert training[part] == cli[part] == FILTER_CONF.filter[part], part


def test_exact_and_near_duplicates_leave_the_set(tmp_path):
    pairs = [p.to_dict() for p in load_bundled_parallel() if p.flaw is None][:20]
    exact = {**pairs[3], "id": "copy-exact", "ar_story": "  " + pairs[3]["ar_story"].replace("،", " ، ") + "!"}
    sentences = pairs[5]["ar_story"].split(". ")
    near = {
        **pairs[5],
        "id": "copy-near",
        "ar_story": ". ".join([*sentences[:-1], "وكانت النهاية جميلة جدًا"]),
        "en_story": pairs[5]["en_story"] + " The end.",
    }
    path = write_jsonl(tmp_path / "in.jsonl", [*pairs, exact, near])
    report = Filter(path, tmp_path / "out", lexicon(), settings()).run()
    rejected = {r["id"]: r["reason"] for r in read_jsonl(tmp_path / "out" / "rejected.jsonl")}
    assert rejected == {"copy-exact": "duplicate", "copy-near": "near_duplicate"}
    assert report["counts"]["duplicate"] == 1 and report["counts"]["near_duplicate"] == 1
    assert report["dedup_index"] == "flat"


def test_ivf_index_finds_the_same_near_duplicates_as_flat():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(3000, 32)).astype(np.float32)
    planted = np.arange(100, 3000, 97)
    base[planted] = base[planted - 50] + 0.01 * rng.normal(size=(len(planted), 32))
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    candidates = np.arange(len(base))
    flat, kind_flat = near_duplicates(
        candidates, base, DedupSettings(similarity=0.97, index="auto", ivf_min_items=10_000)
    )
    ivf, kind_ivf = near_duplicates(
        candidates, base, DedupSettings(similarity=0.97, index="auto", ivf_min_items=1000, nprobe=64, chunk_size=500)
    )
    assert kind_flat == "flat" and kind_ivf.startswith("ivf")
    assert set(flat) == set(planted) and set(ivf) == set(planted)


def greedy_exact(vectors: np.ndarray, similarity: float) -> set[int]:
    """The definition: an item is dropped when its best match among the EARLIER KEPT items reaches `similarity`."""
    kept: list[int] = []
    for i in range(len(vectors)):
        if not kept or (vectors[kept] @ vectors[i]).max() < similarity:
            kept.append(i)
    return set(range(len(vectors))) - set(kept)


def test_forced_ivf_dedup_is_greedy_over_earlier_kept_items_like_exact_search():
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(1200, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    for a, b, c in [(10, 400, 900), (20, 25, 30), (500, 1100, 1105)]:
        # a, b 15 degrees apart, b, c 15 degrees apart, a, c 30 (cos 0.87): b is dropped (a kept), and so c is kept
        plane = np.linalg.qr(rng.normal(size=(32, 2)))[0].T
        for index, angle in ((a, 0), (b, 15), (c, 30)):
            vectors[index] = np.cos(np.radians(angle)) * plane[0] + np.sin(np.radians(angle)) * plane[1]
    expected = greedy_exact(vectors, 0.95)
    assert {400, 25, 1100} <= expected and not {10, 900, 20, 30, 500, 1105} & expected
    candidates = np.arange(len(vectors))
    for chunk_size in (16, 2048):  # across chunks (the index) and within one chunk
        dedup = DedupSettings(similarity=0.95, index="ivf", list_size=50, chunk_size=chunk_size)
        dups, info = near_duplicates_measured(candidates, vectors, dedup)
        assert info["index"] == "ivf24_hnsw32_sq8" and set(dups.tolist()) == expected, chunk_size
        assert info["recall"]["missed_in_sample"] == 0 and info["recall"]["recall"] == 1.0
    flat, kind = near_duplicates(candidates, vectors, DedupSettings(similarity=0.95, index="flat", chunk_size=16))
    assert kind == "flat" and set(flat.tolist()) == expected


def test_ivf_lists_keep_their_size_as_the_set_grows_so_each_search_costs_the_same():
    """Linear time: nlist = candidates / list_size under an HNSW coarse quantizer (main's nlist grew as 4 sqrt(n) under
    a flat quantizer, so a search scanned ever longer lists and every centroid: x15.9 CPU for x10 pairs)."""
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(20_000, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors[19_000:] = vectors[:1000]  # planted duplicates of earlier items
    for n in (2000, 20_000):
        dups, info = near_duplicates_measured(np.arange(n), vectors, DedupSettings(index="ivf", list_size=100))
        assert info["index"] == f"ivf{n // 100}_hnsw32_sq8"
        exact, _ = near_duplicates(np.arange(n), vectors, DedupSettings(index="flat"))
        assert np.array_equal(dups, exact) and len(exact) == max(0, n - 19_000)
    assert info["recall"]["found"] == 1000 and info["recall"]["recall"] == 1.0


def test_leakage_guard_drops_pairs_that_match_an_eval_item(tmp_path):
    pairs = [p for p in load_bundled_parallel() if p.flaw is None][:12]
    eval_file = tmp_path / "eval.jsonl"
    leaked_story = StoryRecord(
        id="eval-1", variety="msa", prompt="اكتب قصة عن أي شيء.", story=pairs[2].ar_story + " ثم نام."
    )
    leaked_prompt = StoryRecord(
        id="eval-2", variety="msa", prompt=pairs[7].ar_prompt, story="قصة أخرى تماما عن القمر والنجوم."
    )
    write_jsonl(eval_file, [leaked_story.to_dict(), leaked_prompt.to_dict()])
    path = write_jsonl(tmp_path / "in.jsonl", [p.to_dict() for p in pairs])
    report = Filter(path, tmp_path / "out", lexicon(), settings(leakage={"eval_files": [str(eval_file)]})).run()
    rejected = {r["id"]: r["reason"] for r in read_jsonl(tmp_path / "out" / "rejected.jsonl")}
    assert rejected == {pairs[2].id: "leakage", pairs[7].id: "leakage"}
    assert report["counts"]["leakage"] == 2 and report["eval_items"] == 2


class Killed(RuntimeError):
    pass


def test_a_killed_encoding_resumes_where_it_stopped(tmp_path):
    encoder = lexicon()
    real, calls = encoder.encode_pairs, []

    def dies_on_third_chunk(pairs):
        calls.append(len(pairs))
        if len(calls) == 3:
            raise Killed("simulated kill")
        return real(pairs)

    encoder.encode_pairs = dies_on_third_chunk
    data = tmp_path / "pairs.jsonl"  # its own bytes, so no other test's cache entry matches
    data.write_text(PARALLEL_FILE.read_text(encoding="utf-8") + "\n", encoding="utf-8")
    with pytest.raises(Killed):
        Filter(data, tmp_path / "a", encoder, settings(chunk_size=32)).run()
    assert not (tmp_path / "a" / "kept.jsonl").exists()
    report = Filter(data, tmp_path / "b", lexicon(), settings(chunk_size=32)).run()
    assert report["cache"]["scores"] == "resumed at 64" and report["cache"]["pairs_encoded"] == 104 - 64
    assert report["counts"]["read"] == 104


def test_bad_input_names_file_and_line_or_is_skipped_and_counted(tmp_path):
    good = [p.to_dict() for p in load_bundled_parallel()[:4]]
    missing = {k: v for k, v in good[0].items() if k != "ar_story"} | {"id": "no-ar"}
    path = tmp_path / "bad.jsonl"
    lines = [
        json.dumps(good[0], ensure_ascii=False),
        "{not json",
        json.dumps(missing, ensure_ascii=False),
        *(json.dumps(g, ensure_ascii=False) for g in good[1:]),
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    proc = run_cli(
        ["-m", "arastory.filter", f"input={path}", f"out={tmp_path}/out", "encoder=lexicon", "wandb.mode=disabled"]
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        f"data error: {path}:2: invalid JSON (Expecting property name enclosed in double quotes at column 2)"
    )
    assert not (tmp_path / "out" / "kept.jsonl").exists()
    with pytest.raises(BudgetExceeded, match=r"2 of 6 lines unusable .*more than filter.max_failure_rate=0.05"):
        Filter(path, tmp_path / "over", lexicon(), settings(on_error="skip")).run()  # 2 of 6 lines is over budget
    report = Filter(path, tmp_path / "skip", lexicon(), settings(on_error="skip", max_failure_rate=0.5)).run()
    assert report["counts"]["input_errors"] == 2 and report["counts"]["read"] == 4
    assert f"{path}:3: missing field(s): ar_story" in report["input_error_examples"][1]
    proc = run_cli(["-m", "arastory.filter", f"input={path}", "encoder=nope"])
    assert proc.returncode == 2 and proc.stderr.strip().endswith(
        "config error: encoder: 'nope' is not one of: labse, lexicon"
    )


def test_worker_processes_give_the_same_decisions(tmp_path, monkeypatch):
    monkeypatch.setenv("ARASTORY_CACHE", str(tmp_path / "cache-serial"))
    serial = Filter(PARALLEL_FILE, tmp_path / "serial", lexicon(), settings()).run()
    monkeypatch.setenv("ARASTORY_CACHE", str(tmp_path / "cache-pool"))
    pooled = Filter(PARALLEL_FILE, tmp_path / "pool", lexicon(), settings(workers=2, workers_min_items=1)).run()
    assert pooled["cache"]["pairs_checked"] == 104 and pooled["counts"] == serial["counts"]
    assert (tmp_path / "pool" / "kept.jsonl").read_text() == (tmp_path / "serial" / "kept.jsonl").read_text()


FILTER_BAD = [  # before the FilterSettings schema: a TypeError traceback, then two values taken unchecked
    ("filter.threshold=abc", "filter.threshold: must be a number, got abc"),
    ("filter.checks.min_length_ratio=abc", "filter.checks.min_length_ratio: must be a number, got abc"),
    ("filter.dedup.near=maybe", "filter.dedup.near: must be true or false, got maybe"),
    ("+filter.checks.max_ratio=2", "filter.checks.max_ratio: is not a setting of filter.checks (one of: enabled,"),
    ("filter.dedup.index=hnsw", "filter.dedup.index: 'hnsw' is not one of: auto, flat, ivf"),
]


@pytest.mark.parametrize("override,message", FILTER_BAD, ids=[b[0] for b in FILTER_BAD])
def test_filter_settings_schema_names_the_key(override, message):
    from hydra import compose, initialize_config_dir

    from arastory.errors import ConfigError

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        section = compose("filter", overrides=[override]).filter
        train_section = (
            compose("train", overrides=["data." + override.lstrip("+")]).data.filter if "+" not in override else None
        )
    with pytest.raises(ConfigError) as error:
        settings_from_config(section)
    assert str(error.value).startswith(f"config error: {message}")
    if train_section is not None:  # the same settings under training's data.filter, named as written there
        with pytest.raises(ConfigError) as error:
            settings_from_config(train_section, "data.filter")
        assert str(error.value).startswith(f"config error: data.{message}")

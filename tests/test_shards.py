"""Sharded data stages (`shard=i/n`) and `python -m arastory.data merge`: the merged output of the shards equals the
unsharded job's, duplicates that fell into different shards are removed once, and a merge of missing or unfinished
shards stops with one line. Translate runs with the benchmark/testing translator (`translator=identity`)."""

import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from arastory.cli import register_resolvers
from arastory.data.__main__ import merge_main
from arastory.data.bundled import PARALLEL_FILE, load_bundled_stories
from arastory.data.merge import merge
from arastory.io import read_jsonl
from arastory.paths import CONF_DIR
from tests.conftest import run_cli
from tests.openai_server import OpenAIServer, Reply

register_resolvers()


def composed(config: str, overrides: list[str]):
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return compose(config, overrides=overrides)


def english_source(path: Path, n: int = 30, repeat_first_id: bool = True) -> Path:
    rows = [
        {"id": f"s{i}", "prompt": f"Write story number {i}.", "story": f"Once upon a time there was cat {i}."}
        for i in range(n)
    ]
    if repeat_first_id:
        rows.insert(1, dict(rows[0]))  # the same id at positions 0 and 1: shard 0 and shard 1 of 3
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# ------------------------------------------------------------------------------------------------------- translate
def test_translate_shards_merge_into_the_unsharded_output(tmp_path, capsys):
    from arastory.translate.pipeline import translate

    source = english_source(tmp_path / "en.jsonl")
    whole = translate(composed("translate", [f"source={source}", "translator=identity", f"out={tmp_path / 'whole'}"]))
    # The shards as one sweep through a launcher (joblib: parallel worker processes), each job in its shard dir.
    sharded = tmp_path / "sharded"
    run_cli(
        [
            "-m",
            "arastory.translate",
            "-m",
            "hydra/launcher=joblib",
            "hydra.launcher.n_jobs=2",
            f"source={source}",
            "translator=identity",
            f"out={sharded}",
            "shard=0/3,1/3,2/3",
        ],
        check=True,
    )
    assert sorted(p.name for p in (sharded / "shards").iterdir()) == ["0-of-3", "1-of-3", "2-of-3"]
    manifests = [json.loads((sharded / "shards" / f"{i}-of-3" / "shard.json").read_text()) for i in range(3)]
    assert [m["complete"] for m in manifests] == [True] * 3 and [m["counts"]["read"] for m in manifests] == [11, 10, 10]

    merge_main([str(sharded)])
    assert f"{sharded}/parallel.jsonl" in capsys.readouterr().out
    merged = {r["id"]: r for r in read_jsonl(sharded / "parallel.jsonl")}
    unsharded = {r["id"]: r for r in read_jsonl(tmp_path / "whole" / "parallel.jsonl")}
    assert merged == unsharded and len(merged) == 30 == whole["rows_in_output"]
    report = json.loads((sharded / "merge_report.json").read_text())
    assert report["cross_shard_duplicate_ids"] == 1 and report["rows"] == 30 and report["counts"]["read"] == 31
    from arastory.translate.identity import IdentityTranslator

    assert merged["s3"]["ar_story"] == IdentityTranslator().translate(["Once upon a time there was cat 3."])[0]
    assert merged["s3"]["translator"] == "identity"


def test_a_shard_resumes_on_its_own(tmp_path):
    from arastory.translate.pipeline import translate

    source = english_source(tmp_path / "en.jsonl", n=20, repeat_first_id=False)
    args = [f"source={source}", "translator=identity", f"out={tmp_path / 't'}", "shard=1/2"]
    first = translate(composed("translate", [*args, "limit=10"]))  # the first 10 source items: 5 of them are shard 1's
    again = translate(composed("translate", args))
    assert (first["translated"], again["already_done"], again["translated"]) == (5, 5, 5)
    rows = read_jsonl(tmp_path / "t" / "shards" / "1-of-2" / "parallel.jsonl")
    assert [r["id"] for r in rows] == [f"s{i}" for i in range(1, 20, 2)]


def merge_error(out: str, capsys) -> str:
    """`python -m arastory.data merge <out>` in this process: its exit code must be 2; its stderr."""
    capsys.readouterr()  # what ran before
    with pytest.raises(SystemExit) as stopped:
        merge_main([out])
    assert stopped.value.code == 2
    return capsys.readouterr().err.strip()


def test_merge_refuses_missing_or_unfinished_shards(tmp_path, capsys):
    from arastory.translate.pipeline import translate

    source = english_source(tmp_path / "en.jsonl", n=8, repeat_first_id=False)
    for i in range(2):
        translate(
            composed("translate", [f"source={source}", "translator=identity", f"out={tmp_path}/t", f"shard={i}/2"])
        )
    manifest = tmp_path / "t" / "shards" / "1-of-2" / "shard.json"
    saved = manifest.read_text()
    manifest.write_text(saved.replace('"complete": true', '"complete": false'))
    assert merge_error(f"{tmp_path}/t", capsys) == (
        f"data error: {tmp_path}/t/shards: shards not finished: 1/2; rerun them with the same command (each "
        "resumes), or merge anyway with --allow-incomplete"
    )
    manifest.unlink()
    assert "1 of 2 shards missing: 1/2; run them with shard=<i>/2" in merge_error(f"{tmp_path}/t", capsys)
    assert not (tmp_path / "t" / "parallel.jsonl").exists()
    bad = run_cli(
        ["-m", "arastory.translate", f"source={source}", "translator=identity", f"out={tmp_path}/u", "shard=2/2"]
    )
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].startswith(
        "config error: shard: '2/2' is not i/n"
    )


# ---------------------------------------------------------------------------------------------------------- filter
def test_filter_shards_dedup_across_shards_like_one_filter(tmp_path):
    from arastory.data.shards import Shard
    from arastory.filter.build import build_encoder, encoder_config, settings_from_config
    from arastory.filter.pipeline import Filter

    pairs = [json.loads(line) for line in PARALLEL_FILE.read_text().splitlines()][:40]
    copy = {**pairs[2], "id": "copy-of-2"}  # an exact duplicate of a pair in another shard
    near = {
        **pairs[5],
        "id": "near-5",
        "en_story": pairs[5]["en_story"] + " Really.",
        "ar_story": pairs[5]["ar_story"] + " حقا.",
    }  # a near duplicate
    rows = [
        *pairs[:5],
        copy,
        *pairs[5:12],
        near,
        *pairs[12:],
    ]  # lines 6 and 14: shard 1 of 2; pairs 2 and 5 (lines 3, 7): shard 0
    source = tmp_path / "pairs.jsonl"
    source.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    cfg = composed("filter", ["encoder=lexicon", "filter.progress=false", "filter.plots=false"])
    settings = settings_from_config(cfg.filter)

    def run(out, shard=None):
        encoder = build_encoder(encoder_config(cfg.encoder))
        return Filter(source, out, encoder, settings, shard=shard).run()

    whole = run(tmp_path / "whole")
    for i in range(2):
        run(tmp_path / "sharded" / "shards" / f"{i}-of-2", Shard(i, 2))
    report = merge(tmp_path / "sharded")
    kept = [r["id"] for r in read_jsonl(tmp_path / "sharded" / "kept.jsonl")]
    unsharded = [r["id"] for r in read_jsonl(tmp_path / "whole" / "kept.jsonl")]
    assert sorted(kept) == sorted(unsharded) and "copy-of-2" not in kept and "near-5" not in kept
    assert whole["counts"]["duplicate"] == 1 and whole["counts"]["near_duplicate"] == 1
    assert report["counts"]["cross_shard_duplicate"] == 1 and report["counts"]["cross_shard_near_duplicate"] == 1
    assert report["counts"]["read"] == whole["counts"]["read"] and report["counts"]["kept"] == whole["counts"]["kept"]
    rejected = {r["id"]: r["reason"] for r in read_jsonl(tmp_path / "sharded" / "cross_shard_rejected.jsonl")}
    assert rejected == {"copy-of-2": "duplicate", "near-5": "near_duplicate"}
    # Each shard has its own encoder cache: a rerun of a shard encodes nothing.
    assert run(tmp_path / "again", Shard(1, 2))["cache"]["scores"] == "hit"


# ------------------------------------------------------------------------------------------------------ synthesize
@pytest.fixture
def api_key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "test-key-shards")


def test_synthesize_shards_gate_duplicates_across_shards(tmp_path, api_key, capsys):
    from arastory.synthesize.run import sample_prompts, synthesize

    stories = [r.story for r in load_bundled_stories() if r.variety == "egy"]
    base = [
        "variety=egy",
        "n=6",
        "generator.backoff_base=0.01",
        "gates.check_variety=false",
    ]  # the duplicate gates are the point

    def run(out, shard=None):
        cfg = composed(
            "synthesize",
            [*base, f"out={out}", f"generator.base_url={server.base_url}", *([f"shard={shard}"] if shard else [])],
        )
        return synthesize(cfg, out if not shard else Path(out) / "shards" / shard.replace("/", "-of-"))

    prompts = sample_prompts(composed("synthesize", base))
    order = {p["prompt"]: i for i, p in enumerate(prompts)}

    # Prompt 1 (shard 1 of 2) gets the same story as prompt 0 (shard 0): only a merge can see the repeat.
    def answer(n, body):
        index = order[body["messages"][-1]["content"]]
        return Reply(text=stories[0] if index <= 1 else stories[index])

    with OpenAIServer(answer) as server:
        whole = run(tmp_path / "whole")
        for i in range(2):
            run(tmp_path / "sharded", f"{i}/2")
    shard_reports = [
        json.loads((tmp_path / "sharded" / "shards" / f"{i}-of-2" / "report.json").read_text()) for i in range(2)
    ]
    assert [r["requested"] for r in shard_reports] == [3, 3] and [r["kept"] for r in shard_reports] == [3, 3]
    report = merge_main([str(tmp_path / "sharded")])
    printed = capsys.readouterr().out
    assert "1 story short of n=6" in printed and "rerun the shards with a larger n" in printed
    kept = [r["id"] for r in read_jsonl(tmp_path / "sharded" / "stories.jsonl")]
    # The union's gates decide as one job's: prompt 1 repeats prompt 0 and is rejected; the shards asked for n in all,
    # so the merge is one story short (reported, never padded).
    whole_kept = [r["id"] for r in read_jsonl(tmp_path / "whole" / "stories.jsonl")]
    assert kept == whole_kept[:5] and report["short_by"] == 1 == 6 - len(kept)
    assert whole["rejected"]["duplicate"] == 1 and report["counts"]["cross_shard"]["duplicate"] == 1
    assert kept == sorted(kept) and "egy-s0-000001" not in kept
    rejected = {r["id"]: r["reason"] for r in read_jsonl(tmp_path / "sharded" / "rejected.jsonl")}
    assert rejected.get("egy-s0-000001") == "duplicate"

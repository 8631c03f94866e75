"""`python evaluate.py` end to end on a tiny trained run, judged by a scripted local OpenAI-compatible server."""

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from arastory.evaluate.judge import CRITERIA, judge_messages
from arastory.text import normalize_for_hash
from tests.conftest import FAST_TRAIN, REPO, run_cli
from tests.openai_server import OpenAIServer
from tests.test_evaluate_judge import MALFORMED, ScriptedJudge, scripted_scores

SECRET = "test-key-DO-NOT-WRITE-0123456789"
EVAL_ARGS = ["n_per_variety=2", "sampling.max_new_tokens=12", "judge.timeout=10", "judge.concurrency=4"]


def evaluate_cli(args: list[str], key: str | None = SECRET) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"} | {"HYDRA_FULL_ERROR": "0"}
    if key:
        env["OPENAI_API_KEY"] = key
    return subprocess.run([sys.executable, "evaluate.py", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=600, env=env)


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("eval-run") / "run"
    args = [a for a in FAST_TRAIN if not a.startswith("logger=")] + ["logger=wandb", f"hydra.run.dir={run_dir}"]
    run_cli(["train.py", *args], check=True)
    return run_dir


@pytest.fixture(scope="module")
def evaluated(trained_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval") / "out"
    script = ScriptedJudge()
    with OpenAIServer(script) as server:
        proc = evaluate_cli([f"run={trained_run}", f"out={out}", f"judge.base_url={server.base_url}", *EVAL_ARGS])
        assert proc.returncode == 0, proc.stderr[-3000:]
        return {"out": out, "server": server, "script": script, "proc": proc}


def test_evaluation_writes_every_output(evaluated, trained_run):
    out = evaluated["out"]
    for name in ("prompts.jsonl", "generations.jsonl", "judgments.jsonl", "story_metrics.jsonl", "scores.json",
                 "report.md", "criterion_fluency.png", "criterion_variety.png", "variety_egy.png", "variety_msa.png"):
        assert (out / name).exists() and (out / name).stat().st_size > 0, name
    prompts = lines(out / "prompts.jsonl")
    assert [p["variety"] for p in prompts] == ["msa", "msa", "egy", "egy", "mor", "mor"]
    assert all(set(p) == {"id", "variety", "prompt", "features"} and p["features"]["country"] for p in prompts)
    # Fresh prompts: none occurs in the run's data (training or held-out).
    from arastory.data.bundled import load_bundled_stories
    seen = {normalize_for_hash(r.prompt) for r in load_bundled_stories()}
    assert not seen & {normalize_for_hash(p["prompt"]) for p in prompts}
    generations = lines(out / "generations.jsonl")
    assert sorted(g["id"] for g in generations) == sorted(p["id"] for p in prompts)
    assert all(g["system"] == "direct-all" and g["meta"]["sampling"]["max_new_tokens"] == 12
               and 0 < g["meta"]["new_tokens"] <= 12 for g in generations)
    metrics = lines(out / "story_metrics.jsonl")
    assert len(metrics) == 6 and all(m["dialect_correct"] in (0, 1) and m["words"] >= 0 for m in metrics)
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "| variety | fluency | coherence | instruction_following | consistency | variety |" in report
    assert "![criterion_fluency](criterion_fluency.png)" in report and generations[0]["story"][:20] in report


def test_judgments_and_scores_follow_the_scripted_judge(evaluated):
    out, script = evaluated["out"], evaluated["script"]
    generations = {g["id"]: g for g in lines(out / "generations.jsonl")}
    judgments = lines(out / "judgments.jsonl")
    assert len(judgments) == 6
    expected = {}
    for j in judgments:
        g = generations[j["prompt_id"]]
        content = judge_messages(g["prompt"], g["story"], g["variety"])[0]["content"]
        expected[j["prompt_id"]] = scripted_scores(content)
        assert j["criteria"] == expected[j["prompt_id"]] and j["judge"] == "gpt-4-0125-preview"
        assert j["variety"] == g["variety"] and j["system"] == "direct-all" and len(j["raw"]) == j["attempts"]
        if script.malformed_first(content):   # unreadable first answer, kept, then re-asked
            assert j["attempts"] == 2 and j["raw"][0] == MALFORMED
    scores = json.loads((out / "scores.json").read_text())
    assert scores["system"] == "direct-all" and scores["n_prompts"] == 6
    assert scores["config"] == {"strategy": "direct", "dialect": "all", "model": "tiny", "filter_threshold": None,
                                "synthetic_size": 6, "translated_size": None}   # direct: no translated stage
    for variety in ("msa", "egy", "mor"):
        ids = [i for i, g in generations.items() if g["variety"] == variety]
        for criterion in CRITERIA:
            stat = scores["judge"][variety][criterion]
            values = [expected[i][criterion] for i in ids]
            assert stat["n"] == 2 and stat["mean"] == pytest.approx(sum(values) / 2)
            assert min(values) <= stat["ci_low"] <= stat["mean"] <= stat["ci_high"] <= max(values)
        assert scores["metrics"][variety]["dialect_correct"]["n"] == 2
        assert set(scores["corpus_metrics"][variety]) == {"distinct_1", "distinct_2", "self_bleu"}
        assert scores["perplexity"][variety] > 1


def test_perplexity_matches_the_runs_validation_perplexity(evaluated, trained_run):
    final = json.loads((trained_run / "metrics.json").read_text())["final"]
    scores = json.loads((evaluated["out"] / "scores.json").read_text())
    for variety, ppl in scores["perplexity"].items():
        assert ppl == pytest.approx(final[f"val/{variety}/ppl"], rel=1e-3)


def test_results_are_logged_into_the_training_runs_wandb_run_and_the_key_is_nowhere(evaluated, trained_run):
    run_id = (trained_run / "wandb_id.txt").read_text().strip()
    runs = sorted((trained_run / "wandb").glob(f"offline-run-*-{run_id}"))
    assert len(runs) == 2, runs   # training, then evaluation, under the same id
    log = next(runs[-1].glob("*.wandb")).read_bytes()
    assert b"eval/direct-all/judge/egy/fluency" in log and b"eval/direct-all/stories" in log
    for root in (evaluated["out"], trained_run):
        for path in root.rglob("*"):
            if path.is_file():
                assert SECRET.encode() not in path.read_bytes(), path


@pytest.fixture(scope="module")
def resumed(evaluated, trained_run, tmp_path_factory):
    """A copy of the evaluation killed after three stories (mid-row), its judgments lost, then rerun."""
    out = tmp_path_factory.mktemp("resumed") / "out"
    shutil.copytree(evaluated["out"], out)
    kept = (out / "generations.jsonl").read_text(encoding="utf-8").splitlines()[:3]
    (out / "generations.jsonl").write_text("\n".join(kept) + '\n{"id": "eval-mor-00', encoding="utf-8")
    (out / "judgments.jsonl").unlink()
    script = ScriptedJudge()
    with OpenAIServer(script) as server:
        proc = evaluate_cli([f"run={trained_run}", f"out={out}", f"judge.base_url={server.base_url}", *EVAL_ARGS,
                             "wandb.enabled=false"])
        assert proc.returncode == 0, proc.stderr[-3000:]
    return {"out": out, "kept": kept, "script": script}


def test_resumed_generation_and_the_judge_cache(evaluated, resumed):
    out, kept = resumed["out"], resumed["kept"]
    generations = lines(out / "generations.jsonl")
    assert generations[:3] == [json.loads(line) for line in kept], "the first three stories are kept unchanged"
    assert len(generations) == 6 and len({g["id"] for g in generations}) == 6
    scores = json.loads((out / "scores.json").read_text())
    assert scores["generation"]["already_done"] == 3 and scores["generation"]["generated"] == 3
    # The three kept stories were judged before: served from the cache, never sent again.
    kept_contents = {judge_messages(g["prompt"], g["story"], g["variety"])[0]["content"] for g in generations[:3]}
    assert kept_contents <= set(evaluated["script"].answered) and not kept_contents & set(resumed["script"].answered)
    assert scores["judging"]["cache_hits"] >= 3 and len(lines(out / "judgments.jsonl")) == 6


def test_compare_and_human_sheets_are_wired(evaluated, resumed, tmp_path):
    dirs = f"[{evaluated['out']},{resumed['out']}]"
    proc = evaluate_cli([f"compare={dirs}", f"out={tmp_path / 'cmp'}"], key=None)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "cmp" / "compare.csv").exists() and (tmp_path / "cmp" / "compare.md").exists()
    proc = evaluate_cli([f"human.export={dirs}", f"out={tmp_path / 'sheet'}"], key=None)
    assert proc.returncode == 0, proc.stderr[-2000:]
    key = json.loads((tmp_path / "sheet" / "key.json").read_text())
    judged = {(i, j["prompt_id"]): j["criteria"] for i, d in enumerate((evaluated["out"], resumed["out"]))
              for j in lines(d / "judgments.jsonl")}
    with open(tmp_path / "sheet" / "sheet.csv", encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:   # a rater who agrees with the judge on every item
        item = key["items"][row["item_id"]]
        row.update({c: str(judged[(item["eval_index"], item["prompt_id"])][c]) for c in CRITERIA}, rater="r1")
    with open(tmp_path / "filled.csv", "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    proc = evaluate_cli([f"human.import=[{tmp_path / 'filled.csv'}]", f"human.key={tmp_path / 'sheet' / 'key.json'}",
                         f"out={tmp_path / 'agree'}"], key=None)
    assert proc.returncode == 0, proc.stderr[-2000:]
    agreement = json.loads((tmp_path / "agree" / "agreement.json").read_text())
    assert agreement["n_items"] == 12 and agreement["criteria"]["fluency"]["spearman"] == pytest.approx(1.0)


def test_no_api_key_stops_before_generating(trained_run, tmp_path):
    proc = evaluate_cli([f"run={trained_run}", f"out={tmp_path / 'nokey'}", *EVAL_ARGS], key=None)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "config error: OPENAI_API_KEY: is not set: `export OPENAI_API_KEY=...`, or pick another judge: "
        "`judge=hf judge.model=<local model>` (or `judge=none`)"]
    assert not (tmp_path / "nokey" / "generations.jsonl").exists() and not (tmp_path / "nokey" / "prompts.jsonl").exists()


@pytest.mark.parametrize("args,message", [
    (["run=/no/such/run"], "config error: run: '/no/such/run' is not a training run dir (no config.yaml in it)"),
    (["system=gpt"], "config error: system: 'gpt' is not one of: hf, openai, run"),
    (["system=hf", "system.model=./missing-model", "judge=none"], "config error: system.model: './missing-model' is neither"),
])
def test_bad_configuration_is_one_line(args, message, tmp_path):
    proc = evaluate_cli([*args, f"out={tmp_path / 'bad'}"])
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and message in proc.stderr, proc.stderr

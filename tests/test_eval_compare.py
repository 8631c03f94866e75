"""compare_evaluations over synthetic eval dirs: table contents, plots only for what varies, paired comparisons by
prompt content and judge, provenance flags, unreadable answers, diversity at a fixed size."""

import csv
import json
import random
import re

import matplotlib.image as mpimg
import pytest

from arastory.errors import ConfigError, DataError
from arastory.evaluate.compare import compare_evaluations
from arastory.evaluate.prompts import prompt_key
from arastory.evaluate.stats import holm_adjust, paired_comparison, summarize
from arastory.io import atomic_write_json, atomic_write_jsonl
from tests.conftest import run_cli
from tests.markdown import table_rows

CRITERIA = ["fluency", "coherence", "instruction_following", "consistency", "variety"]
VARIETIES = ["egy", "msa"]
PROMPTS = [f"prompt-{v}-{i:06d}" for v in VARIETIES for i in range(12)]
JUDGE = {
    "backend": "openai",
    "endpoint": "https://api.openai.com/v1",
    "model": "test-judge",
    "rubric": "r1",
    "params": {"temperature": 0.0, "max_tokens": 300},
    "key": "judge-key-1",
}


def prompt_text(pid: str, seed_of_prompts: int = 0) -> str:
    """The prompt behind an id; another sampling seed gives other texts under the same ids."""
    return f"اكتب قصة رقم {pid.split('-')[-1]} من المجموعة {seed_of_prompts}"


def write_eval(
    path,
    system,
    config,
    quality,
    seed,
    prompts=PROMPTS,
    judge=JUDGE,
    prompt_seed=0,
    unreadable=0.0,
    val_fingerprint=None,
):
    """An eval dir as the pipeline writes it: generations, judgments (some unreadable) and a scores.json of them."""
    rng = random.Random(seed)
    generations, judgments = [], []
    for pid in prompts:
        variety = pid.split("-")[1]
        text = prompt_text(pid, prompt_seed)
        words = [f"w{rng.randrange(40)}" for _ in range(30)]
        generations.append(
            {
                "id": pid,
                "system": system,
                "variety": variety,
                "prompt": text,
                "features": {},
                "story": " ".join(words),
                "meta": {},
            }
        )
        criteria = {c: max(1, min(5, round(quality + rng.gauss(0, 0.8)))) for c in CRITERIA}
        if rng.random() < unreadable:
            criteria = None
        judgments.append(
            {
                "id": f"{system}/{pid}",
                "system": system,
                "prompt_id": pid,
                "variety": variety,
                "prompt_key": prompt_key(variety, text),
                "criteria": criteria,
                "raw": ["{}"],
                "judge": judge["model"],
                "judge_key": judge["key"],
                "attempts": 1,
            }
        )
    metric_rows = [{"variety": j["variety"], "dialect_correct": int(rng.random() < quality / 5)} for j in judgments]
    atomic_write_jsonl(path / "generations.jsonl", generations)
    atomic_write_jsonl(path / "judgments.jsonl", judgments)
    scored = [j for j in judgments if j["criteria"]]
    atomic_write_json(
        path / "scores.json",
        {
            "system": system,
            "run": None if config is None else f"outputs/train/{system}",
            "config": config,
            "n_prompts": len(prompts),
            "n_judged": len(scored),
            "judge_model": judge["model"],
            "sampling": {"temperature": 0.7, "top_p": 0.95, "max_new_tokens": 2048, "do_sample": True},
            "provenance": {
                "generation": {"prompts": {"hash": f"prompts-{prompt_seed}-{len(prompts)}"}},
                "judge": judge,
            },
            "val_fingerprint": val_fingerprint,
            # grouped under another key: "variety" is also a criterion and would overwrite the group
            "judge": summarize([{"group": j["variety"], **j["criteria"]} for j in scored], "group", CRITERIA),
            "metrics": summarize(metric_rows, "variety", ["dialect_correct"], rates=["dialect_correct"]),
            "corpus_metrics": {},
            "diversity": {"subsample": 50, "repeats": 200},
            "perplexity": None if config is None else dict.fromkeys(VARIETIES, 20.0 - quality),
            "bits_per_char": None if config is None else dict.fromkeys(VARIETIES, 2.0 - quality / 10),
        },
    )
    return judgments


def config(strategy, threshold, size=40):
    return {
        "strategy": strategy,
        "dialect": "all",
        "model": "tiny",
        "filter_threshold": threshold,
        "synthetic_size": size,
        "translated_size": 100,
    }


@pytest.fixture()
def sweep(tmp_path):
    """A multirun-like dir: three sequential runs at three filter thresholds and one direct run, same prompts."""
    root = tmp_path / "multirun" / "2026-11-27" / "12-00-00"
    runs = [("sequential", 0.85, 3.0), ("sequential", 0.92, 3.6), ("sequential", 0.95, 3.3), ("direct", 0.92, 2.8)]
    judged = {}
    for job, (strategy, threshold, quality) in enumerate(runs):
        judged[job] = write_eval(root / str(job), "run", config(strategy, threshold), quality, seed=job)
    return root, judged


def read_csv(path):
    with open(path, encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_sweep_table_plots_and_pairs(sweep, tmp_path):
    root, judged = sweep
    out = tmp_path / "cmp"
    result = compare_evaluations([str(root)], out, diversity_subsample=10)
    names = [e["name"] for e in result["evaluations"]]
    assert len(names) == 4 and len(set(names)) == 4 and "run [strategy=direct, filter_threshold=0.92]" in names
    assert result["warnings"] == []

    rows = read_csv(out / "compare.csv")
    # per eval and variety: 5 criteria + 1 metric + 3 diversity metrics + perplexity + bits/char
    assert len(rows) == result["rows"] == 4 * 2 * (5 + 1 + 3 + 1 + 1)
    scores = json.loads((root / "1" / "scores.json").read_text())
    cell = [
        r
        for r in rows
        if r["filter_threshold"] == "0.92"
        and r["strategy"] == "sequential"
        and r["variety"] == "egy"
        and r["kind"] == "judge"
        and r["name"] == "coherence"
    ]
    assert len(cell) == 1 and cell[0]["judge"] == "test-judge @ https://api.openai.com/v1" and cell[0]["rubric"] == "r1"
    expected = scores["judge"]["egy"]["coherence"]
    assert float(cell[0]["mean"]) == pytest.approx(expected["mean"])
    assert float(cell[0]["ci_low"]) == pytest.approx(expected["ci_low"])
    assert int(cell[0]["n"]) == 12
    diversity = [r for r in rows if r["kind"] == "corpus" and r["name"] == "self_bleu"]
    assert len(diversity) == 8 and all(
        r["n"] == "10" and float(r["ci_low"]) <= float(r["mean"]) <= float(r["ci_high"]) for r in diversity
    )

    # threshold and strategy vary; dataset sizes do not
    plots = sorted(p.split("/")[-1] for p in result["files"]["plots"])
    assert plots == ["direct_vs_sequential.png", "score_vs_filter_threshold.png"]
    for name in plots:
        image = mpimg.imread(out / name)
        assert image.shape[0] > 300 and image.shape[1] > 600 and image.std() > 0.01  # a drawn figure, not blank

    markdown = (out / "compare.md").read_text()
    assert "## Judge scores (1-5)" in markdown and "## Paired comparisons (identical prompts, same judge)" in markdown
    assert "![score_vs_filter_threshold](score_vs_filter_threshold.png)" in markdown
    assert [
        "test-judge @ https://api.openai.com/v1",
        "r1",
        "T=0.7, top_p=0.95, max 2048",
        "prompts-0-24",
        "24",
        "24",
    ] in [row[-6:] for row in table_rows(markdown)]

    # 6 pairs x (2 varieties + pooled) x 5 criteria, each equal to a direct paired comparison on identical prompts
    assert len(result["paired"]) == 6 * 3 * 5
    first = next(
        p
        for p in result["paired"]
        if p["variety"] == "msa" and p["criterion"] == "fluency" and p["a"] == names[0] and p["b"] == names[1]
    )
    a = {j["prompt_key"]: j["criteria"]["fluency"] for j in judged[0] if j["variety"] == "msa"}
    b = {j["prompt_key"]: j["criteria"]["fluency"] for j in judged[1] if j["variety"] == "msa"}
    assert first["n_pairs"] == 12 and {k: first[k] for k in paired_comparison(a, b)} == paired_comparison(a, b)
    assert [p["p_holm"] for p in result["paired"]] == holm_adjust([p["p_value"] for p in result["paired"]])
    assert all(p["p_holm"] >= p["p_value"] for p in result["paired"])
    assert len(read_csv(out / "paired.csv")) == len(result["paired"])


def test_size_sweep_plot_and_baselines_without_config(tmp_path):
    for size in (20, 40, 57):
        write_eval(tmp_path / "evals" / f"size{size}", f"direct-{size}", config("direct", None, size), 3.0, seed=size)
    write_eval(tmp_path / "evals" / "gpt35", "gpt-3.5-turbo", None, 3.9, seed=9)  # an API baseline: no train config
    result = compare_evaluations([str(tmp_path / "evals")], tmp_path / "cmp")
    assert [p.split("/")[-1] for p in result["files"]["plots"]] == ["score_vs_synthetic_size.png"]
    rows = read_csv(tmp_path / "cmp" / "compare.csv")
    baseline = [r for r in rows if r["system"] == "gpt-3.5-turbo"]
    assert baseline and all(r["strategy"] == "" for r in baseline)
    assert not any(r["kind"] == "perplexity" for r in baseline)


def test_same_ids_with_other_prompts_are_never_paired(tmp_path):
    """Two evals of one run with another prompt seed: ids match, texts do not. No paired comparison, and a note."""
    write_eval(tmp_path / "seed0", "direct-egy", config("direct", None), 3.0, seed=1, prompt_seed=0)
    write_eval(tmp_path / "seed1", "direct-egy", config("direct", None), 3.0, seed=2, prompt_seed=1)
    result = compare_evaluations([str(tmp_path / "seed0"), str(tmp_path / "seed1")], tmp_path / "cmp")
    assert result["paired"] == [] and not (tmp_path / "cmp" / "paired.csv").exists()
    assert any("share no prompts" in note for note in result["notes"])
    assert any(w.startswith("different prompt sets") for w in result["warnings"])
    markdown = (tmp_path / "cmp" / "compare.md").read_text()
    assert "Paired comparisons" not in markdown and "share no prompts" in markdown and "WARNING" in markdown


def test_pairs_only_the_shared_prompts_and_says_how_many(tmp_path):
    write_eval(tmp_path / "a", "sys-a", None, 3.0, seed=1, prompts=PROMPTS[:18])
    write_eval(tmp_path / "b", "sys-b", None, 3.0, seed=2, prompts=PROMPTS[6:])
    result = compare_evaluations([str(tmp_path / "a"), str(tmp_path / "b")], tmp_path / "cmp")
    pooled = next(p for p in result["paired"] if p["variety"] == "all" and p["criterion"] == "fluency")
    assert pooled["n_pairs"] == 12  # prompts 6..17 of 24


def test_different_judges_are_flagged_not_paired_and_refused_when_strict(tmp_path):
    other = {**JUDGE, "endpoint": "http://127.0.0.1:8000/v1", "key": "judge-key-2"}
    write_eval(tmp_path / "a", "sys-a", None, 3.0, seed=1)
    write_eval(tmp_path / "b", "sys-b", None, 3.0, seed=2, judge=other)
    result = compare_evaluations([str(tmp_path / "a"), str(tmp_path / "b")], tmp_path / "cmp")
    assert result["paired"] == [] and any("different judges" in note for note in result["notes"])
    assert result["warnings"] and result["warnings"][0].startswith("different judges")
    assert "http://127.0.0.1:8000/v1" in (tmp_path / "cmp" / "compare.md").read_text()
    with pytest.raises(ConfigError, match=re.escape("comparison.strict: refusing to compare: different judges")):
        compare_evaluations([str(tmp_path / "a"), str(tmp_path / "b")], tmp_path / "cmp2", strict=True)


def test_different_held_out_sets_are_flagged(tmp_path):
    write_eval(tmp_path / "a", "run-a", config("direct", None), 3.0, seed=1, val_fingerprint="v1")
    write_eval(tmp_path / "b", "run-b", config("sequential", None), 3.0, seed=2, val_fingerprint="v2")
    result = compare_evaluations([str(tmp_path / "a"), str(tmp_path / "b")], tmp_path / "cmp")
    assert any("val_fingerprint" in w and "run-a: v1" in w for w in result["warnings"])
    rows = read_csv(tmp_path / "cmp" / "compare.csv")
    assert {r["name"] for r in rows if r["kind"] == "perplexity"} == {"perplexity", "bits/char"}


def test_compare_over_evals_with_30_percent_unreadable_answers_exits_0_with_counts(tmp_path):
    judged = {}
    for name, seed in (("a", 1), ("b", 2)):
        judged[name] = write_eval(tmp_path / name, f"sys-{name}", None, 3.0, seed=seed, unreadable=0.3)
    proc = run_cli(["evaluate.py", f"compare=[{tmp_path / 'a'},{tmp_path / 'b'}]", f"out={tmp_path / 'cmp'}"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    for name in ("a", "b"):
        missing = sum(j["criteria"] is None for j in judged[name])
        assert 0.15 * 24 <= missing <= 0.45 * 24
        assert result["unreadable"][f"sys-{name}"] == dict.fromkeys(CRITERIA, missing)
    pooled = next(p for p in result["paired"] if p["variety"] == "all" and p["criterion"] == "coherence")
    both = {j["prompt_key"] for j in judged["a"] if j["criteria"]} & {
        j["prompt_key"] for j in judged["b"] if j["criteria"]
    }
    assert pooled["n_pairs"] == len(both)
    assert "## Unreadable judge answers" in (tmp_path / "cmp" / "compare.md").read_text()


def test_diversity_needs_enough_stories(tmp_path):
    write_eval(tmp_path / "a", "sys-a", None, 3.0, seed=1)
    result = compare_evaluations([str(tmp_path / "a")], tmp_path / "cmp", diversity_subsample=20)
    rows = [r for r in read_csv(tmp_path / "cmp" / "compare.csv") if r["kind"] == "corpus"]
    assert rows and all(r["mean"] == "" for r in rows)  # 12 stories per variety < 20
    assert any("fewer than 20 stories" in note for note in result["notes"])


def test_bad_inputs_are_one_line_errors(tmp_path):
    with pytest.raises(DataError, match="no such eval dir"):
        compare_evaluations([str(tmp_path / "missing")], tmp_path / "cmp")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=re.escape("no scores.json in it or below it")):
        compare_evaluations([str(tmp_path / "empty")], tmp_path / "cmp")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "scores.json").write_text('{"system": "x",\n "judge": }\n')
    with pytest.raises(DataError, match=r"broken/scores.json:2: invalid JSON"):
        compare_evaluations([str(tmp_path / "broken")], tmp_path / "cmp")
    (tmp_path / "broken" / "scores.json").write_text('{"system": "x", "judge": {"egy": {"fluency": 3}}}')
    with pytest.raises(DataError, match=r"judge.egy.fluency: expected"):
        compare_evaluations([str(tmp_path / "broken")], tmp_path / "cmp")


def test_judgments_left_by_an_earlier_run_do_not_count_for_an_eval_without_a_judge(tmp_path):
    write_eval(tmp_path / "a", "sys-a", None, 3.0, seed=1)
    write_eval(tmp_path / "b", "sys-b", None, 3.0, seed=2)
    scores = json.loads((tmp_path / "b" / "scores.json").read_text())
    scores.update(
        judge={}, judge_model=None, provenance={**scores["provenance"], "judge": None}
    )  # rerun with judge=none
    atomic_write_json(tmp_path / "b" / "scores.json", scores)
    result = compare_evaluations([str(tmp_path / "a"), str(tmp_path / "b")], tmp_path / "cmp")
    assert result["paired"] == [] and list(result["unreadable"]) == ["sys-a"]

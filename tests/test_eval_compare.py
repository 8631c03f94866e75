"""compare_evaluations over synthetic eval dirs: table contents, plots only for what varies, paired comparisons."""

import csv
import json
import random

import matplotlib.image as mpimg
import pytest

from arastory.errors import DataError
from arastory.evaluate.compare import compare_evaluations
from arastory.evaluate.stats import paired_comparison, summarize
from arastory.io import atomic_write_json, atomic_write_jsonl

CRITERIA = ["fluency", "coherence", "instruction_following", "consistency", "variety"]
VARIETIES = ["egy", "msa"]
PROMPTS = [f"prompt-{v}-{i:06d}" for v in VARIETIES for i in range(12)]


def write_eval(path, system, config, quality, seed, prompts=PROMPTS):
    """An eval dir as the pipeline writes it: judgments.jsonl and a scores.json summarizing them."""
    rng = random.Random(seed)
    judgments = []
    for pid in prompts:
        variety = pid.split("-")[1]
        criteria = {c: max(1, min(5, round(quality + rng.gauss(0, 0.8)))) for c in CRITERIA}
        judgments.append({"id": f"{system}:{pid}", "system": system, "prompt_id": pid, "variety": variety,
                          "criteria": criteria, "raw": ["{}"], "judge": "test-judge", "attempts": 1})
    metric_rows = [{"variety": j["variety"], "dialect_correct": int(rng.random() < quality / 5)} for j in judgments]
    atomic_write_jsonl(path / "judgments.jsonl", judgments)
    atomic_write_json(path / "scores.json", {
        "system": system, "run": None if config is None else f"outputs/train/{system}", "config": config,
        "n_prompts": len(prompts),
        # grouped under another key: "variety" is also a criterion and would overwrite the group
        "judge": summarize([{"group": j["variety"], **j["criteria"]} for j in judgments], "group", CRITERIA),
        "metrics": summarize(metric_rows, "variety", ["dialect_correct"]),
        "corpus_metrics": {v: {"distinct_1": 0.3, "distinct_2": 0.8, "self_bleu": 10.0 + quality} for v in VARIETIES},
        "perplexity": None if config is None else {v: 20.0 - quality for v in VARIETIES}})
    return judgments


def config(strategy, threshold, size=40):
    return {"strategy": strategy, "dialect": "all", "model": "tiny", "filter_threshold": threshold,
            "synthetic_size": size, "translated_size": 100}


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
    result = compare_evaluations([str(root)], out)
    names = [e["name"] for e in result["evaluations"]]
    assert len(names) == 4 and len(set(names)) == 4 and "run [strategy=direct, filter_threshold=0.92]" in names

    rows = read_csv(out / "compare.csv")
    # per eval and variety: 5 criteria + 1 metric + 3 corpus metrics + perplexity
    assert len(rows) == result["rows"] == 4 * 2 * (5 + 1 + 3 + 1)
    scores = json.loads((root / "1" / "scores.json").read_text())
    cell = [r for r in rows if r["filter_threshold"] == "0.92" and r["strategy"] == "sequential"
            and r["variety"] == "egy" and r["kind"] == "judge" and r["name"] == "coherence"]
    assert len(cell) == 1
    expected = scores["judge"]["egy"]["coherence"]
    assert float(cell[0]["mean"]) == pytest.approx(expected["mean"])
    assert float(cell[0]["ci_low"]) == pytest.approx(expected["ci_low"])
    assert int(cell[0]["n"]) == 12

    # threshold and strategy vary; dataset sizes do not
    plots = sorted(p.split("/")[-1] for p in result["files"]["plots"])
    assert plots == ["direct_vs_sequential.png", "score_vs_filter_threshold.png"]
    for name in plots:
        image = mpimg.imread(out / name)
        assert image.shape[0] > 300 and image.shape[1] > 600 and image.std() > 0.01   # a drawn figure, not blank

    markdown = (out / "compare.md").read_text()
    assert "## Judge scores (1-5)" in markdown and "## Paired comparisons (same prompts)" in markdown
    assert "![score_vs_filter_threshold](score_vs_filter_threshold.png)" in markdown

    # 6 pairs x (2 varieties + pooled) x 5 criteria, each equal to a direct paired comparison of the judgments
    assert len(result["paired"]) == 6 * 3 * 5
    first = [p for p in result["paired"] if p["variety"] == "msa" and p["criterion"] == "fluency"
             and p["a"] == names[0] and p["b"] == names[1]][0]
    a = {j["prompt_id"]: j["criteria"]["fluency"] for j in judged[0] if j["variety"] == "msa"}
    b = {j["prompt_id"]: j["criteria"]["fluency"] for j in judged[1] if j["variety"] == "msa"}
    assert {k: first[k] for k in paired_comparison(a, b)} == paired_comparison(a, b)
    assert len(read_csv(out / "paired.csv")) == len(result["paired"])


def test_size_sweep_plot_and_baselines_without_config(tmp_path):
    for size in (20, 40, 57):
        write_eval(tmp_path / "evals" / f"size{size}", f"direct-{size}", config("direct", None, size), 3.0, seed=size)
    write_eval(tmp_path / "evals" / "gpt35", "gpt-3.5-turbo", None, 3.9, seed=9)   # an API baseline: no train config
    result = compare_evaluations([str(tmp_path / "evals")], tmp_path / "cmp")
    assert [p.split("/")[-1] for p in result["files"]["plots"]] == ["score_vs_synthetic_size.png"]
    rows = read_csv(tmp_path / "cmp" / "compare.csv")
    baseline = [r for r in rows if r["system"] == "gpt-3.5-turbo"]
    assert baseline and all(r["strategy"] == "" for r in baseline)
    assert not any(r["kind"] == "perplexity" for r in baseline)


def test_no_shared_prompts_means_no_paired_table(tmp_path):
    write_eval(tmp_path / "a", "sys-a", None, 3.0, seed=1, prompts=PROMPTS[:5])
    write_eval(tmp_path / "b", "sys-b", None, 3.0, seed=2, prompts=PROMPTS[5:10])
    result = compare_evaluations([str(tmp_path / "a"), str(tmp_path / "b")], tmp_path / "cmp")
    assert result["paired"] == [] and result["files"]["plots"] == []
    assert "Paired comparisons" not in (tmp_path / "cmp" / "compare.md").read_text()


def test_bad_inputs_are_one_line_errors(tmp_path):
    with pytest.raises(DataError, match="no such eval dir"):
        compare_evaluations([str(tmp_path / "missing")], tmp_path / "cmp")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no scores.json in it or below it"):
        compare_evaluations([str(tmp_path / "empty")], tmp_path / "cmp")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "scores.json").write_text('{"system": "x",\n "judge": }\n')
    with pytest.raises(DataError, match=r"broken/scores.json:2: invalid JSON"):
        compare_evaluations([str(tmp_path / "broken")], tmp_path / "cmp")
    (tmp_path / "broken" / "scores.json").write_text('{"system": "x", "judge": {"egy": {"fluency": 3}}}')
    with pytest.raises(DataError, match=r"judge.egy.fluency: expected"):
        compare_evaluations([str(tmp_path / "broken")], tmp_path / "cmp")

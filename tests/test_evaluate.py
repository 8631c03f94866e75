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
from arastory.evaluate.prompts import prompt_key
from arastory.text import normalize_for_hash
from tests.conftest import FAST_TRAIN, REPO, run_cli
from tests.markdown import table_rows
from tests.openai_server import OpenAIServer, Reply
from tests.test_evaluate_judge import MALFORMED, ScriptedJudge, scripted_scores

SECRET = "test-key-DO-NOT-WRITE-0123456789"
EVAL_ARGS = ["n_per_variety=2", "sampling.max_new_tokens=12", "judge.timeout=10", "judge.concurrency=4"]


def evaluate_cli(args: list[str], key: str | None = SECRET) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"} | {"HYDRA_FULL_ERROR": "0"}
    if key:
        env["OPENAI_API_KEY"] = key
    return subprocess.run(
        [sys.executable, "evaluate.py", *args], cwd=REPO, capture_output=True, text=True, timeout=600, env=env
    )


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
    for name in (
        "prompts.jsonl",
        "generations.jsonl",
        "judgments.jsonl",
        "story_metrics.jsonl",
        "scores.json",
        "report.md",
        "criterion_fluency.png",
        "criterion_variety.png",
        "variety_egy.png",
        "variety_msa.png",
    ):
        assert (out / name).exists() and (out / name).stat().st_size > 0, name
    prompts = lines(out / "prompts.jsonl")
    assert [p["variety"] for p in prompts] == ["msa", "msa", "egy", "egy", "mor", "mor"]
    assert all(
        set(p) == {"id", "variety", "prompt", "features", "prompt_key"} and p["features"]["country"] for p in prompts
    )
    assert all(p["prompt_key"] == prompt_key(p["variety"], p["prompt"]) for p in prompts)
    # Fresh prompts: none occurs in the run's data (training or held-out).
    from arastory.data.bundled import load_bundled_stories

    seen = {normalize_for_hash(r.prompt) for r in load_bundled_stories()}
    assert not seen & {normalize_for_hash(p["prompt"]) for p in prompts}
    generations = lines(out / "generations.jsonl")
    assert sorted(g["id"] for g in generations) == sorted(p["id"] for p in prompts)
    assert all(
        g["system"] == "direct-all"
        and g["meta"]["sampling"]["max_new_tokens"] == 12
        and 0 < g["meta"]["new_tokens"] <= 12
        and g["meta"]["finish_reason"] in ("stop", "length")
        for g in generations
    )
    made_by = json.loads((out / "provenance.json").read_text())
    assert all(g["meta"]["gen_key"] == made_by["generation_key"] for g in generations)
    assert made_by["generation"]["system"]["kind"] == "run" and made_by["generation"]["sampling"]["temperature"] == 0.7
    assert (
        made_by["judge"]["endpoint"] == evaluated["server"].base_url
        and made_by["judge"]["model"] == "gpt-4-0125-preview"
    )
    metrics = lines(out / "story_metrics.jsonl")
    assert len(metrics) == 6 and all(m["dialect_correct"] in (0, 1) and m["words"] >= 0 for m in metrics)
    report = (out / "report.md").read_text(encoding="utf-8")
    assert ["variety", "fluency", "coherence", "instruction_following", "consistency", "variety"] in table_rows(report)
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
        if script.malformed_first(content):  # unreadable first answer, kept, then re-asked
            assert j["attempts"] == 2 and j["raw"][0] == MALFORMED
    scores = json.loads((out / "scores.json").read_text())
    assert scores["system"] == "direct-all" and scores["n_prompts"] == 6
    assert scores["config"] == {
        "strategy": "direct",
        "dialect": "all",
        "model": "tiny",
        "filter_threshold": None,
        "synthetic_size": 6,
        "translated_size": None,
    }  # direct: no translated stage
    truncated = sum(g["meta"]["finish_reason"] == "length" for g in generations.values())
    assert sum(scores["generation"]["truncated"].values()) == truncated and truncated > 0  # 12 new tokens cut most
    assert (
        scores["judge_model"] == "gpt-4-0125-preview" and scores["judge_cost_usd"] is None
    )  # a local server: no price
    for variety in ("msa", "egy", "mor"):
        ids = [i for i, g in generations.items() if g["variety"] == variety]
        for criterion in CRITERIA:
            stat = scores["judge"][variety][criterion]
            values = [expected[i][criterion] for i in ids]
            assert stat["n"] == 2 and stat["mean"] == pytest.approx(sum(values) / 2)
            assert stat["ci_low"] is None and stat["ci_high"] is None  # 2 stories: too few for a CI
        assert scores["metrics"][variety]["dialect_correct"]["n"] == 2
        assert scores["metrics"][variety]["dialect_correct"]["ci_high"] is not None  # a rate: Wilson interval
        diversity = scores["corpus_metrics"][variety]
        assert set(diversity) == {"distinct_1", "distinct_2", "self_bleu"}
        assert diversity["self_bleu"] == {"mean": None, "ci_low": None, "ci_high": None, "n": 50, "of": 2}
        assert scores["perplexity"][variety] > 1
        assert 0 < scores["bits_per_char"][variety] < scores["bits_per_word"][variety]


def test_perplexity_matches_the_runs_validation_perplexity(evaluated, trained_run):
    final = json.loads((trained_run / "metrics.json").read_text())["final"]
    scores = json.loads((evaluated["out"] / "scores.json").read_text())
    for variety, ppl in scores["perplexity"].items():
        assert ppl == pytest.approx(final[f"val/{variety}/ppl"], rel=1e-3)


def test_results_are_logged_into_the_training_runs_wandb_run_and_the_key_is_nowhere(evaluated, trained_run):
    run_id = (trained_run / "wandb_id.txt").read_text().strip()
    runs = sorted((trained_run / "wandb").glob(f"offline-run-*-{run_id}"))
    assert len(runs) == 2, runs  # training, then evaluation, under the same id
    log = next(runs[-1].glob("*.wandb")).read_bytes()
    assert b"eval/direct-all/judge/egy/fluency" in log and b"eval/direct-all/stories" in log
    for root in (evaluated["out"], trained_run):
        for path in root.rglob("*"):
            if path.is_file():
                assert SECRET.encode() not in path.read_bytes(), path


def server_port(evaluated) -> int:
    """The port of the first evaluation's judge server, to serve a later run from the same endpoint."""
    return int(evaluated["server"].base_url.split(":")[-1].split("/")[0])


@pytest.fixture(scope="module")
def resumed(evaluated, trained_run, tmp_path_factory):
    """A copy of the evaluation killed after three stories (mid-row), its judgments lost, then rerun."""
    out = tmp_path_factory.mktemp("resumed") / "out"
    shutil.copytree(evaluated["out"], out)
    kept = (out / "generations.jsonl").read_text(encoding="utf-8").splitlines()[:3]
    (out / "generations.jsonl").write_text("\n".join(kept) + '\n{"id": "eval-mor-00', encoding="utf-8")
    (out / "judgments.jsonl").unlink()
    script = ScriptedJudge()
    with OpenAIServer(script, port=server_port(evaluated)) as server:  # the same endpoint: the judge cache applies
        proc = evaluate_cli(
            [f"run={trained_run}", f"out={out}", f"judge.base_url={server.base_url}", *EVAL_ARGS, "wandb.enabled=false"]
        )
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
    proc = evaluate_cli(["mode=compare", f"compare={dirs}", f"out={tmp_path / 'cmp'}"], key=None)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "cmp" / "compare.csv").exists() and (tmp_path / "cmp" / "compare.md").exists()
    proc = evaluate_cli([f"human.export={dirs}", f"out={tmp_path / 'sheet'}"], key=None)
    assert proc.returncode == 0, proc.stderr[-2000:]
    key = json.loads((tmp_path / "sheet" / "key.json").read_text())
    judged = {
        (i, j["prompt_id"]): j["criteria"]
        for i, d in enumerate((evaluated["out"], resumed["out"]))
        for j in lines(d / "judgments.jsonl")
    }
    assert sorted(p.name for p in (tmp_path / "sheet").glob("sheet-*.csv")) == [
        "sheet-1.csv",
        "sheet-2.csv",
        "sheet-3.csv",
    ]
    with open(tmp_path / "sheet" / "sheet-2.csv", encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:  # a rater who agrees with the judge on every item
        item = key["items"][row["item_id"]]
        row.update({c: str(judged[(item["eval_index"], item["prompt_id"])][c]) for c in CRITERIA}, rater="r1")
    with open(tmp_path / "filled.csv", "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    proc = evaluate_cli(
        [
            f"human.import=[{tmp_path / 'filled.csv'}]",
            f"human.key={tmp_path / 'sheet' / 'key.json'}",
            f"out={tmp_path / 'agree'}",
        ],
        key=None,
    )  # the old name of human.ratings
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "note: human.import= is now human.ratings= (the old name still works)" in proc.stderr
    agreement = json.loads((tmp_path / "agree" / "agreement.json").read_text())
    assert agreement["n_items"] == 12 and agreement["criteria"]["fluency"]["spearman"] == pytest.approx(1.0)


def test_the_mode_is_named_or_follows_the_one_input_given():
    from omegaconf import OmegaConf

    from arastory.commands.evaluate import evaluation_mode
    from arastory.errors import ConfigError

    def mode(**settings):
        return evaluation_mode(
            OmegaConf.create({"mode": None, "compare": None, "human": {"export": None, "ratings": None}} | settings)
        )

    assert mode() == "score" and mode(compare=["a"]) == "compare" and mode(mode="compare", compare=["a"]) == "compare"
    assert mode(human={"export": ["a"], "ratings": None}) == "human_export"
    for settings, message in (
        ({"mode": "compare"}, "config error: compare: is required with mode=compare"),
        ({"mode": "judge"}, "config error: mode: 'judge' is not one of: score, compare, human_export, human_import"),
        (
            {"compare": ["a"], "human": {"export": ["b"], "ratings": None}},
            "config error: mode: compare and human.export are set together: evaluate runs one mode at "
            "a time (mode=compare, ...)",
        ),
    ):
        with pytest.raises(ConfigError) as error:
            mode(**settings)
        assert str(error.value) == message


def test_no_api_key_stops_before_generating(trained_run, tmp_path):
    proc = evaluate_cli([f"run={trained_run}", f"out={tmp_path / 'nokey'}", *EVAL_ARGS], key=None)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "config error: OPENAI_API_KEY: is not set: `export OPENAI_API_KEY=...`, or pick another judge: "
        "`judge=hf judge.model=<local model>` (or `judge=none`)"
    ]
    assert (
        not (tmp_path / "nokey" / "generations.jsonl").exists() and not (tmp_path / "nokey" / "prompts.jsonl").exists()
    )


@pytest.mark.parametrize(
    "args,message",
    [
        (["run=/no/such/run"], "config error: run: '/no/such/run' is not a training run dir (no config.yaml in it)"),
        (["system=gpt"], "config error: system: 'gpt' is not one of: file, hf, openai, run"),
        (
            ["system=hf", "system.model=./missing-model", "judge=none"],
            "config error: system.model: './missing-model' is neither",
        ),
    ],
)
def test_bad_configuration_is_one_line(args, message, tmp_path):
    proc = evaluate_cli([*args, f"out={tmp_path / 'bad'}"])
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and message in proc.stderr, proc.stderr


# ---- issue 10: provenance, content pairing, system=file, failures that tell the truth ------------------------------


def final_line(proc) -> str:
    """The one-line error: the last line of stderr (progress bars may come before it)."""
    return proc.stderr.strip().splitlines()[-1]


def judge_port_args(server) -> list[str]:
    return [f"judge.base_url={server.base_url}", "judge.timeout=10", "judge.concurrency=4"]


def test_two_seeds_are_never_paired(evaluated, trained_run, tmp_path):
    """A second eval of the run with seed=1: same prompt ids, other prompts. Compare pairs nothing and says why."""
    with OpenAIServer(ScriptedJudge(), port=server_port(evaluated)) as server:  # the same judge endpoint
        proc = evaluate_cli(
            [
                f"run={trained_run}",
                f"out={tmp_path / 'seed1'}",
                *EVAL_ARGS,
                "seed=1",
                "wandb.enabled=false",
                "perplexity.enabled=false",
                *judge_port_args(server),
            ]
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
    first, second = lines(evaluated["out"] / "prompts.jsonl"), lines(tmp_path / "seed1" / "prompts.jsonl")
    assert [p["id"] for p in first] == [p["id"] for p in second]
    assert not {p["prompt_key"] for p in first} & {p["prompt_key"] for p in second}
    proc = evaluate_cli([f"compare=[{evaluated['out']},{tmp_path / 'seed1'}]", f"out={tmp_path / 'cmp'}"], key=None)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert result["paired"] == [] and any("share no prompts" in n for n in result["notes"])
    assert [w.split(":")[0] for w in result["warnings"]] == ["different prompt sets"]
    assert "Paired comparisons" not in (tmp_path / "cmp" / "compare.md").read_text()


@pytest.fixture()
def copy_of_eval(evaluated, tmp_path):
    out = tmp_path / "rerun"
    shutil.copytree(evaluated["out"], out)
    return out


def test_rerun_with_another_judge_model_asks_the_new_judge(copy_of_eval, trained_run):
    before = (copy_of_eval / "generations.jsonl").read_text()
    with OpenAIServer(ScriptedJudge()) as server:
        proc = evaluate_cli(
            [
                f"run={trained_run}",
                f"out={copy_of_eval}",
                *EVAL_ARGS,
                "judge.model=gpt-4o",
                "wandb.enabled=false",
                "perplexity.enabled=false",
                *judge_port_args(server),
            ]
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        asked = {r["model"] for r in server.requests}
    assert asked == {"gpt-4o"} and len(server.requests) >= 6 + 2  # every story judged anew (+ a 429 and a 503)
    assert (copy_of_eval / "generations.jsonl").read_text() == before  # the stories are kept as they were
    judgments = lines(copy_of_eval / "judgments.jsonl")
    assert len(judgments) == 6 and {j["judge"] for j in judgments} == {"gpt-4o"}
    archived = list(copy_of_eval.glob("judgments.*.jsonl"))
    assert len(archived) == 1 and {j["judge"] for j in lines(archived[0])} == {"gpt-4-0125-preview"}
    scores = json.loads((copy_of_eval / "scores.json").read_text())
    assert scores["judge_model"] == "gpt-4o" and scores["provenance"]["judge"]["model"] == "gpt-4o"
    assert scores["generation"]["already_done"] == 6 and scores["sampling"]["temperature"] == 0.7


@pytest.mark.parametrize(
    "change,message",
    [
        ("sampling.temperature=1.3", "sampling.temperature: 0.7 → 1.3"),
        ("seed=1", "was evaluated on another prompt set"),
    ],
)
def test_rerun_that_would_change_the_stories_stops_with_one_line(copy_of_eval, trained_run, change, message):
    def outputs():  # the eval's results; the lock file and the appended job log record every attempt by design
        return {
            p.name: p.read_bytes()
            for p in copy_of_eval.iterdir()
            if p.is_file() and p.name != ".arastory.lock" and p.suffix != ".log"
        }

    before = outputs()
    no_judge = [a for a in EVAL_ARGS if not a.startswith("judge.")] + ["judge=none"]
    proc = evaluate_cli([f"run={trained_run}", f"out={copy_of_eval}", *no_judge, change])
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr[-2000:]
    assert proc.stderr.startswith(f"config error: out: '{copy_of_eval}'") and message in proc.stderr, proc.stderr
    assert outputs() == before


RELEASED_WORDING = {  # the released prompts' sentence shapes (see arastory/evaluate/files.py)
    "egy": (
        "أكتب حكاية قصيرة تكون مفهومة للأطفال في عمر {age}. نهاية الحكاية المفروض تكون {ending}. {dialogue}"
        "عدد الشخصيات في الحكاية المفروض يكون {n}.  البلد اللي بتحصل فيها الأحداث هي {country}. "
        "الحكاية لازم تكون باللهجة المصرية. اكتب الحكاية مباشرة.",
        "لازم يكون في حوار. ",
    ),
    "mor": (
        "كتب شي قصة قصيرة باش يفهموها الدراري في عمر {age}. النهاية ديال القصة خاصها تكون {ending}. {dialogue}"
        "عدد الأشخاص في القصة لازم يكون {n}. بلاد الأحداث هي {country}. القصة خاصها تكون بالدارجة المغربية. "
        "اكتب القصة مباشرة.",
        "لازم يكون شي حوار. ",
    ),
}


def released_format_csvs(folder: Path) -> dict:
    """Bundled stories (not the released ones) written as the study's released CSVs: index, Prompt, Story."""
    from arastory.data.bundled import load_bundled_stories
    from arastory.prompts.varieties import load_variety

    countries = load_variety("msa").values["country"]
    folder.mkdir(parents=True)
    expected = {}
    for variety, name in (("egy", "Egyptian"), ("mor", "Moroccan")):
        template, dialogue = RELEASED_WORDING[variety]
        rows = []
        for index, record in enumerate(r for r in load_bundled_stories() if r.variety == variety):
            f = record.features
            prompt = template.format(
                age=f["age"],
                ending="سعيدة" if f["ending"] == "happy" else "حزينة",
                dialogue=dialogue if f.get("dialogue") else "",
                n=f["n_characters"],
                country=countries[f["country"]],
            )
            rows.append({"": str(index), "Prompt": prompt, "Story": record.story})
            expected[f"released-{variety}-{index}"] = {
                k: f[k] for k in ("age", "ending", "n_characters", "country", "dialogue") if k in f
            }
        with open(
            folder / f"Formatted-{name}-prompts-stories-for-fine-tuning.csv", "w", encoding="utf-8", newline=""
        ) as h:
            writer = csv.DictWriter(h, fieldnames=["", "Prompt", "Story"])
            writer.writeheader()
            writer.writerows(rows)
    return expected


def test_system_file_scores_released_format_csvs(tmp_path):
    expected = released_format_csvs(tmp_path / "csvs")
    out = tmp_path / "eval"
    with OpenAIServer(ScriptedJudge()) as server:
        proc = evaluate_cli(
            [
                "system=file",
                f"system.path={tmp_path / 'csvs'}",
                "system.n_per_variety=12",
                f"out={out}",
                "wandb.enabled=false",
                *judge_port_args(server),
            ]
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
    generations = lines(out / "generations.jsonl")
    assert len(generations) == 24 and all(g["system"] == "csvs" for g in generations)
    for g in generations:
        assert g["features"] == expected[g["id"]], g["id"]  # read back from the released wording
    scores = json.loads((out / "scores.json").read_text())
    assert scores["sampling"] is None and scores["config"] is None and scores["run"] is None
    assert scores["provenance"]["generation"]["system"]["kind"] == "file"
    for variety in ("egy", "mor"):
        n = sum(g["variety"] == variety for g in generations)
        assert (
            scores["judge"][variety]["fluency"]["n"] == n and scores["judge"][variety]["fluency"]["ci_low"] is not None
        )
        fidelity = scores["metrics"][variety]["dialect_correct"]
        assert fidelity["n"] == n and 0 <= fidelity["ci_low"] <= fidelity["mean"] <= fidelity["ci_high"] <= 1
        assert scores["metrics"][variety]["country_named"]["n"] == n  # the parsed country is checked in every story
    assert "msa" not in scores["judge"]


def test_judge_timeouts_exit_non_zero_and_the_report_says_so(tmp_path):
    released_format_csvs(tmp_path / "csvs")
    out = tmp_path / "eval"
    with OpenAIServer(lambda n, body: Reply(text="{}", delay=1.0)) as server:
        proc = evaluate_cli(
            [
                "system=file",
                f"system.path={tmp_path / 'csvs'}",
                "system.n_per_variety=4",
                f"out={out}",
                "wandb.enabled=false",
                f"judge.base_url={server.base_url}",
                "judge.timeout=0.2",
                "judge.max_retries=0",
                "judge.concurrency=8",
            ]
        )
    last = final_line(proc)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert (
        last.startswith("judging incomplete: 0 of 8 stories judged (0 unreadable, 8 failed, e.g. ")
        and "over failure_budget=0.5" in last
    ), last
    report = (out / "report.md").read_text()
    assert "Judged: 0 of 8 stories; unreadable judge answers: 0; failed requests: 8" in report
    assert json.loads((out / "scores.json").read_text())["judging"]["failed"] == 8


def test_a_refused_key_stops_generation_at_once(tmp_path):
    with OpenAIServer(lambda n, body: Reply(status=401)) as server:
        proc = evaluate_cli(
            [
                "system=openai",
                f"system.base_url={server.base_url}",
                "system.concurrency=2",
                "judge=none",
                "n_per_variety=10",
                "wandb.enabled=false",
                f"out={tmp_path / 'eval'}",
            ]
        )
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
        assert "authentication failed (401); check the API key" in final_line(proc)
        assert len(server.requests) <= 2  # not 30 prompts x retries


def test_unknown_variety_in_prompts_is_one_line(tmp_path):
    (tmp_path / "p.jsonl").write_text(
        '{"id": "a", "variety": "egy", "prompt": "x"}\n{"id": "b", "variety": "klingon", "prompt": "y"}\n'
    )
    proc = evaluate_cli([f"prompts={tmp_path / 'p.jsonl'}", "system=openai", "judge=none", f"out={tmp_path / 'e'}"])
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        f"data error: {tmp_path / 'p.jsonl'}:2: variety 'klingon' is not one of: msa, egy, mor"
    ]


def test_over_long_prompts_are_skipped_and_counted_not_sent(tmp_path):
    from tests.test_evaluate_judge import tiny_model_path

    rows = [
        {"id": "ok-1", "variety": "egy", "prompt": "اكتب حكاية قصيرة."},
        {"id": "ok-2", "variety": "mor", "prompt": "كتب شي قصة قصيرة."},
        {"id": "huge", "variety": "msa", "prompt": "اكتب " * 20_000},
    ]  # 100k characters
    (tmp_path / "p.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    proc = evaluate_cli(
        [
            f"prompts={tmp_path / 'p.jsonl'}",
            "system=hf",
            f"system.model={tiny_model_path()}",
            "system.dtype=float32",
            "judge=none",
            "sampling.max_new_tokens=4",
            "wandb.enabled=false",
            f"out={tmp_path / 'e'}",
        ]
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    scores = json.loads((tmp_path / "e" / "scores.json").read_text())
    assert scores["generation"]["skipped_long"] == 1 and scores["n_generations"] == 2
    assert {g["id"] for g in lines(tmp_path / "e" / "generations.jsonl")} == {"ok-1", "ok-2"}
    assert "1 prompts skipped as too long" in (tmp_path / "e" / "report.md").read_text()


def test_a_baseline_never_takes_the_runs_labels_and_api_truncation_is_counted(trained_run, tmp_path):
    """run=<run> system=openai: the run only supplies prompts to avoid; the baseline is not "direct-all"."""
    story = "كان يا ما كان ولد صغير."
    with OpenAIServer(lambda n, body: Reply(text=story, finish_reason="length" if n % 2 else "stop")) as server:
        proc = evaluate_cli(
            [
                f"run={trained_run}",
                "system=openai",
                f"system.base_url={server.base_url}",
                "system.model=gpt-3.5-turbo",
                "judge=none",
                "n_per_variety=2",
                "wandb.enabled=false",
                f"out={tmp_path / 'gpt35'}",
            ]
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert all(r["max_tokens"] == 2048 for r in server.requests)  # the default fits the released stories
    scores = json.loads((tmp_path / "gpt35" / "scores.json").read_text())
    assert scores["system"] == "gpt-3.5-turbo" and scores["config"] is None and scores["run"] is None
    assert scores["reference_run"] == str(trained_run)
    generations = lines(tmp_path / "gpt35" / "generations.jsonl")
    cut = sum(g["meta"]["finish_reason"] == "length" for g in generations)
    assert cut == 3 and sum(scores["generation"]["truncated"].values()) == 3
    assert scores["generation"]["finish_reasons"] == {"stop": 3, "length": 3}


def test_bits_per_character_and_word_follow_their_definition():
    """bits/char = total story NLL (nats, EOS included) / ln 2 / characters; checked against a direct forward pass."""
    import math

    import torch

    from arastory.data.bundled import load_bundled_stories
    from arastory.evaluate.systems import HFSystem
    from tests.test_evaluate_judge import tiny_model_path

    records = [r for r in load_bundled_stories() if r.variety == "egy"][:3]
    spec = HFSystem(model=tiny_model_path(), dtype="float32", max_length=2048)
    spec.check()
    generator = spec.open()
    result = generator.perplexity(records)
    nats, tokens = 0.0, 0
    for record in records:
        example = generator.formatter.encode(record.prompt, record.story)
        ids = torch.tensor([example["input_ids"]])
        labels = torch.tensor([example["labels"]])
        with torch.no_grad():
            logits = generator.model(input_ids=ids).logits[:, :-1]
        nats += float(
            torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.size(-1)), labels[:, 1:].reshape(-1), ignore_index=-100, reduction="sum"
            )
        )
        tokens += int((labels[:, 1:] != -100).sum())
    chars, words = sum(len(r.story) for r in records), sum(len(r.story.split()) for r in records)
    assert result["perplexity"] == pytest.approx(math.exp(nats / tokens), rel=1e-3)
    assert result["bits_per_char"] == pytest.approx(nats / math.log(2) / chars, rel=1e-3)
    assert result["bits_per_word"] == pytest.approx(nats / math.log(2) / words, rel=1e-3)


def test_released_prompt_features_are_read_back(released_dir):
    """On the study's own CSVs: the always-present features of nearly every prompt, and place/season when asked."""
    from arastory.data.readers import read_stories
    from arastory.evaluate.files import released_feature_values

    records = read_stories(released_dir)
    parsed = [released_feature_values(r.prompt, r.variety) for r in records]
    for feature in ("age", "ending", "n_characters", "country"):
        assert sum(feature in p for p in parsed) / len(parsed) > 0.99, feature
    from arastory.prompts.released import RELEASED_CUES

    for feature in ("place", "season"):
        asked = [p for r, p in zip(records, parsed, strict=False) if RELEASED_CUES[r.variety][feature] in r.prompt]
        assert len(asked) > 1000 and sum(feature in p for p in asked) / len(asked) > 0.99, feature
    assert {p.get("dialogue") for p in parsed} == {True, None}

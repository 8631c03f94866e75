"""SIGKILL every stage at more than one moment, rerun: 0 rows lost, 0 duplicate rows, at most the in-flight batch
paid twice, a second writer on the same out dir refused with one line, and no file written holds the API key.

Every run here gets a canary as its API keys (OPENAI_API_KEY, GOOGLE_API_KEY, WANDB_API_KEY, HF_TOKEN); each test
sweeps every file its runs wrote, and their output, for it. The key passed as an override is refused up front.
"""

import json
import os
import signal
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest

from arastory.io import read_jsonl
from tests.conftest import FAST_TRAIN, REPO, wait_until
from tests.openai_server import OpenAIServer, Reply

CANARY = "test-canary-" + "5d41402abc4b2a76b9719d911017c592"
KEY_ENV = {
    "OPENAI_API_KEY": CANARY,
    "GOOGLE_API_KEY": CANARY,
    "WANDB_API_KEY": CANARY,
    "HF_TOKEN": CANARY,
    "HYDRA_FULL_ERROR": "0",
    "WANDB_MODE": "offline",
}


def start(args: list[str], cwd: Path = REPO, **env) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, *args],
        cwd=cwd,
        env={**os.environ, **KEY_ENV, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def finish(args: list[str], cwd: Path = REPO, timeout: int = 600, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env={**os.environ, **KEY_ENV, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def kill_when(proc: subprocess.Popen, ready) -> str:
    """SIGKILL the whole process group once `ready()` holds; returns what the run printed."""
    try:
        wait_until(ready, proc, "the kill point")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    return proc.stdout.read() + proc.stderr.read()


def count_lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def assert_no_canary(*roots: Path, printed: str = "") -> None:
    assert CANARY not in printed
    files = [p for root in roots for p in Path(root).rglob("*") if p.is_file()]
    assert files, "nothing was written"
    for path in files:
        assert CANARY.encode() not in path.read_bytes(), f"the API key reached {path}"


def assert_each_once(rows: list[dict], expected_ids: list, key: str = "id") -> None:
    ids = [r[key] for r in rows]
    assert sorted(ids) == sorted(expected_ids), "a row was lost"
    assert len(ids) == len(set(ids)), f"duplicate rows: {[i for i, n in Counter(ids).items() if n > 1]}"


@pytest.mark.parametrize(
    "command,override",
    [
        ("-m arastory.translate", "+translator.api_key"),
        ("-m arastory.filter", "wandb.api_key"),
        ("-m arastory.synthesize", "+generator.api_key"),
        ("train.py", "name"),
        ("evaluate.py", "judge.model"),
    ],
)
def test_a_key_passed_as_an_override_is_refused_without_echoing_it(tmp_path, command, override):
    entry = command.split() if command.startswith("-m") else [str(REPO / command)]
    proc = finish([*entry, f"{override}={CANARY}", f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert proc.stderr.startswith(f"config error: {override.lstrip('+')}: ") and CANARY not in proc.stdout + proc.stderr
    assert not any(p.is_file() for p in tmp_path.rglob("*")), "nothing may be written"


# --- translate ------------------------------------------------------------------------------------------------
def test_translate_killed_twice_loses_nothing_and_pays_at_most_the_batch_in_flight(tmp_path):
    texts = [f"Story number {i} about a cat." for i in range(30)]
    source = tmp_path / "en.jsonl"
    source.write_text("".join(json.dumps({"id": f"s{i:02d}", "story": t}) + "\n" for i, t in enumerate(texts)))
    answered, lock = Counter(), threading.Lock()

    def respond(n, body):
        text = body["messages"][-1]["content"]
        with lock:
            answered[text] += 1
        return Reply("ترجمة " + text.split()[2], delay=0.05)

    out = tmp_path / "out"
    with OpenAIServer(respond) as server:
        args = [
            "-m",
            "arastory.translate",
            f"source={source}",
            f"out={out}",
            "translator=openai",
            f"translator.base_url={server.base_url}",
            "translator.concurrency=1",
            "batch_size=3",
        ]
        printed = ""
        for rows_before_kill in (3, 15):  # after the first batch, then mid-run
            proc = start(args)
            printed += kill_when(proc, lambda n=rows_before_kill: count_lines(out / "parallel.jsonl") >= n)
            done_at_kill = {r["id"] for r in read_jsonl(out / "parallel.jsonl")}
            assert rows_before_kill <= len(done_at_kill) < 30
        todo = next(f"s{i:02d}" for i in range(30) if f"s{i:02d}" not in done_at_kill)
        half_row = f'{{"id": "{todo}", "ar_story": "'.encode() + "ترجمة".encode()[:5]  # cut inside a character
        with open(out / "parallel.jsonl", "ab") as handle:  # what a kill in the middle of a write leaves
            handle.write(half_row)
        final = finish(args)
    assert final.returncode == 0, final.stderr[-3000:]
    rows = read_jsonl(out / "parallel.jsonl")
    assert_each_once(rows, [f"s{i:02d}" for i in range(30)])
    assert json.loads((out / "report.json").read_text())["trimmed_partial_row_bytes"] == len(half_row)
    assert all(r["ar_story"] == "ترجمة " + r["en_story"].split()[2] for r in rows)
    paid_twice = [t for t, n in answered.items() if n > 1]
    assert max(answered.values()) <= 2 and len(paid_twice) <= 2 * 3, "more than one batch per kill was paid again"
    log = (out / "translate.log").read_text()  # D16: no line per HTTP request (in the log or on the terminal)
    assert "HTTP Request" not in log + final.stdout + final.stderr and "translated" in final.stdout
    assert_no_canary(out, printed=printed + final.stdout + final.stderr)


# --- filter ---------------------------------------------------------------------------------------------------
def test_filter_killed_in_its_first_pass_resumes_to_the_same_outputs(tmp_path, monkeypatch):
    from arastory.data.bundled import PARALLEL_FILE
    from arastory.filter.encoders import LexiconEncoder
    from arastory.filter.pipeline import Filter, FilterSettings

    rows = read_jsonl(PARALLEL_FILE)
    data = tmp_path / "pairs.jsonl"
    data.write_text(
        "".join(json.dumps(dict(r, id=f"{r['id']}-{k}"), ensure_ascii=False) + "\n" for k in range(20) for r in rows),
        encoding="utf-8",
    )
    monkeypatch.setenv("ARASTORY_CACHE", str(tmp_path / "cache-reference"))
    Filter(
        data, tmp_path / "reference", LexiconEncoder(), FilterSettings(plots=False, progress=False, chunk_size=256)
    ).run()
    cache = tmp_path / "cache-killed"
    out = tmp_path / "out"
    args = [
        "-m",
        "arastory.filter",
        f"input={data}",
        f"out={out}",
        "encoder=lexicon",
        "wandb.mode=offline",
        "filter.chunk_size=256",
        "filter.plots=false",
        "filter.progress=false",
    ]

    def filled(rows_done):
        def ready():
            states = list((cache / "filter").glob("*/state.json"))
            return any(json.loads(s.read_text() or "{}").get("done", 0) >= rows_done for s in states)

        return ready

    printed = ""
    for rows_done in (256, 1280):
        printed += kill_when(start(args, ARASTORY_CACHE=str(cache)), filled(rows_done))
        assert not (out / "report.json").exists() and not (out / "kept.jsonl").exists()
    final = finish(args, ARASTORY_CACHE=str(cache))
    assert final.returncode == 0, final.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["cache"]["checks"].startswith("resumed at ") and report["counts"]["read"] == len(rows) * 20
    for name in ("kept.jsonl", "rejected.jsonl"):
        assert read_jsonl(out / name) == read_jsonl(tmp_path / "reference" / name), name
    ids = [r["id"] for name in ("kept.jsonl", "rejected.jsonl") for r in read_jsonl(out / name)]
    assert_each_once([{"id": i} for i in ids], [f"{r['id']}-{k}" for k in range(20) for r in rows])
    assert_no_canary(out, printed=printed + final.stdout + final.stderr)


def test_filter_outputs_are_never_half_written(tmp_path, monkeypatch):
    """A failure while pass 3 writes leaves the previous kept/rejected files whole and no temporary file behind."""
    import arastory.filter.pipeline as pipeline
    from arastory.data.bundled import PARALLEL_FILE
    from arastory.filter.encoders import LexiconEncoder

    settings = pipeline.FilterSettings(plots=False, progress=False)
    pipeline.Filter(PARALLEL_FILE, tmp_path, LexiconEncoder(), settings).run()
    before = {n: (tmp_path / n).read_bytes() for n in ("kept.jsonl", "rejected.jsonl")}
    written = {"n": 0}
    real = pipeline.json_line

    def dies_midway(row):
        written["n"] += 1
        if written["n"] == 50:
            raise KeyboardInterrupt("killed while writing")
        return real(row)

    monkeypatch.setattr(pipeline, "json_line", dies_midway)
    with pytest.raises(KeyboardInterrupt):
        pipeline.Filter(PARALLEL_FILE, tmp_path, LexiconEncoder(), settings).run()
    assert {n: (tmp_path / n).read_bytes() for n in before} == before
    assert not list(tmp_path.glob(".*.tmp"))


# --- synthesize -----------------------------------------------------------------------------------------------
def test_synthesize_killed_at_the_start_and_midway_asks_each_prompt_at_most_twice(tmp_path):
    from arastory.data.bundled import load_bundled_stories

    stories = [r.story for r in load_bundled_stories() if r.variety == "egy"]
    asked, lock, release, assigned = Counter(), threading.Lock(), threading.Event(), {}

    def respond(n, body):
        prompt = body["messages"][-1]["content"]
        with lock:
            asked[prompt] += 1
            story = stories[
                assigned.setdefault(prompt, len(assigned)) % len(stories)
            ]  # one story per prompt: no duplicates
        release.wait(timeout=60)  # requests hang until the test lets them through
        return Reply(story, delay=0.2)

    out = tmp_path / "egy"
    with OpenAIServer(respond) as server:
        args = [
            "-m",
            "arastory.synthesize",
            "dialect=egy",
            "n=12",
            f"out={out}",
            f"generator.base_url={server.base_url}",
            "generator.concurrency=2",
            "generator.backoff_base=0.01",
            "gates.check_variety=false",
        ]
        first = start(args)
        printed = kill_when(first, lambda: sum(asked.values()) >= 2)  # both first requests in flight, none answered
        assert count_lines(out / "generations.jsonl") == 0
        second = start(args)
        lock_file = out / ".arastory.lock"
        wait_until(
            lambda: f"pid {second.pid}" in (lock_file.read_text() if lock_file.exists() else ""),
            second,
            "it held the lock",
        )
        intruder = finish(args)  # a second writer on the same out dir, while the first one runs
        message = intruder.stderr.strip()
        assert intruder.returncode == 2 and "\n" not in message, intruder.stderr
        assert message.startswith(f"lock error: {out}: in use by another arastory process (pid {second.pid}: ")
        assert message.endswith("wait for it to finish or use another out dir") and "=egy n=12" in message
        release.set()
        printed += kill_when(second, lambda: count_lines(out / "generations.jsonl") >= 6)
        final = finish(args)
    assert final.returncode == 0, final.stderr[-3000:]
    assert_each_once(read_jsonl(out / "generations.jsonl"), [f"egy-s0-{i:06d}" for i in range(12)])
    assert max(asked.values()) <= 3 and sum(asked.values()) <= 12 + 2 * 2, asked  # in flight at each kill: 2
    assert_no_canary(out, printed=printed + intruder.stdout + intruder.stderr + final.stdout + final.stderr)


# --- train ----------------------------------------------------------------------------------------------------
def test_train_killed_in_its_second_stage_resumes_without_repeating_a_stage(tmp_path):
    run_dir = tmp_path / "run"
    args = [
        "train.py",
        *[a for a in FAST_TRAIN if not a.startswith(("logger=", "strategy."))],
        "logger=wandb",
        "strategy=sequential",
        "strategy.stages.0.max_steps=2",
        "strategy.stages.1.max_steps=4",
        "checkpoint.every_n_steps=1",
        "sample.per_variety=1",
        f"hydra.run.dir={run_dir}",
    ]
    ckpt = run_dir / "stages" / "1_synthetic" / "checkpoints" / "last.ckpt"
    printed = kill_when(start(args), ckpt.exists)
    assert (run_dir / "stages" / "0_translated" / "adapter").exists() and not (run_dir / "samples.jsonl").exists()
    wandb_id = (run_dir / "wandb_id.txt").read_text()
    resumed = finish(["train.py", f"resume={run_dir}"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert [s["name"] for s in metrics["stages"]] == ["translated", "synthetic"], "each stage exactly once"
    assert metrics["stages"][1]["resumed_from_step"] and metrics["stages"][1]["global_step"] == 4
    samples = read_jsonl(run_dir / "samples.jsonl")
    assert len(samples) == 3 and len({s["variety"] for s in samples}) == 3
    assert (run_dir / "wandb_id.txt").read_text() == wandb_id and (run_dir / ".hydra" / "resumed").is_dir()
    assert_no_canary(run_dir, printed=printed + resumed.stdout + resumed.stderr)


# --- evaluate -------------------------------------------------------------------------------------------------
def test_evaluate_killed_while_generating_and_while_judging_keeps_every_row_once(tmp_path):
    from arastory.data.bundled import load_bundled_stories
    from tests.test_evaluate_judge import render, scripted_scores

    stories = {r.variety: r.story for r in load_bundled_stories()}
    asked, lock = Counter(), threading.Lock()

    def respond(n, body):
        content = body["messages"][-1]["content"] if body["model"] == "story-model" else body["messages"][0]["content"]
        with lock:
            asked[(body["model"], content)] += 1
        if body["model"] == "story-model":
            return Reply(stories["msa"], delay=0.1)
        return Reply(render(scripted_scores(content), 0), delay=0.1)

    out = tmp_path / "eval"
    with OpenAIServer(respond) as server:
        args = [
            "evaluate.py",
            f"out={out}",
            "n_per_variety=5",
            "system=openai",
            "system.model=story-model",
            f"system.base_url={server.base_url}",
            "system.concurrency=2",
            f"judge.base_url={server.base_url}",
            "judge.model=judge-model",
            "judge.concurrency=2",
            "judge.cache=false",
            "wandb.enabled=false",
        ]
        printed = kill_when(start(args), lambda: count_lines(out / "generations.jsonl") >= 4)
        printed += kill_when(start(args), lambda: count_lines(out / "judgments.jsonl") >= 4)
        final = finish(args)
    assert final.returncode == 0, final.stderr[-3000:]
    prompts = [p["id"] for p in read_jsonl(out / "prompts.jsonl")]
    assert len(prompts) == 15
    assert_each_once(read_jsonl(out / "generations.jsonl"), prompts)
    assert_each_once(read_jsonl(out / "judgments.jsonl"), prompts, key="prompt_id")
    per_model = Counter(model for model, _ in asked.elements())
    assert max(asked.values()) <= 2 and per_model["story-model"] <= 15 + 2 and per_model["judge-model"] <= 15 + 2
    assert_no_canary(out, printed=printed + final.stdout + final.stderr)

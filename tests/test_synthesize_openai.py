"""`python -m arastory.synthesize` against a local OpenAI-compatible server: concurrency, 429/500/timeouts,
malformed answers, gates in the report, kill + resume (every prompt answered once), dry run, keys never written."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from arastory.cli import register_resolvers
from arastory.data.bundled import load_bundled_stories
from arastory.io import read_jsonl
from arastory.llm.client import LLMAuthError
from arastory.paths import CONF_DIR
from arastory.synthesize.run import sample_prompts, synthesize
from tests.conftest import FAST_TRAIN, REPO, run_cli, wait_until
from tests.openai_server import OpenAIServer, Reply

register_resolvers()
KEY = "test-key-7f3a9c-NEVER-WRITE-ME"
FAST_CLIENT = ["generator.backoff_base=0.01", "generator.backoff_max=1.0"]  # Retry-After: its own cap


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)


def bundled(variety: str) -> list[str]:
    return [r.story for r in load_bundled_stories() if r.variety == variety]


class StoryServer:
    """Answers prompt i (in sampling order) with bundled story i; `special[i]` scripts the first replies to prompt i."""

    def __init__(self, variety="egy", special=None, delay=0.0, stories=None):
        self.stories = stories or bundled(variety)
        self.special, self.delay = special or {}, delay
        self.order: dict[str, int] = {}  # prompt text -> its index among the sampled prompts
        self.asked: Counter = Counter()
        self.times: dict[int, list[float]] = {}
        self.lock = threading.Lock()

    def __call__(self, n, body):
        prompt = body["messages"][-1]["content"]
        with self.lock:
            index = self.order[prompt]
            attempt = self.asked[prompt]
            self.asked[prompt] += 1
            self.times.setdefault(index, []).append(time.monotonic())
        script = self.special.get(index, [])
        if attempt < len(script):
            return script[attempt]
        return Reply(text=self.stories[index % len(self.stories)], delay=self.delay)


def compose_synth(overrides):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="synthesize", overrides=overrides)


def run_synth(out: Path, server, responder, overrides):
    cfg = compose_synth([f"out={out}", f"generator.base_url={server.base_url}", *FAST_CLIENT, *overrides])
    if responder is not None:
        responder.order = {p["prompt"]: i for i, p in enumerate(sample_prompts(cfg))}
    return synthesize(cfg, out)


def test_concurrency_limit_rate_limits_and_server_errors(tmp_path):
    responder = StoryServer(
        "egy",
        delay=0.2,
        special={0: [Reply(status=429, headers={"Retry-After": "0.4"})], 1: [Reply(status=500), Reply(status=503)]},
    )
    with OpenAIServer(responder) as server:
        report = run_synth(tmp_path, server, responder, ["variety=egy", "n=9", "generator.concurrency=3"])
    assert server.max_in_flight == 3, "three requests in flight at once, never more"
    assert report["generated"] == report["kept"] == 9 and report["failed"] == 0
    requests = report["this_run"]["requests"]
    assert requests["rate_limited"] == 1 and requests["server_errors"] == 2 and report["retries"] == 3
    assert responder.times[0][1] - responder.times[0][0] >= 0.4, "Retry-After is honoured"
    assert report["tokens"] == {"prompt_tokens": 90, "completion_tokens": 180}
    assert report["estimated_cost_usd"] == pytest.approx((90 * 10 + 180 * 30) / 1e6)
    stories = read_jsonl(tmp_path / "stories.jsonl")
    assert [s["id"] for s in stories] == [f"egy-s0-{i:06d}" for i in range(9)]  # prompt order, not finish order
    first = stories[0]
    assert first["source"] == "synthetic" and first["variety"] == "egy" and first["features"]["country"]
    assert first["meta"]["generator"] == "openai" and first["meta"]["model"] == "gpt-4-turbo"
    assert first["meta"]["usage"] == {"prompt_tokens": 10, "completion_tokens": 20} and first["meta"]["retries"] == 1
    assert first["meta"]["gates"]["dialect"]["predicted"] == "egy"


def test_malformed_answers_timeouts_and_gates_then_a_rerun_asks_only_the_failed(tmp_path):
    egy, msa = bundled("egy"), bundled("msa")
    near = egy[7].split()
    near[10] = near[40] = near[-5] = "قطة"
    null_content = json.dumps(
        {
            "id": "x",
            "object": "chat.completion",
            "created": 1,
            "model": "gpt-4-turbo",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": None}}],
        }
    )
    special = {
        0: [Reply(text="")],
        1: [Reply(raw="this is not json")],
        2: [Reply(raw=null_content)],
        3: [Reply(text="I'm sorry, but as an AI I cannot write that story.")],
        4: [Reply(text="عذراً، لا أستطيع كتابة هذه القصة.")],
        5: [Reply(text=egy[5], delay=3.0)],  # times out once, then answered
        6: [Reply(text=msa[0])],  # the wrong variety
        7: [Reply(text=egy[7])],
        8: [Reply(text=egy[7])],  # an exact duplicate
        9: [Reply(text=" ".join(near))],  # a near duplicate
    }
    responder = StoryServer("egy", special=special)
    overrides = ["variety=egy", "n=10", "max_attempts=10", "generator.concurrency=1", "generator.timeout=1.0"]
    with OpenAIServer(responder) as server:
        report = run_synth(tmp_path, server, responder, overrides)
    assert report["generated"] == 8 and report["failed"] == 2 and report["kept"] == 2
    assert {k: v for k, v in report["rejected"].items() if v} == {
        "empty": 1,
        "refusal": 2,
        "wrong_variety": 1,
        "duplicate": 1,
        "near_duplicate": 1,
    }
    assert report["rejected_total"] == 6 and report["this_run"]["requests"]["timeouts"] == 1
    errors = read_jsonl(tmp_path / "generations.jsonl.errors.jsonl")
    assert {e["id"] for e in errors} == {"egy-s0-000001", "egy-s0-000002"}
    assert any("malformed answer" in e["error"] for e in errors) and any(
        "no message content" in e["error"] for e in errors
    )
    rejected = {r["id"]: r for r in read_jsonl(tmp_path / "rejected.jsonl")}
    assert rejected["egy-s0-000008"]["detail"] == "same text as egy-s0-000007"
    assert rejected["egy-s0-000006"]["reason"] == "wrong_variety" and "msa" in rejected["egy-s0-000006"]["detail"]

    again = StoryServer("egy")  # a healthy server: only the two failed prompts are asked again
    with OpenAIServer(again) as server:
        report = run_synth(tmp_path, server, again, overrides)
    assert len(server.requests) == 2 and report["failed"] == 0 and report["generated"] == 10
    assert report["this_run"]["already_answered"] == 8 and report["kept"] == 4


def test_a_rejected_key_stops_the_run_with_one_error(tmp_path):
    with OpenAIServer(lambda n, body: Reply(status=401)) as server:
        with pytest.raises(LLMAuthError, match="authentication failed"):
            run_synth(tmp_path, server, None, ["n=20", "generator.concurrency=2"])
    assert len(server.requests) <= 2


def wait_for_lines(path: Path, count: int, proc) -> None:
    wait_until(
        lambda: path.exists() and len(path.read_text(encoding="utf-8").splitlines()) >= count,
        proc,
        f"{path.name} had {count} lines",
    )


@pytest.fixture(scope="module")
def resumed_run(tmp_path_factory):
    """A CLI run killed after 4 answers, then resumed to the end (shared by the resume, secrets and training tests)."""
    out = tmp_path_factory.mktemp("synth") / "egy"
    blocked = {"on": True}
    done = Counter()

    def respond(n, body):
        reply = responder(n, body)
        prompt = body["messages"][-1]["content"]
        if blocked["on"] and sum(done.values()) >= 4:
            return Reply(text=reply.text, delay=5.0)  # hangs until the kill
        done[prompt] += 1
        return reply

    responder = StoryServer("egy")
    responder.order = {p["prompt"]: i for i, p in enumerate(sample_prompts(compose_synth(["variety=egy", "n=12"])))}
    env = {**os.environ, "OPENAI_API_KEY": KEY, "HYDRA_FULL_ERROR": "0"}
    with OpenAIServer(respond) as server:
        args = [
            sys.executable,
            "-m",
            "arastory.synthesize",
            "dialect=egy",
            "n=12",
            f"out={out}",
            f"generator.base_url={server.base_url}",
            "generator.concurrency=2",
            *FAST_CLIENT,
        ]
        first = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            wait_for_lines(out / "generations.jsonl", 4, first)
            time.sleep(0.3)
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait()
        answered_before = [r["id"] for r in read_jsonl(out / "generations.jsonl")]
        blocked["on"] = False
        second = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    return {
        "out": out,
        "answered_before": answered_before,
        "responder": responder,
        "second": second,
        "first_output": first.stdout.read() + first.stderr.read(),
    }


def test_a_killed_run_resumes_and_every_prompt_is_answered_once(resumed_run):
    out, second, responder = resumed_run["out"], resumed_run["second"], resumed_run["responder"]
    assert second.returncode == 0, second.stderr[-2000:]
    assert len(resumed_run["answered_before"]) == 4
    ledger = read_jsonl(out / "generations.jsonl")
    ids = [f"egy-s0-{i:06d}" for i in range(12)]
    assert sorted(r["id"] for r in ledger) == ids, "one stored answer per prompt"
    stories, rejected = read_jsonl(out / "stories.jsonl"), read_jsonl(out / "rejected.jsonl")
    assert sorted(r["id"] for r in stories + rejected) == ids and len(stories) == 12
    prompts = {p["id"]: p["prompt"] for p in read_jsonl(out / "prompts.jsonl")}
    for story_id in resumed_run["answered_before"]:
        assert responder.asked[prompts[story_id]] == 1, "answered before the kill: never asked again"
    assert all(responder.asked[prompts[i]] <= 2 for i in ids)  # at most the in-flight ones were asked twice
    assert sum(responder.asked.values()) <= 12 + 2
    report = json.loads((out / "report.json").read_text())
    assert report["this_run"]["already_answered"] == 4 and report["this_run"]["answered"] == 8
    assert "12/12 egy stories kept" in second.stdout


def test_the_api_key_is_never_written(resumed_run):
    out = resumed_run["out"]
    files = [p for p in out.rglob("*") if p.is_file()]
    assert {"config.yaml", "synthesize.log", "report.json", "stories.jsonl"} <= {p.name for p in files}
    for path in files:
        assert KEY not in path.read_text(encoding="utf-8", errors="replace"), path
    assert KEY not in resumed_run["second"].stdout + resumed_run["second"].stderr + resumed_run["first_output"]


def test_synthetic_output_trains_directly(resumed_run, released_dir):
    stories = resumed_run["out"] / "stories.jsonl"
    run_dir = resumed_run["out"].parent / "train"
    run_cli(
        ["train.py", *FAST_TRAIN, "dialect=egy", f"data.synthetic.path={stories}", f"hydra.run.dir={run_dir}"],
        check=True,
    )
    data = json.loads((run_dir / "metrics.json").read_text())["data"]["synthetic"]
    assert data["read"] == 12 and data["train_per_variety"] == {"egy": 6}
    from arastory.data.sources import StorySource

    released = StorySource(path=str(released_dir / "Formatted-Egyptian-prompts-stories-for-fine-tuning.csv")).load()
    assert len(released) == 850 and released[0].source == "released"


def test_dry_run_writes_prompts_and_an_estimate_without_a_key_or_a_call(tmp_path):
    env_without_key = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    with OpenAIServer(lambda n, body: Reply("x")) as server:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "arastory.synthesize",
                "dialect=mor",
                "n=30",
                f"out={tmp_path}",
                f"generator.base_url={server.base_url}",
                "dry_run=true",
            ],
            cwd=REPO,
            env=env_without_key,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert proc.returncode == 0, proc.stderr
    assert server.requests == [] and not (tmp_path / "stories.jsonl").exists()
    prompts = read_jsonl(tmp_path / "prompts.jsonl")  # every prompt the run may send: max_attempts = 2 x n
    assert len(prompts) == 60 and prompts[0]["id"] == "mor-s0-000000" and prompts[0]["variety"] == "mor"
    assert "بالدارجة المغربية" in prompts[0]["prompt"] and "country" in prompts[0]["features"]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["dry_run"] and report["requested"] == 30 and report["max_attempts"] == 60
    assert report["expected_attempts"] == 34  # 30 stories / expected_keep_rate 0.9
    assert report["estimated_tokens"]["completion_tokens"] == 34 * 700
    assert report["worst_case"]["estimated_tokens"]["completion_tokens"] == 60 * 700
    assert report["estimated_cost_usd"] > 0 and "estimated cost $" in proc.stdout


@pytest.mark.parametrize(
    "args,message",
    [
        (["dialect=lev"], "config error: dialect: 'lev' is not one of: egy, mor, msa"),
        (["generator=claude"], "config error: generator: 'claude' is not one of: hf, openai"),
        (["n=0"], "config error: n: must be a positive integer, got 0"),
        (
            ["generator=hf", "generator.name_or_path=./no-such-model"],
            "config error: generator.name_or_path: './no-such-model' is neither `tiny`, an existing local path "
            "nor an HF id (org/name)",
        ),
        (["dialect_id.source=./no-such-stories.jsonl"], "data error: no-such-stories.jsonl: file not found"),
    ],
)
def test_bad_arguments_are_one_line_errors(tmp_path, args, message):
    proc = run_cli(["-m", "arastory.synthesize", f"out={tmp_path}", *args])
    assert proc.returncode == 2 and proc.stderr.strip() == message, proc.stderr


def test_a_missing_key_is_one_line_before_any_request(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    proc = subprocess.run(
        [sys.executable, "-m", "arastory.synthesize", "n=2", f"out={tmp_path}"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "config error: OPENAI_API_KEY: is not set: `export OPENAI_API_KEY=...`, "
        "or any value for a local vLLM/TGI server"
    )
    assert not (tmp_path / "generations.jsonl").exists()

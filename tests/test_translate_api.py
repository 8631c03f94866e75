"""API translators against real local HTTP servers: the openai translator through tests/openai_server (429, 500,
timeouts, a SIGKILL mid-run and a resume), the google translator through a server speaking the v2 REST format."""

import json
import os
import signal
import subprocess
import sys

import pytest
from hydra import compose, initialize_config_dir

from arastory.cli import register_resolvers
from arastory.io import read_jsonl
from arastory.paths import CONF_DIR
from arastory.translate.base import TranslatorError
from arastory.translate.pipeline import translate
from tests.conftest import REPO, run_cli, wait_until
from tests.openai_server import LocalJSONServer, OpenAIServer, Reply

register_resolvers()


def compose_translate(overrides):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="translate", overrides=overrides)


def arabic_for(text: str) -> str:
    """The servers' deterministic 'translation', so each row can be checked against its own source text."""
    return f"ترجمة[{text}]"


def write_source(path, n):
    path.write_text(
        "".join(
            json.dumps({"id": f"s{i:03d}", "prompt": f"Prompt {i}.", "story": f"Story {i}."}) + "\n" for i in range(n)
        ),
        encoding="utf-8",
    )
    return path


@pytest.fixture(autouse=True)
def keys(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "test-openai-key-not-secret")
    monkeypatch.setenv("GOOGLE_API_KEY", "test-google-key-not-secret")


def openai_overrides(source, out, server, *extra):
    return [
        f"source={source}",
        f"out={out}",
        "translator=openai",
        f"translator.base_url={server.base_url}",
        "translator.backoff_base=0.01",
        "translator.backoff_max=0.05",
        *extra,
    ]


def test_openai_translator_retries_429_500_and_timeouts_and_counts_them(tmp_path):
    source = write_source(tmp_path / "en.jsonl", 6)
    trouble = {
        0: Reply(status=429, headers={"Retry-After": "0.1"}),
        1: Reply(status=500),
        2: Reply(delay=1.5),
        3: Reply(status=503),
    }

    def respond(n, body):
        return trouble.get(n) or Reply(
            arabic_for(body["messages"][-1]["content"]), prompt_tokens=100, completion_tokens=50
        )

    with OpenAIServer(respond) as server:
        report = translate(
            compose_translate(
                openai_overrides(
                    source,
                    tmp_path / "out",
                    server,
                    "translator.timeout=0.7",
                    "translator.concurrency=2",
                    "batch_size=4",
                )
            )
        )
    rows = {r["id"]: r for r in read_jsonl(tmp_path / "out" / "parallel.jsonl")}
    assert len(rows) == 6 and report["translated"] == 6 and report["failed"] == 0
    assert rows["s004"]["ar_story"] == arabic_for("Story 4.") and rows["s004"]["ar_prompt"] == arabic_for("Prompt 4.")
    assert rows["s004"]["translator"] == "openai:gpt-4o-mini" and rows["s004"]["en_story"] == "Story 4."
    usage = report["usage"]
    assert usage["rate_limited"] == 1 and usage["server_errors"] == 2 and usage["timeouts"] == 1
    assert report["retries"] == 4 and usage["requests"] == 12 + 4
    assert usage["input_tokens"] == 12 * 100 and usage["output_tokens"] == 12 * 50
    assert report["estimated_cost_usd"] == pytest.approx((1200 * 0.15 + 600 * 0.60) / 1e6)
    system = server.requests[-1]["messages"][0]["content"]
    assert "Modern Standard Arabic" in system and server.requests[-1]["temperature"] == 0.0
    assert "test-openai-key" not in (tmp_path / "out" / "report.json").read_text()


def test_items_that_still_fail_are_logged_and_translated_by_the_next_run(tmp_path):
    source = write_source(tmp_path / "en.jsonl", 4)
    broken = {"on": True}

    def respond(n, body):
        text = body["messages"][-1]["content"]
        return Reply(status=500) if broken["on"] and text == "Story 2." else Reply(arabic_for(text))

    with OpenAIServer(respond) as server:
        cfg = compose_translate(openai_overrides(source, tmp_path / "out", server, "translator.max_retries=1"))
        first = translate(cfg)
        assert first["translated"] == 3 and first["failed"] == 1
        failed = read_jsonl(tmp_path / "out" / "failed.jsonl")
        assert failed[0]["id"] == "s002" and "gave up after 2 attempts" in failed[0]["error"]
        broken["on"] = False
        asked_before = len(server.requests)
        second = translate(cfg)
    assert second["already_done"] == 3 and second["translated"] == 1 and second["rows_in_output"] == 4
    # Only the text that got no answer is asked again: the prompt's translation was kept in partial.jsonl.
    assert [r["messages"][-1]["content"] for r in server.requests[asked_before:]] == ["Story 2."]
    assert second["reused_partial_answers"] == 1
    row = next(r for r in read_jsonl(tmp_path / "out" / "parallel.jsonl") if r["id"] == "s002")
    assert row["ar_prompt"] == arabic_for("Prompt 2.") and row["ar_story"] == arabic_for("Story 2.")


def test_killed_cli_run_resumes_and_never_asks_twice_for_a_finished_item(tmp_path):
    source = write_source(tmp_path / "en.jsonl", 40)
    out = tmp_path / "out"

    def respond(n, body):
        text = body["messages"][-1]["content"]
        if n % 9 == 4:
            return Reply(status=429, headers={"Retry-After": "0"})
        if n % 13 == 6:
            return Reply(status=500)
        return Reply(arabic_for(text), delay=0.03)

    with OpenAIServer(respond) as server:
        args = [
            "-m",
            "arastory.translate",
            *openai_overrides(source, out, server, "batch_size=2", "translator.concurrency=2"),
        ]
        proc = subprocess.Popen(
            [sys.executable, *args],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env={**os.environ, "HYDRA_FULL_ERROR": "0"},
        )
        parallel = out / "parallel.jsonl"
        wait_until(lambda: parallel.exists() and len(read_jsonl(parallel)) >= 8, proc, "8 rows were written")
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        finished = {r["id"]: r for r in read_jsonl(parallel)}
        asked_before_resume = len(server.requests)
        assert 8 <= len(finished) < 40, "the run was killed in the middle"
        resumed = run_cli(args, check=True)
    rows = read_jsonl(parallel)
    ids = [r["id"] for r in rows]
    assert sorted(ids) == [f"s{i:03d}" for i in range(40)] and len(ids) == len(set(ids)), "each item exactly once"
    assert all(r["ar_story"] == arabic_for(r["en_story"]) for r in rows)
    finished_texts = {t for r in finished.values() for t in (r["en_prompt"], r["en_story"])}
    asked_again = [r["messages"][-1]["content"] for r in server.requests[asked_before_resume:]]
    assert not finished_texts & set(asked_again), "a finished item was paid for twice"
    assert f"already done {len(finished)}" in resumed.stdout
    report = json.loads((out / "report.json").read_text())
    assert report["already_done"] == len(finished) and report["translated"] == 40 - len(finished)


def test_a_refused_api_key_stops_the_run_at_once_with_one_line(tmp_path):
    source = write_source(tmp_path / "en.jsonl", 6)
    with OpenAIServer(lambda n, body: Reply(status=401)) as server:
        with pytest.raises(TranslatorError, match=r"translation stopped: gpt-4o-mini at .*: authentication failed"):
            translate(compose_translate(openai_overrides(source, tmp_path / "out", server, "translator.concurrency=1")))
    assert len(server.requests) <= 2, "no more than the request in flight when the refusal came, of 12 texts"
    assert json.loads((tmp_path / "out" / "report.json").read_text())["status"].startswith(
        "stopped: translation stopped"
    )


class GoogleV2Server(LocalJSONServer):
    """`POST /language/translate/v2` with {"q": [...], "target", "source", "format", "model"}
    → {"data": {"translations": [...]}}."""

    def __init__(self, script=None):
        super().__init__()
        self.script = script or {}

    @property
    def keys(self) -> list:
        return [headers.get("x-goog-api-key") for headers in self.request_headers]

    def record(self, path: str, body: dict) -> dict:
        return {"path": path, **body}

    def answer(self, n: int, path: str, body: dict) -> Reply:
        scripted = self.script.get(n, 200)  # a status, or a whole Reply (with headers)
        return scripted if isinstance(scripted, Reply) else Reply(status=scripted)

    def payload(self, reply: Reply, body: dict) -> bytes:
        if reply.status == 200:
            payload = {"data": {"translations": [{"translatedText": arabic_for(q)} for q in body["q"]]}}
        else:
            payload = {"error": {"code": reply.status, "message": f"status {reply.status}", "errors": []}}
        return json.dumps(payload, ensure_ascii=False).encode()


def google_overrides(source, out, server, *extra):
    return [
        f"source={source}",
        f"out={out}",
        "translator=google",
        f"translator.endpoint={server.endpoint}",
        "translator.backoff_base=0.01",
        "translator.backoff_max=0.05",
        *extra,
    ]


def test_google_translator_batches_requests_retries_and_uses_the_key_from_the_environment(tmp_path):
    source = write_source(tmp_path / "en.jsonl", 5)
    with GoogleV2Server({0: 429, 1: 500}) as server:
        report = translate(
            compose_translate(
                google_overrides(
                    source,
                    tmp_path / "out",
                    server,
                    "batch_size=5",
                    "translator.max_segments_per_request=4",
                    "translator.concurrency=1",
                )
            )
        )
    rows = {r["id"]: r for r in read_jsonl(tmp_path / "out" / "parallel.jsonl")}
    assert len(rows) == 5 and rows["s003"]["ar_prompt"] == arabic_for("Prompt 3.")
    assert rows["s003"]["ar_story"] == arabic_for("Story 3.") and rows["s003"]["translator"] == "google:nmt"
    ok = list(server.requests[2:])
    assert [len(r["q"]) for r in ok] == [4, 4, 2], "10 texts in requests of at most 4 segments"
    assert ok[0]["path"] == "/language/translate/v2" and ok[0]["target"] == "ar" and ok[0]["source"] == "en"
    assert ok[0]["format"] == "text" and set(server.keys) == {"test-google-key-not-secret"}
    assert report["usage"]["rate_limited"] == 1 and report["usage"]["server_errors"] == 1 and report["retries"] == 2
    assert report["usage"]["characters"] == sum(len(q) for r in ok for q in r["q"])
    assert report["estimated_cost_usd"] == pytest.approx(report["usage"]["characters"] * 20 / 1e6)


def test_google_translator_honours_retry_after_up_to_its_own_ceiling():
    """Retry-After used to be capped at backoff_max; now at retry_after_max (the waits are recorded, not timed)."""
    from arastory.translate.google_mt import GoogleTranslator

    script = {
        0: Reply(status=429, headers={"Retry-After": "7"}),
        1: Reply(status=503, headers={"Retry-After": "500"}),
        2: 500,
    }
    with GoogleV2Server(script) as server:
        translator = GoogleTranslator(endpoint=server.endpoint, backoff_max=0.05, retry_after_max=60.0)
        waits = []
        translator.retry.sleep = waits.append
        assert translator.translate(["One.", "Two."]) == [arabic_for("One."), arabic_for("Two.")]
    assert waits[:2] == [7.0, 60.0] and 0 <= waits[2] <= 0.05 and len(waits) == 3
    assert translator.stats.rate_limited == 1 and translator.stats.server_errors == 2 and translator.stats.retries == 3


def test_google_rejected_credentials_stop_the_run_with_one_line(tmp_path):
    source = write_source(tmp_path / "en.jsonl", 3)
    with GoogleV2Server(dict.fromkeys(range(10), 403)) as server:
        with pytest.raises(TranslatorError, match=r"google translate at http://127.0.0.1:\d+: not authorised \(403\)"):
            translate(compose_translate(google_overrides(source, tmp_path / "out", server)))
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["status"].startswith("stopped: google translate") and len(server.requests) == 1

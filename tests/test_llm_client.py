"""The shared LLM client against a local OpenAI-compatible server: retries, Retry-After, timeouts, resumable batches."""

import pytest

from arastory.errors import ConfigError
from arastory.io import read_jsonl
from arastory.llm import ChatClient, LLMError, estimate_cost, run_resumable
from tests.openai_server import OpenAIServer, Reply


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "test-key-not-secret")


def client(server, **kw):
    return ChatClient("gpt-4-0125-preview", base_url=server.base_url, backoff_base=0.01, backoff_max=0.05, **kw)


def test_retries_rate_limits_and_server_errors_then_succeeds():
    """Was flaky: it measured wall-clock time while the client capped Retry-After at backoff_max (0.05 s)."""
    script = [Reply(status=429, headers={"Retry-After": "0.2"}), Reply(status=500), Reply(status=503), Reply("قصة")]
    with OpenAIServer(lambda n, body: script[n]) as server:
        c = client(server)
        waits = []
        c.retry.sleep = waits.append  # record the waits asked for instead of timing them
        response = c.chat([{"role": "user", "content": "x"}], temperature=0)
    assert response.text == "قصة" and response.retries == 3
    assert waits[0] == 0.2, "Retry-After is honoured, above backoff_max"
    assert len(waits) == 3 and all(0 <= w <= 0.05 for w in waits[1:]), "no Retry-After: backoff under backoff_max"
    assert c.stats.rate_limited == 1 and c.stats.server_errors == 2 and c.stats.retries == 3
    assert server.requests[-1]["temperature"] == 0 and server.requests[-1]["model"] == "gpt-4-0125-preview"


def test_timeouts_are_retried_and_give_up_with_one_line():
    with OpenAIServer(lambda n, body: Reply(delay=0.5) if n < 2 else Reply("done")) as server:
        c = client(server, timeout=0.2)
        assert c.chat([{"role": "user", "content": "x"}]).text == "done"
        assert c.stats.timeouts == 2
    with OpenAIServer(lambda n, body: Reply(status=500)) as server:
        c = client(server, max_retries=2)
        with pytest.raises(LLMError, match="gave up after 3 attempts"):
            c.chat([{"role": "user", "content": "x"}])


def test_client_errors_are_not_retried():
    with OpenAIServer(lambda n, body: Reply(status=400)) as server:
        c = client(server)
        with pytest.raises(LLMError, match=r"request rejected \(400\)"):
            c.chat([{"role": "user", "content": "x"}])
        assert len(server.requests) == 1


def test_missing_key_is_a_one_line_config_error(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    with pytest.raises(ConfigError, match=r"OPENAI_API_KEY: is not set: `export OPENAI_API_KEY=...`, or use judge=hf"):
        ChatClient("gpt-4", key_hint="use judge=hf")


def test_resumable_run_respects_concurrency_and_skips_finished_items(tmp_path):
    out = tmp_path / "out.jsonl"
    with OpenAIServer(lambda n, body: Reply(text=body["messages"][0]["content"].upper(), delay=0.1)) as server:
        c = client(server)
        work = lambda item: {"id": item["id"], "text": c.chat([{"role": "user", "content": item["q"]}]).text}
        items = [{"id": i, "q": f"q{i}"} for i in range(12)]
        stats = run_resumable(items[:5], "id", work, out, concurrency=3)
        assert stats.done == 5 and server.max_in_flight == 3
        stats = run_resumable(items, "id", work, out, concurrency=4)
    assert stats.already_done == 5 and stats.done == 7
    rows = read_jsonl(out)
    assert sorted(r["id"] for r in rows) == list(range(12)) and len(server.requests) == 12
    assert {r["id"]: r["text"] for r in rows}[3] == "Q3"


def test_failures_are_logged_and_retried_by_the_next_run(tmp_path):
    out = tmp_path / "out.jsonl"
    calls = {"n": 0}

    def flaky(item):
        calls["n"] += 1
        if item["id"] == 2 and calls["n"] < 4:
            raise ValueError("malformed answer")
        return {"id": item["id"]}

    stats = run_resumable([{"id": i} for i in range(3)], "id", flaky, out, concurrency=1)
    assert stats.failed == 1 and "malformed answer" in (tmp_path / "out.jsonl.errors.jsonl").read_text()
    stats = run_resumable([{"id": i} for i in range(3)], "id", flaky, out, concurrency=1)
    assert stats.done == 1 and sorted(r["id"] for r in read_jsonl(out)) == [0, 1, 2]


def test_cost_estimates():
    assert estimate_cost("gpt-4-0125-preview", 1_000_000, 1_000_000) == 40.0
    assert estimate_cost("my-local-vllm-model", 10, 10) is None


@pytest.mark.parametrize(
    "model, per_million_in_and_out",
    [
        ("gpt-4o-mini-2024-07-18", 0.15 + 0.60),  # was priced as gpt-4 ($30 + $60): the first prefix in the table
        ("gpt-4o-2024-08-06", 2.5 + 10.0),
        ("gpt-4o-2024-05-13", 5.0 + 15.0),  # a snapshot with its own list price
        ("gpt-4-turbo-2024-04-09", 10.0 + 30.0),
        ("gpt-4-turbo-preview", 10.0 + 30.0),
        ("gpt-4-0613", 30.0 + 60.0),
        ("gpt-4-32k-0613", 60.0 + 120.0),
        ("gpt-3.5-turbo-0125", 0.50 + 1.50),
        ("gpt-3.5-turbo-16k-0613", 3.0 + 4.0),
        ("gpt-4.1-mini-2025-04-14", 0.40 + 1.60),
    ],
)
def test_dated_model_names_are_priced_as_their_own_family(model, per_million_in_and_out):
    assert estimate_cost(model, 1_000_000, 1_000_000) == pytest.approx(per_million_in_and_out)


def test_a_name_that_only_shares_a_prefix_is_unpriced():
    assert estimate_cost("gpt-4.5-preview", 1_000_000, 0) is None  # not gpt-4
    assert estimate_cost("gpt-4omni", 1_000_000, 0) is None

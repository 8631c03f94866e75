"""Bounded translation requests: long texts in chunks, over-long sentences cut, slow answers not cut off (and paid
for) again and again, no log line per HTTP request."""

import threading
from collections import Counter

import pytest

from arastory.llm import ChatClient, LLMError
from arastory.translate.llm_mt import LLMTranslator
from arastory.translate.segments import segment
from tests.openai_server import OpenAIServer, Reply


@pytest.fixture(autouse=True)
def key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "test-key-bounds")


def test_an_over_long_sentence_is_cut_at_words_and_a_giant_word_at_characters():
    sentence = " ".join(f"w{i}" for i in range(1000))  # one sentence, no punctuation: was one chunk, truncated
    layout = segment(sentence + ". " + "x" * 500, len, 100)
    assert all(len(chunk) <= 100 for chunk in layout.chunks)
    assert layout.join(layout.chunks).replace(" ", "") == (sentence + ". " + "x" * 500).replace(" ", "")


def test_a_long_story_goes_in_chunks_under_the_request_bound_and_comes_back_in_order():
    story = " ".join(f"Sentence number {i} of a very long story." for i in range(300))  # ~12k characters
    with OpenAIServer(lambda n, body: Reply("[" + body["messages"][-1]["content"][:12] + "]")) as server:
        translator = LLMTranslator("gpt-4o-mini", base_url=server.base_url, max_chars_per_request=4000, concurrency=3)
        result = translator.translate([story, "Short."])
    sent = [r["messages"][-1]["content"] for r in server.requests]
    assert len(sent) == 5 and all(len(text) <= 4000 for text in sent)  # 12k characters: 4 chunks, and "Short."
    assert " ".join(text for text in sent if text != "Short.").count("Sentence number") == 300
    assert result[1] == "[Short.]" and result[0].startswith("[Sentence num]") and result[0].count("[") == 4


def test_a_slow_answer_is_waited_for_longer_instead_of_being_asked_for_again_and_again():
    """D16: with a fixed timeout every retry of a slow-but-working server timed out again (each one billed)."""
    answered, lock = Counter(), threading.Lock()

    def respond(n, body):
        with lock:
            answered[body["messages"][-1]["content"]] += 1
        return Reply("ok", delay=1.0)

    with OpenAIServer(respond) as server:
        client = ChatClient(
            "m",
            base_url=server.base_url,
            api_key_env="OPENAI_API_KEY",
            timeout=0.6,
            max_retries=6,
            backoff_base=0.01,
            backoff_max=0.05,
        )
        response = client.chat([{"role": "user", "content": "hello"}])
    assert response.text == "ok" and response.retries == 1
    assert answered["hello"] == 2 and client.stats.timeouts == 1 and client.stats.requests == 2


def test_a_server_that_never_answers_in_time_is_given_up_on_with_one_line():
    with OpenAIServer(lambda n, body: Reply("late", delay=3.0)) as server:
        client = ChatClient(
            "m",
            base_url=server.base_url,
            api_key_env="OPENAI_API_KEY",
            timeout=0.2,
            max_retries=2,
            backoff_base=0.01,
            backoff_max=0.05,
        )
        with pytest.raises(LLMError, match="gave up after 3 attempts"):
            client.chat([{"role": "user", "content": "hello"}])
    assert client.stats.requests == 3 and len(server.requests) == 3  # our retries only: the SDK's own are off

"""The judge: tolerant parsing, re-asks, retries on 429/timeouts, cache and concurrency against a local OpenAI-compatible server."""

import hashlib
import json
import threading
from collections import Counter

import pytest

from arastory.evaluate.judge import CRITERIA, REASK, Judge, OpenAIJudgeBackend, hf_judge, judge_messages, parse_judgment
from arastory.evaluate.prompts import load_prompts, sample_eval_prompts
from arastory.errors import ConfigError, DataError
from arastory.llm import ChatClient
from arastory.text import normalize_for_hash
from tests.openai_server import OpenAIServer, Reply

SCORES = {"fluency": 4, "coherence": 3, "instruction_following": 5, "consistency": 2, "variety": 1}
MALFORMED = "The story is lovely and I would give it a good score overall."


def scripted_scores(content: str) -> dict:
    """The scores the scripted judge gives a judge message: a pure function of its text."""
    digest = hashlib.sha256(content.encode()).digest()
    return {c: 1 + digest[i] % 5 for i, c in enumerate(CRITERIA)}


def render(scores: dict, style: int) -> str:
    """The four answer styles a real judge produces."""
    if style == 0:
        return json.dumps(scores)
    if style == 1:
        return "Here is my evaluation:\n```json\n" + json.dumps(scores, indent=1) + "\n```\nThe story is short."
    if style == 2:
        names = {"fluency": "Fluency", "coherence": "Coherence", "instruction_following": "Following Instructions",
                 "consistency": "Consistency", "variety": "Variety"}
        return "\n".join(f"**{names[c]}**: {scores[c]}/5" for c in CRITERIA)
    arabic = {"fluency": "الطلاقة", "coherence": "التماسك", "instruction_following": "اتباع التعليمات",
              "consistency": "الاتساق", "variety": "اللهجة"}
    return "\n".join(f"{arabic[c]}: {scores[c]} من 5" for c in CRITERIA)


class ScriptedJudge:
    """Answers by message content: styles vary, some answers are unreadable once, some slow; the first two requests fail."""

    def __init__(self):
        self.answered = Counter()
        self.lock = threading.Lock()

    @staticmethod
    def first_content(body: dict) -> str:
        return body["messages"][0]["content"]

    def malformed_first(self, content: str) -> bool:
        return hashlib.sha256(content.encode()).digest()[6] % 3 == 0

    def __call__(self, n: int, body: dict) -> Reply:
        if n == 0:
            return Reply(status=429, headers={"retry-after": "0"})
        if n == 1:
            return Reply(status=503, headers={"retry-after": "0"})
        content = self.first_content(body)
        digest = hashlib.sha256(content.encode()).digest()
        with self.lock:
            attempt = self.answered[content]
            self.answered[content] += 1
        if attempt == 0 and self.malformed_first(content):
            return Reply(text=MALFORMED)
        return Reply(text=render(scripted_scores(content), digest[5] % 4), delay=0.2 if digest[7] % 3 == 0 else 0.0)


@pytest.mark.parametrize("style", range(4))
def test_every_answer_style_parses(style):
    assert parse_judgment(render(SCORES, style)) == SCORES


@pytest.mark.parametrize("text", [
    '{"scores": {"Fluency": "4", "Coherence": 3.0, "instruction following": {"score": 5}, "Consistency": 2, "Dialect": 1}}',
    "1. Fluency - 4\n2. Coherence - 3\n3. Instruction following - 5\n4. Consistency - 2\n5. Variety - 1",
    "الطلاقة: ٤\nالتماسك: ٣\nاتباع التعليمات: ٥\nالاتساق: ٢\nاللهجة: ١",
    'Sure. {"fluency": 4, "coherence": 3, "instruction_following": 5, "consistency": 2, "variety": 1} Hope it helps.',
])
def test_tolerant_parsing_of_other_shapes(text):
    assert parse_judgment(text) == SCORES


@pytest.mark.parametrize("text", [
    MALFORMED, "", '{"fluency": 4, "coherence": 3}',                                 # missing criteria
    '{"fluency": 6, "coherence": 3, "instruction_following": 5, "consistency": 2, "variety": 1}',   # out of range
    "Fluency: 4.5\nCoherence: 3\nInstruction following: 5\nConsistency: 2\nVariety: 1",          # not an integer
])
def test_unreadable_answers_give_none(text):
    assert parse_judgment(text) is None


def make_judge(server, **kwargs) -> Judge:
    client = ChatClient("judge-model", server.base_url, "TEST_JUDGE_KEY", timeout=kwargs.pop("timeout", 10),
                        max_retries=3, backoff_base=0.05)
    return Judge(OpenAIJudgeBackend(client), **kwargs)


@pytest.fixture
def judge_key(monkeypatch):
    monkeypatch.setenv("TEST_JUDGE_KEY", "sk-test-judge")


def test_retries_reasks_and_caches_against_a_real_http_server(judge_key):
    prompt, story = "اكتب قصة قصيرة.", "كان يا ما كان ولد صغير."
    content = judge_messages(prompt, story, "egy")[0]["content"]
    script = ScriptedJudge()
    with OpenAIServer(script) as server:
        judge = make_judge(server)
        result = judge.judge(prompt, story, "egy")
        assert result["criteria"] == scripted_scores(content)
        assert server.requests[0]["temperature"] == 0.0          # the judge decodes greedily
        assert len(server.requests) == 2 + result["attempts"]     # a 429 and a 503 were retried first
        assert result["raw"][-1] and len(result["raw"]) == result["attempts"]
        again = judge.judge(prompt, story, "egy")
        assert again["cached"] and again["criteria"] == result["criteria"] and len(server.requests) == 2 + result["attempts"]


def test_unreadable_answer_is_reasked_then_kept_when_valid(judge_key):
    answers = iter([MALFORMED, render(SCORES, 2)])
    with OpenAIServer(lambda n, body: Reply(text=next(answers))) as server:
        result = make_judge(server).judge("p", "s", "msa")
        assert result["criteria"] == SCORES and result["attempts"] == 2 and result["raw"] == [MALFORMED, render(SCORES, 2)]
        reask = server.requests[1]["messages"]
        assert [m["role"] for m in reask] == ["user", "assistant", "user"]
        assert reask[1]["content"] == MALFORMED and reask[2]["content"] == REASK


def test_never_readable_stops_after_max_attempts_and_is_not_cached(judge_key):
    with OpenAIServer(lambda n, body: Reply(text=MALFORMED)) as server:
        judge = make_judge(server, max_attempts=3)
        result = judge.judge("p", "s", "mor")
        assert result["criteria"] is None and result["raw"] == [MALFORMED] * 3 and len(server.requests) == 3
        judge.judge("p", "s", "mor")
        assert len(server.requests) == 6 and judge.counts["unparsed"] == 2


def test_slow_answer_times_out_and_is_retried(judge_key):
    with OpenAIServer(lambda n, body: Reply(text=json.dumps(SCORES), delay=1.0 if n == 0 else 0.0)) as server:
        judge = make_judge(server, timeout=0.4, cache=False)
        assert judge.judge("p", "slow story", "msa")["criteria"] == SCORES
        assert judge.backend.client.stats.timeouts == 1 and len(server.requests) == 2


def test_judge_all_runs_concurrently_and_resumes(judge_key, tmp_path):
    generations = [{"id": f"g{i}", "system": "sys", "variety": "egy", "prompt": f"prompt {i}", "story": f"story {i}"}
                   for i in range(8)]
    with OpenAIServer(lambda n, body: Reply(text=json.dumps(SCORES), delay=0.3)) as server:
        judge = make_judge(server, concurrency=4, cache=False)
        counts = judge.judge_all(generations[:6], tmp_path / "judgments.jsonl")
        assert counts["done"] == 6 and server.max_in_flight >= 3
        counts = judge.judge_all(generations, tmp_path / "judgments.jsonl")
        assert counts["already_done"] == 6 and counts["done"] == 2 and len(server.requests) == 8
    rows = [json.loads(line) for line in (tmp_path / "judgments.jsonl").read_text().splitlines()]
    assert sorted(r["prompt_id"] for r in rows) == [f"g{i}" for i in range(8)]
    assert all(r["id"] == f"sys/{r['prompt_id']}" and r["criteria"] == SCORES and r["judge"] == "judge-model" for r in rows)


def test_missing_judge_key_is_a_one_line_config_error(monkeypatch):
    from arastory.evaluate.judge import openai_judge

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ConfigError, match=r"OPENAI_API_KEY: is not set: `export OPENAI_API_KEY=...`, or pick another judge: `judge=hf"):
        openai_judge()


def test_local_hf_judge_keeps_raw_answers_of_a_tiny_model(tiny_tokenizer):
    from omegaconf import OmegaConf

    from arastory.paths import CONF_DIR
    from arastory.train.tiny import build_tiny_model

    path = build_tiny_model(**OmegaConf.to_container(OmegaConf.load(CONF_DIR / "model" / "tiny.yaml"))["tiny"])
    judge = hf_judge(path, dtype="float32", max_new_tokens=6, max_attempts=2)
    result = judge.judge("اكتب قصة.", "كان يا ما كان.", "msa")
    # A random-init model writes no scores: both answers are kept, nothing is cached.
    assert result["criteria"] is None and result["attempts"] == 2 and len(result["raw"]) == 2
    assert judge.counts == {"requests": 2, "cache_hits": 0, "unparsed": 1}


def test_eval_prompts_avoid_excluded_prompts_and_repeat_with_the_seed():
    first = sample_eval_prompts(["egy", "mor"], 20, seed=3, exclude=set())
    assert first == sample_eval_prompts(["egy", "mor"], 20, seed=3, exclude=set())
    assert [sum(p["variety"] == v for p in first) for v in ("egy", "mor")] == [20, 20]
    exclude = {normalize_for_hash(p["prompt"]) for p in first[:10]}
    second = sample_eval_prompts(["egy", "mor"], 20, seed=3, exclude=exclude)
    assert not exclude & {normalize_for_hash(p["prompt"]) for p in second}
    assert len({p["prompt"] for p in second}) == 40
    with pytest.raises(ConfigError, match="n_per_variety"):
        sample_eval_prompts(["egy"], 0, seed=0, exclude=set())


def test_bad_prompt_files_name_the_line(tmp_path):
    path = tmp_path / "prompts.jsonl"
    path.write_text('{"id": "a", "variety": "egy", "prompt": "x"}\n{"id": "a", "variety": "egy", "prompt": "y"}\n')
    with pytest.raises(DataError, match=r"prompts.jsonl:2: duplicate id 'a'"):
        load_prompts(path)
    path.write_text('{"id": "a", "variety": "egy"}\n')
    with pytest.raises(DataError, match=r"prompts.jsonl:1: missing prompt"):
        load_prompts(path)

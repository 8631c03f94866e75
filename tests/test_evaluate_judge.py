"""The judge: tolerant parsing, re-asks, retries (429, timeouts), cache, concurrency on a local OpenAI-like server."""

import hashlib
import json
import threading
from collections import Counter

import pytest

from arastory.errors import ConfigError, DataError
from arastory.evaluate.judge import (
    CRITERIA,
    Judge,
    OpenAIJudgeBackend,
    Rubric,
    hf_judge,
    judge_messages,
    load_rubric,
    openai_judge,
    parse_judgment,
)
from arastory.evaluate.prompts import load_prompts, sample_eval_prompts
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
        names = {
            "fluency": "Fluency",
            "coherence": "Coherence",
            "instruction_following": "Following Instructions",
            "consistency": "Consistency",
            "variety": "Variety",
        }
        return "\n".join(f"**{names[c]}**: {scores[c]}/5" for c in CRITERIA)
    arabic = {
        "fluency": "الطلاقة",
        "coherence": "التماسك",
        "instruction_following": "اتباع التعليمات",
        "consistency": "الاتساق",
        "variety": "اللهجة",
    }
    return "\n".join(f"{arabic[c]}: {scores[c]} من 5" for c in CRITERIA)


class ScriptedJudge:
    """Answers by message content: styles vary, some answers unreadable once, some slow; the first two requests fail."""

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


@pytest.mark.parametrize(
    "text",
    [
        '{"scores": {"Fluency": "4", "Coherence": 3.0, "instruction following": {"score": 5}, '
        '"Consistency": 2, "Dialect": 1}}',
        "1. Fluency - 4\n2. Coherence - 3\n3. Instruction following - 5\n4. Consistency - 2\n5. Variety - 1",
        "الطلاقة: ٤\nالتماسك: ٣\nاتباع التعليمات: ٥\nالاتساق: ٢\nاللهجة: ١",
        'Sure. {"fluency": 4, "coherence": 3, "instruction_following": 5, "consistency": 2, "variety": 1} '
        "Hope it helps.",
    ],
)
def test_tolerant_parsing_of_other_shapes(text):
    assert parse_judgment(text) == SCORES


@pytest.mark.parametrize(
    "text",
    [
        MALFORMED,
        "",
        '{"fluency": 4, "coherence": 3}',  # missing criteria
        '{"fluency": 6, "coherence": 3, "instruction_following": 5, "consistency": 2, "variety": 1}',  # out of range
        "Fluency: 4.5\nCoherence: 3\nInstruction following: 5\nConsistency: 2\nVariety: 1",  # not an integer
    ],
)
def test_unreadable_answers_give_none(text):
    assert parse_judgment(text) is None


def make_judge(server, model: str = "judge-model", **kwargs) -> Judge:
    client = ChatClient(
        model, server.base_url, "TEST_JUDGE_KEY", timeout=kwargs.pop("timeout", 10), max_retries=3, backoff_base=0.05
    )
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
        assert server.requests[0]["temperature"] == 0.0  # the judge decodes greedily
        assert len(server.requests) == 2 + result["attempts"]  # a 429 and a 503 were retried first
        assert result["raw"][-1] and len(result["raw"]) == result["attempts"]
        again = judge.judge(prompt, story, "egy")
        assert (
            again["cached"]
            and again["criteria"] == result["criteria"]
            and len(server.requests) == 2 + result["attempts"]
        )


def test_unreadable_answer_is_reasked_then_kept_when_valid(judge_key):
    answers = iter([MALFORMED, render(SCORES, 2)])
    with OpenAIServer(lambda n, body: Reply(text=next(answers))) as server:
        result = make_judge(server).judge("p", "s", "msa")
        assert (
            result["criteria"] == SCORES and result["attempts"] == 2 and result["raw"] == [MALFORMED, render(SCORES, 2)]
        )
        reask = server.requests[1]["messages"]
        assert [m["role"] for m in reask] == ["user", "assistant", "user"]
        assert reask[1]["content"] == MALFORMED and reask[2]["content"] == Rubric().reask
        assert not any(
            ch.isdigit() for ch in Rubric().reask.replace("1 to 5", "").replace("<1-5>", "")
        )  # nothing to echo


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
    generations = [
        {"id": f"g{i}", "system": "sys", "variety": "egy", "prompt": f"prompt {i}", "story": f"story {i}"}
        for i in range(8)
    ]
    with OpenAIServer(lambda n, body: Reply(text=json.dumps(SCORES), delay=0.3)) as server:
        judge = make_judge(server, concurrency=4, cache=False)
        counts = judge.judge_all(generations[:6], tmp_path / "judgments.jsonl")
        assert counts["done"] == 6 and server.max_in_flight >= 3
        counts = judge.judge_all(generations, tmp_path / "judgments.jsonl")
        assert counts["already_done"] == 6 and counts["done"] == 2 and len(server.requests) == 8
    rows = [json.loads(line) for line in (tmp_path / "judgments.jsonl").read_text().splitlines()]
    assert sorted(r["prompt_id"] for r in rows) == [f"g{i}" for i in range(8)]
    assert all(
        r["id"] == f"sys/{r['prompt_id']}" and r["criteria"] == SCORES and r["judge"] == "judge-model" for r in rows
    )


def test_missing_judge_key_is_a_one_line_config_error(monkeypatch):
    from arastory.evaluate.judge import openai_judge

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(
        ConfigError, match=r"OPENAI_API_KEY: is not set: `export OPENAI_API_KEY=...`, or pick another judge: `judge=hf"
    ):
        openai_judge()


def tiny_model_path() -> str:
    from omegaconf import OmegaConf

    from arastory.paths import CONF_DIR
    from arastory.train.tiny import build_tiny_model

    return build_tiny_model(**OmegaConf.to_container(OmegaConf.load(CONF_DIR / "model" / "tiny.yaml"))["tiny"])


def test_local_hf_judge_keeps_raw_answers_and_skips_what_does_not_fit(tiny_tokenizer, tmp_path):
    template = tmp_path / "short.txt"
    template.write_text(
        "Score 1-5 (Fluency, Coherence, Following Instructions, Consistency, Variety).\n{prompt}\n{story}\n"
    )
    judge = hf_judge(tiny_model_path(), dtype="float32", max_new_tokens=6, max_attempts=2, prompt_file=str(template))
    result = judge.judge("اكتب قصة.", "كان يا ما كان.", "msa")
    # A random-init model writes no scores: both answers are kept, nothing is cached.
    assert result["criteria"] is None and result["attempts"] == 2 and len(result["raw"]) == 2
    assert {k: judge.counts[k] for k in ("requests", "cache_hits", "unparsed")} == {
        "requests": 2,
        "cache_hits": 0,
        "unparsed": 1,
    }
    # Our rubric with a long story is more than the tiny model's 1024-token context: skipped and counted, never cut.
    long_judge = hf_judge(tiny_model_path(), dtype="float32", max_new_tokens=6, max_attempts=1)
    rows_path = tmp_path / "judgments.jsonl"
    stats = long_judge.judge_all(
        [{"id": "p", "system": "s", "variety": "msa", "prompt": "اكتب قصة.", "story": "كان يا ما كان " * 200}],
        rows_path,
    )
    row = json.loads(rows_path.read_text())
    assert stats["skipped_long"] == 1 and row["criteria"] is None and "1024-token context" in row["skipped"]


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


# ---- issue 10: the study's judge prompt, strict parsing, a correct cache, re-asks, 401/403 --------------------------

STUDY_STYLE = "Fluency: 4\nCoherence: 3\nFollowing Instructions: 5\nConsistency: 2\nVariety: 1"


@pytest.mark.parametrize(
    "text",
    [
        STUDY_STYLE,  # the study's criterion names, plain lines
        "**Fluency:** 4\n**Coherence:** 3\n**Following Instructions:** 5\n**Consistency:** 2\n**Variety:** 1",
        "- Fluency: 4/5\n- Coherence: 3/5\n- Following Instructions: 5/5\n- Consistency: 2/5\n- Variety: 1/5",
    ],
)
def test_study_style_score_lines_parse(text):
    assert parse_judgment(text) == SCORES and parse_judgment(text, "lines") == SCORES


@pytest.mark.parametrize(
    "text",
    [
        STUDY_STYLE.replace("Fluency: 4", "Fluency: 4/10"),  # another scale is not a 1-5 score
        STUDY_STYLE.replace("Fluency: 4", "Fluency: 4 out of 10"),
        STUDY_STYLE.replace("Fluency: 4", "Fluency: 4.5"),
        STUDY_STYLE.replace("Fluency: 4", "Fluency: 45"),
    ],
)
def test_scores_on_other_scales_are_unreadable(text):
    assert parse_judgment(text) is None


def test_answer_format_restricts_what_is_read():
    assert parse_judgment(STUDY_STYLE, "json") is None
    assert parse_judgment(json.dumps(SCORES), "lines") is None and parse_judgment(json.dumps(SCORES), "json") == SCORES


def write_template(tmp_path, text: str):
    path = tmp_path / "judge_prompt.txt"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_an_echoed_example_answer_is_rejected(tmp_path):
    example = '{"fluency": 3, "coherence": 4, "instruction_following": 2, "consistency": 5, "variety": 4}'
    rubric = load_rubric(write_template(tmp_path, f"Answer like {example}\n{{prompt}}\n{{story}}"))
    assert rubric.parse(f"Sure: {example}") is None  # the prompt's own example, repeated
    assert rubric.parse(json.dumps(SCORES)) == SCORES


def test_prompt_file_is_used_verbatim_and_checked(tmp_path):
    template = "Judge this.\n{prompt}\n---\n{story}\nVariety wanted: {variety_name}. Braces {kept} stay."
    rubric = load_rubric(write_template(tmp_path, template))
    content = rubric.messages("P {story}", "S {prompt}", "egy")[0]["content"]
    assert content == "Judge this.\nP {story}\n---\nS {prompt}\nVariety wanted: Egyptian Arabic. Braces {kept} stay."
    assert rubric.hash != Rubric().hash and rubric.source.endswith("judge_prompt.txt")
    with pytest.raises(ConfigError, match=r"judge.prompt_file: '.*' has no \{story\} placeholder"):
        load_rubric(write_template(tmp_path, "only {prompt}"))
    with pytest.raises(ConfigError, match=r"judge.prompt_file: '/no/such.txt' is not a file"):
        load_rubric("/no/such.txt")
    with pytest.raises(ConfigError, match=r"judge.answer_format: 'xml' is not one of: auto, json, lines"):
        load_rubric(None, "xml")


def test_study_prompt_at_the_api_default_temperature_sends_no_temperature(judge_key, tmp_path):
    template = write_template(tmp_path, "Give the scores directly.\n{prompt}\n{story}")
    with OpenAIServer(lambda n, body: Reply(text=STUDY_STYLE)) as server:
        judge = openai_judge(
            "judge-model",
            server.base_url,
            "TEST_JUDGE_KEY",
            prompt_file=template,
            temperature=None,
            answer_format="lines",
            cache=False,
        )
        assert judge.judge("p", "s", "msa")["criteria"] == SCORES
        assert "temperature" not in server.requests[0]
        assert server.requests[0]["messages"][0]["content"] == "Give the scores directly.\np\ns"


def test_the_cache_is_keyed_by_endpoint_rubric_and_parameters(judge_key, tmp_path):
    """The same judge model on two local endpoints: the second one is asked, not answered from the first's cache."""
    with (
        OpenAIServer(lambda n, body: Reply(text=json.dumps(SCORES))) as first,
        OpenAIServer(lambda n, body: Reply(text=json.dumps({**SCORES, "fluency": 1}))) as second,
    ):
        on_first = openai_judge("same-model", first.base_url, "TEST_JUDGE_KEY")
        on_second = openai_judge("same-model", second.base_url, "TEST_JUDGE_KEY")
        assert on_first.judge("p", "s", "egy")["criteria"] == SCORES
        assert on_first.judge("p", "s", "egy")["cached"] and len(first.requests) == 1
        again = on_second.judge("p", "s", "egy")
        assert not again["cached"] and len(second.requests) == 1 and again["criteria"]["fluency"] == 1
        hotter = openai_judge("same-model", first.base_url, "TEST_JUDGE_KEY", temperature=1.0)
        other_rubric = openai_judge(
            "same-model", first.base_url, "TEST_JUDGE_KEY", prompt_file=write_template(tmp_path, "{prompt}\n{story}")
        )
        keys = {on_first.key, on_second.key, hotter.key, other_rubric.key}
        assert len(keys) == 4 and on_first.key in str(on_first.cache_path([]))
        assert not hotter.judge("p", "s", "egy")["cached"]


def test_a_local_judges_key_covers_dtype_quantization_and_revision(tmp_path):
    import shutil

    model = tmp_path / "model"
    shutil.copytree(tiny_model_path(), model)
    keys = {
        hf_judge(str(model), dtype="float32").key,
        hf_judge(str(model), dtype="bfloat16").key,
        hf_judge(str(model), dtype="float32", quant="nf4").key,
    }
    assert len(keys) == 3
    before = hf_judge(str(model), dtype="float32").identity["revision"]
    (model / "config.json").write_text((model / "config.json").read_text() + " ")  # another revision of the weights dir
    assert hf_judge(str(model), dtype="float32").identity["revision"] != before


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_key_stops_judging_at_once(judge_key, tmp_path, status):
    from arastory.llm.client import LLMAuthError

    generations = [
        {"id": f"g{i}", "system": "s", "variety": "egy", "prompt": f"p{i}", "story": f"s{i}"} for i in range(24)
    ]
    with OpenAIServer(lambda n, body: Reply(status=status)) as server:
        judge = make_judge(server, concurrency=2, cache=False)
        with pytest.raises(LLMAuthError, match=f"({status})"):
            judge.judge_all(generations, tmp_path / "judgments.jsonl")
        assert len(server.requests) <= 2  # the in-flight ones, not 24 (nor 24 x retries)


def test_unreadable_judgments_are_reasked_by_a_rerun_up_to_max_rounds_and_other_judges_set_aside(judge_key, tmp_path):
    generations = [
        {"id": f"g{i}", "system": "s", "variety": "egy", "prompt": f"p{i}", "story": f"s{i}"} for i in range(4)
    ]
    path = tmp_path / "judgments.jsonl"
    with OpenAIServer(
        lambda n, body: Reply(text=MALFORMED if body["messages"][0]["content"].endswith("s0") else json.dumps(SCORES))
    ) as server:
        judge = make_judge(server, max_attempts=1, max_rounds=2, cache=False)
        judge.judge_all(generations, path)
        assert len(server.requests) == 4
        again = judge.judge_all(generations, path)  # the unreadable one is asked again, the others are not
        assert again["reasked"] == 1 and len(server.requests) == 5
        third = judge.judge_all(generations, path)  # max_rounds reached: no more requests
        assert third["reasked"] == 0 and len(server.requests) == 5
    rows = {r["id"]: r for r in map(json.loads, path.read_text().splitlines())}
    assert len(rows) == 4 and rows["s/g0"]["rounds"] == 2 and rows["s/g0"]["earlier_raw"] == [MALFORMED]
    with OpenAIServer(lambda n, body: Reply(text=json.dumps(SCORES))) as server:
        other = make_judge(server, model="another-judge-model", max_attempts=1, cache=False)
        other.judge_all(generations, path)
        assert len(server.requests) == 4  # everything judged anew by the new judge
    assert len(path.read_text().splitlines()) == 4
    archived = list(tmp_path.glob("judgments.*.jsonl"))
    assert len(archived) == 1 and len(archived[0].read_text().splitlines()) == 4  # the old judge's rows, kept


def test_costs_only_where_the_endpoint_has_a_price_table():
    from arastory.llm import estimate_cost

    assert estimate_cost("gpt-4o", 1_000_000, 1_000_000) == 12.5  # OpenAI itself
    assert estimate_cost("gpt-4o", 1_000_000, 1_000_000, endpoint="https://api.openai.com/v1/") == 12.5
    assert estimate_cost("gpt-4o", 1_000_000, 1_000_000, endpoint="http://127.0.0.1:8000/v1") is None  # a local server
    assert estimate_cost("mine", 1_000_000, 0, prices={"mine": (1.0, 2.0)}, endpoint="http://127.0.0.1:8000/v1") == 1.0

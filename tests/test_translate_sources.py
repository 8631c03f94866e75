"""Translation sources and bad input: JSONL, CSV, Parquet and saved HF datasets, story-only sources, file:line
messages, skip versus stop, and config errors as one line (translations come from a local OpenAI-compatible server)."""

import json

import pytest
from hydra import compose, initialize_config_dir

from arastory.cli import register_resolvers
from arastory.errors import ConfigError, DataError
from arastory.io import read_jsonl
from arastory.paths import CONF_DIR
from arastory.translate.pipeline import translate
from tests.conftest import run_cli
from tests.openai_server import OpenAIServer, Reply

register_resolvers()


@pytest.fixture(autouse=True)
def key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "test-openai-key-not-secret")


@pytest.fixture()
def server():
    with OpenAIServer(lambda n, body: Reply(f"ترجمة[{body['messages'][-1]['content']}]")) as running:
        yield running


def run(source, out, server, *extra):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(
            config_name="translate",
            overrides=[
                f"source={source}",
                f"out={out}",
                "translator=openai",
                f"translator.base_url={server.base_url}",
                *extra,
            ],
        )
    return translate(cfg)


def messy_jsonl(path):
    lines = [
        json.dumps({"prompt": "P0.", "story": "S0."}).encode(),  # 1 ok
        b'{"prompt": "P1.", "story": "S1."',  # 2 invalid JSON
        json.dumps({"prompt": "P2."}).encode(),  # 3 no story
        json.dumps({"prompt": "P3.", "story": "   "}).encode(),  # 4 empty story
        b'{"prompt": "P4.", "story": "caf\xe9"}',  # 5 Latin-1, not UTF-8
        b"",  # 6 blank: ignored
        b"[1, 2]",  # 7 not an object
        json.dumps({"prompt": "P7.", "story": "S7."}).encode(),  # 8 ok
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def test_bad_lines_are_skipped_counted_and_named_by_file_and_line(tmp_path, server):
    source = messy_jsonl(tmp_path / "messy.jsonl")
    report = run(source, tmp_path / "out", server)
    assert report["translated"] == 2 and report["skipped_bad_input"] == 5 and report["read"] == 7
    assert [r["id"] for r in read_jsonl(tmp_path / "out" / "parallel.jsonl")] == ["messy-0", "messy-6"]
    bad = {row["where"]: row["error"] for row in read_jsonl(tmp_path / "out" / "bad_input.jsonl")}
    assert sorted(bad) == [f"{source}:{n}" for n in (2, 3, 4, 5, 7)]
    assert "invalid JSON" in bad[f"{source}:2"] and "missing field 'story'" in bad[f"{source}:3"]
    assert "empty story" in bad[f"{source}:4"] and "not valid UTF-8 (byte 0xe9" in bad[f"{source}:5"]
    assert "expected a JSON object" in bad[f"{source}:7"]
    assert (
        report["bad_input_examples"][0]
        == f"data error: {source}:2: invalid JSON (Expecting ',' delimiter at column 33)"
    )


def test_stop_on_bad_input_exits_with_one_line_and_keeps_what_was_written(tmp_path, server):
    source = messy_jsonl(tmp_path / "messy.jsonl")
    out = tmp_path / "out"
    proc = run_cli(
        [
            "-m",
            "arastory.translate",
            f"source={source}",
            f"out={out}",
            "translator=openai",
            f"translator.base_url={server.base_url}",
            "on_bad_input=stop",
            "batch_size=1",
        ]
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert (
        proc.stderr.strip().splitlines()[-1]
        == f"data error: {source}:2: invalid JSON (Expecting ',' delimiter at column 33)"
    )
    assert [r["id"] for r in read_jsonl(out / "parallel.jsonl")] == ["messy-0"], "the row before the bad line is kept"
    assert json.loads((out / "report.json").read_text())["status"].startswith(f"stopped: data error: {source}:2")


def test_csv_with_multiline_stories_bad_encoding_and_a_missing_column(tmp_path, server):
    source = tmp_path / "stories.csv"
    # lines: 1 header, 2-3 a quoted two-line story, 4 Latin-1 bytes, 5 fine, 6 a column short
    source.write_bytes(
        'id,Prompt,Story\nA,"P, one.","Line one.\nLine two."\nB,P2.,"caf\xe9"\nC,P3.,S3.\nD,P4.\n'.encode("latin-1")
    )
    report = run(source, tmp_path / "out", server)
    rows = {r["id"]: r for r in read_jsonl(tmp_path / "out" / "parallel.jsonl")}
    assert sorted(rows) == ["A", "C"] and rows["A"]["en_story"] == "Line one.\nLine two."
    assert rows["A"]["en_prompt"] == "P, one." and rows["A"]["ar_story"] == "ترجمة[Line one.\nLine two.]"
    bad = [row["where"] for row in read_jsonl(tmp_path / "out" / "bad_input.jsonl")]
    assert bad == [f"{source}:4", f"{source}:6"] and report["skipped_bad_input"] == 2

    no_story = tmp_path / "no_story.csv"
    no_story.write_text("id,Prompt,Body\nA,P.,S.\n", encoding="utf-8")
    with pytest.raises(DataError, match=rf"{no_story}:1: missing column one of story, text, Story, en_story"):
        run(no_story, tmp_path / "out2", server)


def test_story_only_parquet_and_saved_dataset_sources(tmp_path, server):
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    texts = ["Once upon a time there was a cat.", "", "A dog ran fast."]
    pq.write_table(pa.table({"text": texts}), tmp_path / "tiny.parquet")
    report = run(tmp_path / "tiny.parquet", tmp_path / "out", server)
    rows = read_jsonl(tmp_path / "out" / "parallel.jsonl")
    assert [r["id"] for r in rows] == ["tiny-0", "tiny-2"] and report["skipped_bad_input"] == 1
    assert rows[0]["en_prompt"] == "Write a short story for young children." and rows[0]["meta"]["prompt"] == "fixed"
    assert rows[0]["ar_prompt"] == "اكتب قصة قصيرة للأطفال الصغار." and rows[0]["ar_story"] == f"ترجمة[{texts[0]}]"
    assert len(server.requests) == 2, "a fixed prompt costs no request"

    saved = tmp_path / "TinyStories"
    datasets.DatasetDict(
        {"validation": datasets.Dataset.from_dict({"text": texts[:1], "prompt": ["Ignored."]})}
    ).save_to_disk(saved)
    report = run(saved, tmp_path / "out3", server, "split=validation", "fields.story=text", "fields.story_only=true")
    row = read_jsonl(tmp_path / "out3" / "parallel.jsonl")[0]
    assert row["id"] == "TinyStories-validation-0" and row["en_prompt"] == "Write a short story for young children."
    with pytest.raises(ConfigError, match="split: 'train' is not one of the splits"):
        run(saved, tmp_path / "out4", server)


def test_limit_reads_a_prefix_and_a_larger_limit_continues_it(tmp_path, server):
    source = tmp_path / "en.jsonl"
    source.write_text("".join(json.dumps({"prompt": f"P{i}.", "story": f"S{i}."}) + "\n" for i in range(5)))
    assert run(source, tmp_path / "out", server, "limit=2")["translated"] == 2
    report = run(source, tmp_path / "out", server, "limit=4")
    assert (report["already_done"], report["translated"], report["rows_in_output"]) == (2, 2, 4)
    with pytest.raises(
        ConfigError, match=r"config error: out: .* holds translations of .*en\.jsonl by openai:gpt-4o-mini"
    ):
        run(source, tmp_path / "out", server, "translator.model=gpt-4o")


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["translator=deepl"], "config error: translator: 'deepl' is not one of: google, hf, identity, openai"),
        (["on_bad_input=ignore"], "config error: on_bad_input: 'ignore' is not one of: skip, stop"),
        (["source=/nonexistent/stories.jsonl"], "config error: source: '/nonexistent/stories.jsonl' does not exist"),
        (
            ["translator=openai", "translator.api_key_env=ARASTORY_TEST_UNSET_KEY"],
            "config error: ARASTORY_TEST_UNSET_KEY: is not set: "
            "`export ARASTORY_TEST_UNSET_KEY=...`, or use translator=hf",
        ),
    ],
)
def test_bad_configuration_is_one_line_and_exit_2(tmp_path, overrides, message):
    proc = run_cli(["-m", "arastory.translate", f"out={tmp_path}/out", *overrides])
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == message

"""Every file-taking command over the bad-input corpus (tests/bad_inputs.py): each case is a one-line error naming the
file (exit 2) or a counted skip; never a traceback, never a hang, never silent acceptance of invalid data.

The library entry points run in one worker process per command (all six at once), so 331 command x input runs cost
about a minute; a representative subset also goes through the real command lines.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bad_inputs import COMMANDS, EITHER, INVALID, VALID, case_ids
from tests.conftest import REPO, run_cli
from tests.openai_server import OpenAIServer, Reply

WORKER_TIMEOUT = 900  # the whole corpus for one command; each case also has its own alarm (a hang is a result)


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict[str, dict[str, dict]]:
    corpus = tmp_path_factory.mktemp("corpus")
    procs = {}
    for command in COMMANDS:
        out = corpus / f"{command}.json"
        procs[command] = (
            out,
            subprocess.Popen(
                [sys.executable, "-m", "tests.bad_inputs", command, str(corpus), str(out)],
                cwd=REPO,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            ),
        )
    found = {}
    for command, (out, proc) in procs.items():
        _, stderr = proc.communicate(timeout=WORKER_TIMEOUT)
        assert proc.returncode == 0, f"the {command} worker itself failed:\n{stderr[-3000:]}"
        found[command] = {r["case"]: r for r in json.loads(out.read_text(encoding="utf-8"))}
    return found


@pytest.mark.parametrize("command,case", [(c, n) for c in COMMANDS for n in case_ids(c)])
def test_bad_input_is_a_one_line_error_or_a_counted_skip(results, command, case):
    result = results[command][case]
    assert result["outcome"] not in ("traceback", "hang"), result
    if result["expect"] == VALID:
        assert result["outcome"] == "ok" and result["skipped"] == 0, result
    elif result["outcome"] == "error":
        message = result["message"]
        assert "\n" not in message and len(message) < 600, message
        assert Path(result["path"]).name in message, f"the message does not name the file: {message}"
        assert result["exit_code"] == 2, result
    elif result["expect"] == INVALID:
        assert result["skipped"] >= 1, f"invalid data accepted silently: {result}"
    else:
        assert result["expect"] == EITHER


def test_the_corpus_is_the_issue_list_and_more():
    names = {n for c in COMMANDS for n in case_ids(c)}
    assert len(names) >= 60 and sum(len(case_ids(c)) for c in COMMANDS) >= 300
    for needed in (
        "truncated_utf8_tail",
        "bad_byte_mid_file",
        "utf16_bom",
        "latin1_line",
        "json_array_one_line",
        "huge_line_50mb",
        "empty_file",
        "empty_directory",
        "directory_as_file",
        "symlink_loop",
        "unreadable_file",
        "csv_unclosed_quote",
        "bom_first_line",
        "unknown_variety",
        "duplicate_ids",
        "nan_cell",
        "english_labelled_egy",
        "long_text_20mb",
        "fifo",
    ):
        assert needed in names


# --- the same kind of input through the real command lines -------------------------------------------------
@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    from tests.bad_inputs import CASES, good_rows, lines

    where = tmp_path_factory.mktemp("cli-inputs")
    built = {}
    for name, schema in [
        ("directory_as_file", "parallel"),
        ("truncated_utf8_tail", "english"),
        ("csv_utf16", "story"),
        ("unknown_variety", "prompt"),
    ]:
        case = next(c for c in CASES if c.name == name)
        (where / schema / name).mkdir(parents=True)
        built[name] = case.build(where / schema / name, schema)
    built["good_english"] = where / "good.jsonl"
    built["good_english"].write_bytes(lines(good_rows("english")))
    return built


@pytest.fixture(scope="module")
def server():
    with OpenAIServer(lambda n, body: Reply("ترجمة قصيرة")) as running:
        yield running


def cli(args: list[str], **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HYDRA_FULL_ERROR": "0", "OPENAI_API_KEY": "test-key-corpus", **env},
    )


def one_line_error(proc: subprocess.CompletedProcess, expected: str) -> None:
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines()[-1] == expected


def test_cli_filter_given_a_directory(files, tmp_path):  # D7
    proc = cli(
        [
            "-m",
            "arastory.filter",
            f"input={files['directory_as_file']}",
            "encoder=lexicon",
            "wandb.mode=disabled",
            f"out={tmp_path}",
        ]
    )
    one_line_error(proc, f"data error: {files['directory_as_file']}: is a directory, not a file")


def test_cli_translate_counts_a_killed_writers_tail_and_finishes(files, server, tmp_path):  # D1 through the CLI
    proc = cli(
        [
            "-m",
            "arastory.translate",
            f"source={files['truncated_utf8_tail']}",
            "translator=openai",
            f"translator.base_url={server.base_url}",
            f"out={tmp_path}",
        ]
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "translated 25 (already done 0, failed 0, skipped bad input 1, too long 0)" in proc.stdout
    bad = [json.loads(line) for line in (tmp_path / "bad_input.jsonl").read_text().splitlines()]
    assert bad == [
        {
            "where": f"{files['truncated_utf8_tail']}:26",
            "error": f"data error: {files['truncated_utf8_tail']}"
            ":26: truncated last line (no newline at the end: an interrupted write?)",
        }
    ]


def test_cli_synthesize_with_utf16_labelled_text(files, server, tmp_path):
    proc = cli(
        [
            "-m",
            "arastory.synthesize",
            "n=2",
            f"out={tmp_path}",
            f"generator.base_url={server.base_url}",
            f"dialect_id.source={files['csv_utf16']}",
        ]
    )
    one_line_error(proc, f"data error: {files['csv_utf16']}:1: is UTF-16 or UTF-32 encoded; save it as UTF-8")
    assert server.requests == [] or all("messages" in r for r in server.requests)


def test_cli_train_with_a_directory_as_its_translated_data(files, tmp_path):  # D7 (an empty file, D14: in-process)
    proc = run_cli(
        [
            "train.py",
            "logger=csv",
            "strategy=sequential",
            f"data.translated.path={files['directory_as_file']}",
            f"hydra.run.dir={tmp_path}",
        ],
        timeout=300,
    )
    one_line_error(proc, f"data error: {files['directory_as_file']}: is a directory, not a file")


def test_cli_evaluate_with_an_unknown_variety(files, server, tmp_path):  # D10
    proc = cli(
        [
            "evaluate.py",
            f"prompts={files['unknown_variety']}",
            "system=openai",
            f"system.base_url={server.base_url}",
            "judge=none",
            f"out={tmp_path}",
        ]
    )
    one_line_error(proc, f"data error: {files['unknown_variety']}:13: variety 'klingon' is not one of: msa, egy, mor")

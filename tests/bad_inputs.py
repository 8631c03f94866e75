"""The bad-input corpus (60 cases) and a worker that runs one command's library entry point over all of them.

    python -m tests.bad_inputs <command> <corpus dir> <results.json>

Each case is built for the schema the command reads (stories, parallel pairs, English sources, evaluation prompts)
from a few bundled rows plus one defect. The worker runs every case in this one process (a CLI start costs seconds),
each under an alarm, and records the outcome: `ok` (n records skipped and counted), `error` (an ArastoryError: its
message and exit code), `traceback` (any other exception) or `hang` (the alarm fired). tests/test_bad_inputs.py
judges the outcomes; the same worker runs unchanged against older checkouts to measure before/after.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import signal
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from arastory.paths import BUNDLED_DIR

GOOD_ROWS = 25  # one bad record among 26 stays under the default 5% failure budgets (a counted skip)
HANG_SECONDS = 60  # a case that runs longer than this is reported as a hang
VALID, INVALID, EITHER = "valid", "invalid", "either"  # must succeed with 0 skips / must error or skip / no crash
SCHEMAS = ("story", "parallel", "english", "prompt")
COMMANDS = {  # command -> (schema, accepts a released-format CSV, accepts a folder of files)
    "train.synthetic": ("story", True, True),  # python train.py data.synthetic.path=...
    "train.translated": (
        "parallel",
        False,
        False,
    ),  # python train.py data.translated.path=... data.filter.enabled=false
    "filter": ("parallel", False, False),  # python -m arastory.filter input=...
    "translate": ("english", True, True),  # python -m arastory.translate source=...
    "synthesize": ("story", True, True),  # python -m arastory.synthesize dialect_id.source=...
    "evaluate": ("prompt", False, False),  # python evaluate.py prompts=...
}


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def good_rows(schema: str, n: int = GOOD_ROWS) -> list[dict]:
    """Valid rows of a schema, from the bundled corpus (MSA: the dialect-label check is about dialects)."""
    if schema in ("story", "prompt"):
        stories = _jsonl(BUNDLED_DIR / "stories_msa.jsonl")[:n]
        if schema == "prompt":
            return [{"id": f"p{i}", "variety": "msa", "prompt": s["prompt"]} for i, s in enumerate(stories)]
        return [{k: s[k] for k in ("id", "variety", "prompt", "story")} for s in stories]
    pairs = [p for p in _jsonl(BUNDLED_DIR / "parallel_en_ar.jsonl") if p.get("flaw") is None][:n]
    if schema == "english":  # story-only (as TinyStories): one request per item keeps the corpus quick
        return [{"id": p["id"], "story": p["en_story"]} for p in pairs]
    return [{k: p[k] for k in ("id", "en_prompt", "en_story", "ar_prompt", "ar_story")} for p in pairs]


TEXT_FIELD = {"story": "story", "parallel": "ar_story", "english": "story", "prompt": "prompt"}


def lines(rows: list[dict]) -> bytes:
    return b"".join(json.dumps(r, ensure_ascii=False).encode() + b"\n" for r in rows)


def with_bad(schema: str, **changes) -> bytes:
    """Good rows with one row changed (a field set, or removed when the value is ...) in the middle."""
    rows = good_rows(schema)
    bad = dict(rows[3], id="bad-record")  # its own id: the one defect is the one asked for
    for key, value in changes.items():
        key = TEXT_FIELD[schema] if key == "text" else key
        if value is ...:
            bad.pop(key, None)
        else:
            bad[key] = value
    return lines([*rows[:12], bad, *rows[12:]])


def released_csv(schema: str, rows: list[dict] | None = None) -> str:
    """The study's release format: an unnamed index, Prompt, Story; every field quoted."""
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=csv.QUOTE_ALL, lineterminator="\n")
    writer.writerow(["", "Prompt", "Story"])
    for i, row in enumerate(rows if rows is not None else good_rows(schema)):
        writer.writerow([i, row.get("prompt", "Write a story."), row.get("story", "")])
    return buffer.getvalue()


@dataclass
class Case:
    name: str
    build: Callable[[Path, str], Path]  # (case dir, schema) -> the path handed to the command
    expect: str = INVALID
    schemas: tuple[str, ...] = SCHEMAS
    csv: bool = False  # a released-format CSV: only for commands that read them
    commands: tuple[str, ...] | None = None  # limited to these commands (None: every command of the schemas)


def file_case(
    name: str,
    content: Callable[[str], bytes],
    expect: str = INVALID,
    suffix: str = ".jsonl",
    schemas: tuple[str, ...] = SCHEMAS,
    commands=None,
) -> Case:
    def build(where: Path, schema: str) -> Path:
        path = where / f"{name}{suffix}"
        path.write_bytes(content(schema))
        return path

    return Case(name, build, expect, schemas, csv=suffix == ".csv", commands=commands)


def csv_case(name: str, text: Callable[[str], str | bytes], expect: str = INVALID) -> Case:
    """Released-format CSVs are named after a variety (the readers take it from the file name)."""

    def build(where: Path, schema: str) -> Path:
        path = where / f"{name}-MSA-prompts-stories.csv"
        data = text(schema)
        path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
        return path

    return Case(name, build, expect, ("story", "english"), csv=True)


def special_case(name: str, build: Callable[[Path, str], Path], expect: str = INVALID) -> Case:
    return Case(name, build, expect)


def _dir_named_like_file(where: Path, schema: str) -> Path:
    path = where / "data.jsonl"
    path.mkdir()
    (path / "part.txt").write_text("not data\n")
    return path


def _dir_of_files(where: Path, schema: str) -> Path:
    path = where / "folder"
    path.mkdir()
    (path / "part-1.jsonl").write_bytes(lines(good_rows(schema)[:12]))
    (path / "part-2.jsonl").write_bytes(lines(good_rows(schema)[12:]))
    return path


def _empty_dir(where: Path, schema: str) -> Path:
    (where / "empty-dir").mkdir()
    return where / "empty-dir"


def _symlink_loop(where: Path, schema: str) -> Path:
    (where / "loop-a.jsonl").symlink_to(where / "loop-b.jsonl")
    (where / "loop-b.jsonl").symlink_to(where / "loop-a.jsonl")
    return where / "loop-a.jsonl"


def _dangling(where: Path, schema: str) -> Path:
    (where / "dangling.jsonl").symlink_to(where / "gone.jsonl")
    return where / "dangling.jsonl"


def _fifo(where: Path, schema: str) -> Path:
    os.mkfifo(where / "fifo.jsonl")  # reading it would block forever
    return where / "fifo.jsonl"


def _unreadable(where: Path, schema: str) -> Path:
    path = where / "unreadable.jsonl"
    path.write_bytes(lines(good_rows(schema)))
    path.chmod(0)
    return path


def _missing(where: Path, schema: str) -> Path:
    return where / "no-such-file.jsonl"


def _huge_line(schema: str) -> bytes:
    """50 MB on one line: a JSON object whose text field is 50 MB (over the readers' 32 MiB line limit)."""
    rows = good_rows(schema)
    big = dict(rows[0], id="huge")
    big[TEXT_FIELD[schema]] = "x" * (50 << 20)
    return lines(rows[:12]) + json.dumps(big).encode() + b"\n" + lines(rows[12:])


def _long_text(schema: str) -> bytes:
    """One 20 MB story (D16: translate sent it as one request): over every length bound, under the line limit."""
    words = ("قصة " if schema != "english" else "story ") * (4 << 20)
    return with_bad(schema, id="long", text=words)


def _unclosed(text: str) -> str:
    """The first data row's closing quote removed: the csv module would merge the rows after it into that field."""
    end = text.index('"\n"1",')  # the end of record 0: its story's closing quote, then record 1
    return text[:end] + text[end + 1 :]


ROOT = os.geteuid() == 0  # root reads a chmod 000 file: the honest expectation is that it is read normally

CASES: list[Case] = [
    # bytes and encodings
    file_case("truncated_utf8_tail", lambda s: lines(good_rows(s)) + b'{"id": "cut", "x": "\xd9'),  # D1
    file_case("truncated_json_tail", lambda s: lines(good_rows(s)) + b'{"id": "cut", "story": "abc'),  # D13
    file_case("bad_byte_mid_file", lambda s: with_bad(s, id="BAD-BYTE").replace(b"BAD-BYTE", b"bad\xe9byte")),  # D2
    file_case(
        "latin1_line",
        lambda s: lines(good_rows(s)[:12]) + '{"id": "x", "t": "café"}\n'.encode("latin-1") + lines(good_rows(s)[12:]),
    ),
    file_case(
        "cp1256_file",
        lambda s: lines(good_rows(s)).decode().encode("cp1256", errors="replace"),
        schemas=("story", "parallel", "prompt"),
    ),  # English rows are plain ASCII in any code page
    file_case("utf16_bom", lambda s: lines(good_rows(s)).decode().encode("utf-16")),
    file_case("utf16_no_bom", lambda s: lines(good_rows(s)).decode().encode("utf-16-le")),
    file_case("utf32", lambda s: lines(good_rows(s)).decode().encode("utf-32")),
    file_case("bom_first_line", lambda s: b"\xef\xbb\xbf" + lines(good_rows(s)), expect=VALID),  # D12
    file_case("crlf_endings", lambda s: lines(good_rows(s)).replace(b"\n", b"\r\n"), expect=VALID),
    file_case("no_final_newline", lambda s: lines(good_rows(s)).rstrip(b"\n"), expect=VALID),
    file_case("nul_bytes", lambda s: b"\x00" * 4096),
    file_case("random_binary", lambda s: random.Random(0).randbytes(20000)),
    file_case("gzip_named_jsonl", lambda s: gzip.compress(lines(good_rows(s)))),
    file_case("huge_line_50mb", _huge_line),
    # JSON shapes
    file_case("json_array_one_line", lambda s: json.dumps(good_rows(s), ensure_ascii=False).encode()),
    file_case("json_array_pretty", lambda s: json.dumps(good_rows(s), ensure_ascii=False, indent=2).encode()),
    file_case(
        "pretty_object",
        lambda s: json.dumps(good_rows(s)[0], ensure_ascii=False, indent=2).encode() + b"\n" + lines(good_rows(s)[1:]),
    ),
    file_case("string_line", lambda s: with_bad(s).replace(lines([good_rows(s)[3]]), b'"just text"\n', 1)),
    file_case("number_line", lambda s: lines(good_rows(s)[:12]) + b"42\n" + lines(good_rows(s)[12:])),
    file_case("null_line", lambda s: lines(good_rows(s)[:12]) + b"null\n" + lines(good_rows(s)[12:])),
    file_case(
        "trailing_garbage", lambda s: lines(good_rows(s)[:12]) + b'{"id": "g"} trailing\n' + lines(good_rows(s)[12:])
    ),
    file_case("nan_literal", lambda s: lines(good_rows(s)[:12]) + b'{"id": NaN}\n' + lines(good_rows(s)[12:])),
    file_case(
        "deeply_nested",
        lambda s: (
            lines(good_rows(s)[:12]) + b'{"a": ' + b"[" * 100000 + b"]" * 100000 + b"}\n" + lines(good_rows(s)[12:])
        ),
    ),
    file_case(
        "control_char_in_string", lambda s: lines(good_rows(s)[:12]) + b'{"id": "a\x01b"}\n' + lines(good_rows(s)[12:])
    ),
    file_case("lone_surrogate", lambda s: with_bad(s, text="SURROGATE").replace(b"SURROGATE", b"\\ud800 broken")),
    # emptiness                                                                                              # D14
    file_case("empty_file", lambda s: b""),
    file_case("blank_lines_only", lambda s: b"\n  \n\t\n"),
    file_case("only_bad_lines", lambda s: b"{not json}\n{also not}\n"),
    # records
    file_case("missing_text_field", lambda s: with_bad(s, text=...)),
    file_case("empty_text", lambda s: with_bad(s, text="")),
    file_case("whitespace_text", lambda s: with_bad(s, text="   \n ")),
    file_case("nan_cell", lambda s: with_bad(s, text="NaN")),  # D9
    file_case("none_cell", lambda s: with_bad(s, text="None")),
    file_case("null_text", lambda s: with_bad(s, text=None)),
    file_case("number_text", lambda s: with_bad(s, text=42)),
    file_case("list_text", lambda s: with_bad(s, text=["a", "b"])),
    file_case("missing_id", lambda s: with_bad(s, id=...), schemas=("story", "parallel", "prompt")),
    file_case("nan_id", lambda s: with_bad(s, id="nan"), schemas=("story", "parallel", "prompt")),
    file_case("duplicate_ids", lambda s: with_bad(s, id=good_rows(s)[0]["id"])),  # D9
    file_case("unknown_variety", lambda s: with_bad(s, variety="klingon"), schemas=("story", "prompt")),  # D10
    file_case(
        "english_labelled_egy",
        lambda s: with_bad(
            s,
            variety="egy",  # D9
            text="Once upon a time a little cat lived in Cairo. " * 20,
        ),
        schemas=("story",),
    ),
    file_case(
        "english_in_arabic_side",
        lambda s: with_bad(s, text="The boy went home and slept well. " * 20),
        schemas=("parallel",),
    ),
    file_case(
        "arabic_as_english_source", lambda s: with_bad(s, text=good_rows("story")[0]["story"]), schemas=("english",)
    ),
    file_case(
        "duplicate_story", lambda s: with_bad(s, id="copy", text=good_rows(s)[0][TEXT_FIELD[s]]), schemas=("story",)
    ),
    file_case(
        "msa_labelled_egy",
        lambda s: lines([dict(r, variety="egy") for r in good_rows(s)]),
        schemas=("story",),
        commands=("train.synthetic",),
    ),
    file_case("long_text_20mb", _long_text, schemas=("story", "parallel", "english")),  # D16
    file_case("wrong_extension", lambda s: lines(good_rows(s)), suffix=".txt", expect=EITHER),
    # paths
    special_case("missing_file", _missing),
    special_case("directory_as_file", _dir_named_like_file),  # D7
    special_case("empty_directory", _empty_dir),
    special_case("folder_of_files", _dir_of_files, expect=EITHER),
    special_case("symlink_loop", _symlink_loop),
    special_case("dangling_symlink", _dangling),
    special_case("fifo", _fifo),
    special_case("unreadable_file", _unreadable, expect=VALID if ROOT else INVALID),
    # the study's CSV format
    csv_case("csv_bom", lambda s: "\ufeff" + released_csv(s), expect=VALID),  # D12
    csv_case("csv_unclosed_quote", lambda s: _unclosed(released_csv(s))),  # D11
    csv_case(
        "csv_nan_cells",
        lambda s: released_csv(s, [*good_rows(s)[:12], {"prompt": "NaN", "story": "None"}, *good_rows(s)[12:]]),
    ),
    csv_case("csv_missing_column", lambda s: released_csv(s).replace('"Story"', '"Text"', 1)),
    csv_case("csv_extra_column", lambda s: released_csv(s).replace('\n"3",', '\n"3","extra",', 1)),
    csv_case("csv_header_only", lambda s: ",Prompt,Story\n"),
    csv_case("csv_latin1_row", lambda s: released_csv(s).encode() + b'99,"caf\xe9","caf\xe9 story"\n'),
    csv_case("csv_utf16", lambda s: released_csv(s).encode("utf-16")),
]


def applicable(command: str) -> list[Case]:
    schema, reads_csv, _ = COMMANDS[command]
    return [
        c
        for c in CASES
        if schema in c.schemas and (reads_csv or not c.csv) and (c.commands is None or command in c.commands)
    ]


def case_ids(command: str) -> list[str]:
    return [c.name for c in applicable(command)]


# --- running one command's library entry point --------------------------------------------------------------
def run_train_synthetic(path: Path, work: Path) -> int:
    from arastory.data.sources import StorySource

    source = StorySource(path=str(path))
    source.load()
    return len(getattr(source, "skipped", []))


def run_train_translated(path: Path, work: Path) -> int:
    from arastory.data.sources import ParallelSource

    source = ParallelSource(path=str(path))
    source.load_pairs()
    return len(getattr(source, "skipped", []))


def run_filter(path: Path, work: Path) -> int:
    from arastory.filter.encoders import LexiconEncoder
    from arastory.filter.pipeline import Filter, FilterSettings

    report = Filter(path, work / "out", LexiconEncoder(), FilterSettings(plots=False, progress=False)).run()
    counts = report["counts"]
    return counts["input_errors"] + sum(counts["rejected_by_check"].values()) + counts["duplicate"]


def run_translate(path: Path, work: Path) -> int:
    from hydra import compose, initialize_config_dir

    from arastory.paths import CONF_DIR
    from arastory.translate.pipeline import translate

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(
            config_name="translate",
            overrides=[
                f"source={path}",
                f"out={work / 'out'}",
                "translator=openai",
                f"translator.base_url={SERVER.base_url}",
                "translator.backoff_base=0.01",
                "translator.backoff_max=0.05",
                "translator.max_retries=1",
            ],
        )
    report = translate(cfg)
    try:  # what the command line does after the report: the failure budget (absent in older checkouts)
        from arastory.translate.__main__ import check_budget
    except ImportError:
        check_budget = None
    if check_budget is not None:
        check_budget(report, cfg.max_failure_rate)
    return report["skipped_bad_input"] + report.get("skipped_too_long", 0) + report["duplicate_ids"]


def run_synthesize(path: Path, work: Path) -> int:
    """synthesize's file input: `dialect_id.source=<file or folder>`, the wrong-variety gate's labelled text."""
    from arastory.dialect.classifier import training_records

    training_records(str(path))
    return 0


def run_evaluate(path: Path, work: Path) -> int:
    from arastory.evaluate.prompts import load_prompts

    load_prompts(path)
    return 0


RUNNERS = {
    "train.synthetic": run_train_synthetic,
    "train.translated": run_train_translated,
    "filter": run_filter,
    "translate": run_translate,
    "synthesize": run_synthesize,
    "evaluate": run_evaluate,
}
SERVER = None


class Hang(BaseException):
    pass


def _alarm(signum, frame):
    raise Hang()


def run_case(command: str, case: Case, corpus: Path) -> dict:
    from arastory.errors import ArastoryError

    schema = COMMANDS[command][0]
    where = corpus / command / case.name
    where.mkdir(parents=True)
    path = case.build(where, schema)
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(HANG_SECONDS)
    started = time.perf_counter()
    try:
        skipped = RUNNERS[command](path, where)
        result = {"outcome": "ok", "skipped": skipped}
    except ArastoryError as error:
        result = {"outcome": "error", "message": str(error), "exit_code": getattr(error, "exit_code", 2)}
    except Hang:
        result = {"outcome": "hang"}
    except BaseException as error:
        result = {
            "outcome": "traceback",
            "message": f"{type(error).__name__}: {error}"[:500],
            "traceback": traceback.format_exc()[-1500:],
        }
    finally:
        signal.alarm(0)
        if path.exists() and not path.is_symlink():
            path.chmod(0o755 if path.is_dir() else 0o644)
    return {
        "case": case.name,
        "path": str(path),
        "expect": case.expect,
        **result,
        "seconds": round(time.perf_counter() - started, 2),
    }


def warm_up(command: str, corpus: Path) -> None:
    """Run the command once on good rows, outside any alarm: one-time costs (imports, building the dialect classifier
    that checks labels) belong to no case, and on a loaded machine they could otherwise pass for a hang."""
    where = corpus / "_warm_up" / command
    where.mkdir(parents=True, exist_ok=True)
    path = where / "good.jsonl"
    path.write_bytes(lines(good_rows(COMMANDS[command][0])))
    RUNNERS[command](path, where)


def main(command: str, corpus: str, out: str) -> None:
    import logging

    global SERVER
    logging.disable(logging.WARNING)  # the counted-skip warnings are for users; the results file holds the counts
    corpus_dir = Path(corpus)
    results = []
    if command == "translate":
        os.environ.setdefault("OPENAI_API_KEY", "test-key-bad-input-corpus")  # a local server; never a real key
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from tests.openai_server import OpenAIServer, Reply

        SERVER = OpenAIServer(lambda n, body: Reply("ترجمة: " + body["messages"][-1]["content"][:20])).__enter__()
    try:
        warm_up(command, corpus_dir)
        for case in applicable(command):
            results.append(run_case(command, case, corpus_dir))
    finally:
        if SERVER is not None:
            SERVER.__exit__(None, None, None)
    Path(out).write_text(json.dumps(results, ensure_ascii=False, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main(*sys.argv[1:4])

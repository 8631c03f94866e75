"""Byte-safe JSONL/CSV reading, the resumable appender, out-dir locks, failure budgets, redaction and fresh run dirs."""

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from arastory.budget import BudgetExceeded, check_failure_budget
from arastory.errors import DataError, LockError
from arastory.io import DirLock, JsonlAppender, iter_csv_records, iter_jsonl, iter_jsonl_entries, read_jsonl
from arastory.redact import REDACTED, looks_secret, redact, redact_override, scrub
from tests.conftest import REPO


def errors_of(path, **kwargs) -> tuple[list, list[str]]:
    errors: list = []
    rows = list(iter_jsonl(path, on_error="skip", errors=errors, **kwargs))
    return rows, [str(e) for e in errors]


def test_a_tail_cut_inside_a_utf8_character_is_a_counted_line_not_a_hang(tmp_path):
    """D1: a killed writer's half character at EOF made iter_jsonl loop forever at 100% CPU."""
    path = tmp_path / "t.jsonl"
    path.write_bytes(b'{"id":"a"}\n{"id":"b","t":"\xd9')
    script = textwrap.dedent(f"""
        from arastory.io import iter_jsonl
        errors = []
        print([row for _, row in iter_jsonl({str(path)!r}, on_error="skip", errors=errors)], [str(e) for e in errors])
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == (
        f"[{{'id': 'a'}}] ['data error: {path}:2: truncated last line (no newline at the end: an interrupted write?)']"
    )


def test_one_bad_byte_mid_file_costs_one_line_with_its_true_number(tmp_path):
    """D2: skip mode dropped everything after the bad byte and raise mode blamed line 1."""
    path = tmp_path / "t.jsonl"
    path.write_bytes(b'{"id":"a"}\n{"id":"b\xe9"}\n{"id":"c"}\n\n{"id":"d"}\n')
    rows, errors = errors_of(path)
    assert rows == [(1, {"id": "a"}), (3, {"id": "c"}), (5, {"id": "d"})]
    assert errors == [f"data error: {path}:2: not valid UTF-8 (byte 0xe9 at column 9); save the file as UTF-8"]
    with pytest.raises(DataError, match=r"t.jsonl:2: not valid UTF-8"):
        list(iter_jsonl(path))


def test_bom_crlf_and_a_complete_last_line_without_newline_are_fine(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"id":"a"}\r\n{"id":"b"}\r\n{"id":"c"}')
    assert read_jsonl(path) == [{"id": "a"}, {"id": "b"}, {"id": "c"}]


def test_bad_lines_name_what_is_wrong(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_bytes(
        b'{"id": 1,}\n"text"\n42\n{"id": NaN}\n' + b'{"a": "' + b"x" * 2000 + b'"}\n{"id":"ok"}\n{"id": "cut'
    )
    entries = list(iter_jsonl_entries(path, max_line_bytes=1024))
    assert [(n, str(e).split(": ", 2)[-1]) for n, e in entries if isinstance(e, DataError)] == [
        (1, "invalid JSON (Expecting property name enclosed in double quotes at column 10)"),
        (2, "expected a JSON object, found a string"),
        (3, "expected a JSON object, found a number"),
        (4, "invalid JSON (unexpected character, expected a JSON value at column 8)"),
        (5, "line longer than 1024 bytes (not one record?)"),
        (7, "truncated last line (no newline at the end: an interrupted write?)"),
    ]
    assert [e for _, e in entries if isinstance(e, dict)] == [{"id": "ok"}]


@pytest.mark.parametrize(
    "content,message",
    [
        ('{"id": "a"}\n'.encode("utf-16"), "is UTF-16 or UTF-32 encoded; save it as UTF-8"),
        ('{"id": "a"}\n'.encode("utf-16-le"), "holds NUL bytes: not a UTF-8 text file"),
        (b'[{"id": "a"}, {"id": "b"}]\n', "holds a JSON array, not JSON Lines"),
        (b'[\n  {"id": "a"}\n]\n', "holds a JSON array, not JSON Lines"),
    ],
)
def test_whole_file_problems_are_one_error_even_in_skip_mode(tmp_path, content, message):
    path = tmp_path / "t.jsonl"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message):
        errors_of(path)


def test_paths_that_are_not_readable_files_are_one_line_errors(tmp_path):
    (tmp_path / "dir.jsonl").mkdir()
    (tmp_path / "loop_a").symlink_to(tmp_path / "loop_b")
    (tmp_path / "loop_b").symlink_to(tmp_path / "loop_a")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    os.mkfifo(tmp_path / "fifo")  # opening a FIFO for reading would block forever
    cases = {
        "missing": "file not found",
        "dir.jsonl": "is a directory, not a file",
        "loop_a": "cannot read: too many levels of symbolic links (a symlink loop)",
        "dangling": "file not found (a dangling symlink)",
        "fifo": "is not a regular file (a pipe, socket or device?)",
    }
    for name, message in cases.items():
        with pytest.raises(DataError) as info:
            list(iter_jsonl(tmp_path / name, on_error="skip"))
        assert str(info.value) == f"data error: {tmp_path / name}: {message}"


def test_an_unreadable_file_is_an_error_unless_we_are_root(tmp_path):
    path = tmp_path / "locked.jsonl"
    path.write_text('{"id": "a"}\n')
    path.chmod(0)
    try:
        if os.geteuid() == 0:  # root reads a 000 file: then the honest outcome is that it is read
            assert read_jsonl(path) == [{"id": "a"}]
        else:
            with pytest.raises(DataError, match="cannot read: permission denied"):
                read_jsonl(path)
    finally:
        path.chmod(0o644)


def test_the_appender_cuts_a_partial_row_counts_it_and_keeps_a_whole_one(tmp_path, caplog):
    partial = tmp_path / "partial.jsonl"
    partial.write_bytes(b'{"id":"a"}\n{"id":"b","t":"\xd9')
    with JsonlAppender(partial) as out:
        assert out.trimmed_bytes == 16
        out.write({"id": "b"})
    assert read_jsonl(partial) == [{"id": "a"}, {"id": "b"}]
    assert "dropped a partial last line (16 bytes)" in caplog.text
    whole = tmp_path / "whole.jsonl"
    whole.write_bytes(b'{"id":"a"}\n{"id":"b"}')  # a reader counts b as done: it must not be cut
    with JsonlAppender(whole) as out:
        assert out.trimmed_bytes == 0
        out.write({"id": "c"})
    assert read_jsonl(whole) == [{"id": "a"}, {"id": "b"}, {"id": "c"}]


def test_csv_records_keep_multiline_fields_and_stop_at_an_unclosed_quote(tmp_path):
    """D11: an unclosed quote silently merged the following rows into one story."""
    good = tmp_path / "good.csv"
    good.write_bytes(
        '\ufeff,Prompt,Story\n0,"p0","line one\nline two"\n1,p1 "q" x,s1\n2,p2,caf\xe9\n'.encode().replace(
            "caf\xe9".encode(), b"caf\xe9"
        )
    )
    records = list(iter_csv_records(good))
    assert records[0] == (1, ["", "Prompt", "Story"])  # the BOM is not part of the first column's name
    assert records[1] == (2, ["0", "p0", "line one\nline two"]) and records[2] == (4, ["1", 'p1 "q" x', "s1"])
    assert isinstance(records[3][1], DataError) and "good.csv:5: not valid UTF-8" in str(records[3][1])
    broken = tmp_path / "broken.csv"
    broken.write_text(',Prompt,Story\n0,"p0","s0"\n1,"p1","s1 never closed\n2,p2,s2\n3,p3,s3\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"broken.csv:3: broken quoting in the record that starts on line 3"):
        list(iter_csv_records(broken))


HOLD_LOCK = """
import sys, time
from arastory.io import DirLock
lock = DirLock(sys.argv[1]).acquire()
print("locked", flush=True)
time.sleep(60)
"""


def test_a_second_writer_gets_one_line_naming_the_holder_and_a_dead_holder_is_taken_over(tmp_path):
    out = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(out)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(LockError) as info:
            DirLock(out).acquire()
        message = str(info.value)
        assert message.startswith(f"lock error: {out}: in use by another arastory process (pid {holder.pid}: ")
        assert "\n" not in message and info.value.exit_code == 2
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert f"pid {holder.pid}" in (out / ".arastory.lock").read_text()  # the dead holder's file is still there
    with DirLock(out):
        assert f"pid {os.getpid()}:" in (out / ".arastory.lock").read_text()
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match="is a file, not a directory"):
        DirLock(tmp_path / "file").acquire()


def test_failure_budget_messages_and_exit_codes():
    assert check_failure_budget("translate", 98, 2, 0.05) == "translate: 98 of 100 items succeeded, 2 did not (2.0%)"
    assert "nothing left to do" in check_failure_budget("translate", 0, 0, 0.05, already_done=7)
    with pytest.raises(BudgetExceeded) as info:
        check_failure_budget("translate", 0, 0, 0.05)
    assert info.value.exit_code == 2 and str(info.value) == "translate: no items to process: the input is empty"
    with pytest.raises(BudgetExceeded) as info:
        check_failure_budget("translate", 90, 10, 0.05)
    assert info.value.exit_code == 1 and "more than max_failure_rate=0.05; outputs so far are kept" in str(info.value)
    with pytest.raises(BudgetExceeded) as info:
        check_failure_budget("data", 0, 3, 0.5, failed_are_input=True, noun="records")
    assert info.value.exit_code == 2 and str(info.value).startswith(
        "data: 3 of 3 records unusable (100.0%): nothing usable"
    )


def test_secrets_are_found_by_shape_and_by_environment(monkeypatch):
    canary = "canary-" + "9f8e7d6c5b4a"
    monkeypatch.setenv("MY_SERVICE_API_KEY", canary)
    shaped = "sk-" + "A1b2C3d4E5f6G7h8J9k0"
    assert looks_secret(f"http://x/?k={canary}") and looks_secret(shaped) and not looks_secret("gpt-4o-mini")
    assert scrub(f"key {canary} and {shaped}") == f"key {REDACTED} and {REDACTED}"
    assert redact({"model": canary, "n": 3, "judge": {"api_key": "x", "list": [shaped]}}) == {
        "model": REDACTED,
        "n": 3,
        "judge": {"api_key": REDACTED, "list": [REDACTED]},
    }
    assert redact_override(f"+generator.api_key={canary}") == f"+generator.api_key={REDACTED}"
    assert redact_override("name=run1") == "name=run1"


def test_runs_started_in_the_same_second_get_their_own_dirs(tmp_path):
    script = textwrap.dedent("""
        import sys
        from arastory.cli import fresh_dir
        first = fresh_dir(sys.argv[1])
        assert fresh_dir(sys.argv[1]) == first   # Hydra resolves the run dir more than once: same answer
        print(first)
    """)
    base = str(tmp_path / "outputs" / "12-00-00")
    procs = [
        subprocess.Popen([sys.executable, "-c", script, base], cwd=REPO, stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    dirs = sorted(p.communicate(timeout=60)[0].strip() for p in procs)
    assert dirs == sorted([base, f"{base}_2", f"{base}_3", f"{base}_4"])


def test_one_wandb_id_per_run_dir_even_when_two_processes_ask_at_once(tmp_path):
    script = "import sys; from arastory.train.tracking import wandb_run_id; print(wandb_run_id(sys.argv[1]))"
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], cwd=REPO, stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    ids = {p.communicate(timeout=60)[0].strip() for p in procs}
    assert len(ids) == 1 and (tmp_path / "wandb_id.txt").read_text().strip() in ids
    assert [p.name for p in tmp_path.iterdir()] == ["wandb_id.txt"]  # no temporary file left behind

"""Test helper: the history rows of offline W&B runs, read from their .wandb files (W&B's LevelDB-style record log)."""

import json
import struct
from pathlib import Path

BLOCK = 32768
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def _records(path: Path):
    data = Path(path).read_bytes()
    pos, pending = 7, b""  # a 7-byte header (":W&B" magic and version) precedes the first block
    while pos + 7 <= len(data):
        left = BLOCK - pos % BLOCK
        if left < 7:  # a block's tail too short for a record header is padding
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if length == 0 and kind == 0:
            pos += left
            continue
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind == FULL:
            yield chunk
        elif kind == FIRST:
            pending = chunk
        elif kind == MIDDLE:
            pending += chunk
        elif kind == LAST:
            yield pending + chunk


def history(run_file: Path) -> list[dict]:
    """Every history row logged into one offline run file, values decoded from JSON."""
    from wandb.proto import wandb_internal_pb2

    rows = []
    for raw in _records(run_file):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(raw)
        if record.WhichOneof("record_type") == "history":
            rows.append(
                {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item}
            )
    return rows


def run_history(run_dir: Path) -> list[dict]:
    """The rows of all offline runs in a run dir (a resumed run writes one per process), oldest first."""
    rows = []
    for run_file in sorted(Path(run_dir).glob("wandb/offline-run-*/run-*.wandb")):
        rows += history(run_file)
    return rows


def steps_of(rows: list[dict], key: str) -> dict[int, list[float]]:
    """trainer/global_step → the values logged for `key` at that step (more than one where a resume replayed it)."""
    out: dict[int, list[float]] = {}
    for row in rows:
        if key in row:
            out.setdefault(int(row["trainer/global_step"]), []).append(float(row[key]))
    return out


def exit_codes(run_dir: Path) -> list[int]:
    """The exit codes the offline runs in a run dir were finished with (none for a run left open)."""
    from wandb.proto import wandb_internal_pb2

    codes = []
    for run_file in sorted(Path(run_dir).glob("wandb/offline-run-*/run-*.wandb")):
        for raw in _records(run_file):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(raw)
            if record.WhichOneof("record_type") == "exit":
                codes.append(record.exit.exit_code)
    return codes

"""What produced an eval dir (provenance.json): the system, its sampling and prompt set, and the judge; a rerun whose
stories would come from other settings stops with one line instead of mixing old and new results.

Judge changes never stop a run: judgments carry the judge's key, and another judge's rows are set aside and redone
(arastory.evaluate.judge.Judge.settle).
"""

from __future__ import annotations

import json
from pathlib import Path

from arastory.errors import ConfigError
from arastory.io import atomic_write_json, fingerprint, iter_jsonl

PROVENANCE = "provenance.json"


def generation_identity(system_identity: dict, sampling: dict | None, prompt_set: dict) -> dict:
    """Everything that determines the stories of an eval dir."""
    return {"system": system_identity, "sampling": sampling, "prompts": prompt_set}


def generation_key(identity: dict) -> str:
    return fingerprint(identity)


def read(out_dir: Path) -> dict:
    path = Path(out_dir) / PROVENANCE
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return {}


def write(out_dir: Path, generation: dict, judge: dict | None) -> dict:
    record = {"generation": generation, "generation_key": generation_key(generation), "judge": judge}
    atomic_write_json(Path(out_dir) / PROVENANCE, record)
    return record


def differences(old: object, new: object, prefix: str = "") -> list[str]:
    """'key: old → new' for each leaf that differs (nested dicts walked)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new), key=str):
            out += differences(old.get(key), new.get(key), f"{prefix}{key}.")
        return out
    return [] if old == new else [f"{prefix.rstrip('.')}: {_short(old)} → {_short(new)}"]


def _short(value) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def check_generation(out_dir: Path, generations_file: Path, identity: dict, sampling: dict | None) -> None:
    """Stop (one line) when `out_dir` already holds stories made by another system, sampling or prompt set."""
    if not generations_file.exists():
        return
    identity = json.loads(json.dumps(identity, default=str))  # as it reads back from provenance.json
    stored = read(out_dir).get("generation")
    if stored is not None:
        changed = differences(stored, identity)
    else:  # an eval dir from before provenance.json: its rows still record the sampling
        old = next(
            (row.get("meta", {}).get("sampling") for _, row in iter_jsonl(generations_file, on_error="skip")), None
        )
        changed = (
            differences({"sampling": old}, {"sampling": sampling}) if old is not None and sampling is not None else []
        )
    if changed:
        raise ConfigError(
            "out",
            f"'{out_dir}' holds stories made with other settings ({'; '.join(changed[:3])}); "
            "rerun with the same settings or use a new out=",
        )

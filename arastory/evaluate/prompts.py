"""Fresh evaluation prompts: sampled per variety, seeded, disjoint from the training run's prompts, saved as JSONL.

A prompt's identity is its `prompt_key`: a hash of its variety and its text (whitespace collapsed), never its id, so
comparisons pair two systems' stories only when they answered the very same prompt.
"""

from __future__ import annotations

from pathlib import Path

from arastory.data.validate import prompt_row_problem
from arastory.errors import ConfigError, DataError
from arastory.io import atomic_write_jsonl, fingerprint, iter_jsonl
from arastory.prompts import PromptSampler
from arastory.text import normalize_for_hash

PROMPT_FIELDS = ("id", "variety", "prompt", "features", "prompt_key")


def prompt_key(variety: str, prompt: str) -> str:
    """The identity of a prompt: its variety and its exact text (whitespace runs collapsed)."""
    return fingerprint("prompt", variety, " ".join(str(prompt).split()))


def prompt_set_hash(rows: list[dict]) -> str:
    """The identity of a prompt set: its prompts' keys with their ids, in order."""
    return fingerprint([(row["id"], prompt_key(row["variety"], row["prompt"])) for row in rows])


def sample_eval_prompts(
    varieties: list[str],
    n_per_variety: int,
    seed: int,
    exclude: set[str],
    p_optional: float | None = None,
    max_tries_factor: int = 50,
) -> list[dict]:
    """`n_per_variety` distinct prompts per variety, normalized text not in `exclude` (resampled on collision)."""
    if n_per_variety <= 0:
        raise ConfigError("n_per_variety", f"must be a positive integer, got {n_per_variety}")
    rows = []
    for variety in varieties:
        sampler = PromptSampler(variety, p_optional=p_optional, seed=_variety_seed(seed, variety))
        taken: set[str] = set()
        tries = 0
        while len(taken) < n_per_variety:
            tries += 1
            if tries > n_per_variety * max_tries_factor:
                raise ConfigError(
                    "n_per_variety",
                    f"could not sample {n_per_variety} fresh {variety} prompts "
                    f"that avoid the training prompts ({len(taken)} found)",
                )
            features = sampler.sample_features()
            prompt = sampler.render(features)
            key = normalize_for_hash(prompt)
            if key in exclude or key in taken:
                continue  # shared with training, or a repeat: draw again
            taken.add(key)
            rows.append(
                {
                    "id": f"eval-{variety}-{len(taken) - 1:04d}",
                    "variety": variety,
                    "prompt": prompt,
                    "features": features,
                    "prompt_key": prompt_key(variety, prompt),
                }
            )
    return rows


def _variety_seed(seed: int, variety: str) -> int:
    """One stream per variety, so adding a variety never changes another's prompts."""
    return seed * 1000 + sum(ord(c) for c in variety)


def save_prompts(path: str | Path, rows: list[dict]) -> None:
    atomic_write_jsonl(
        path,
        [
            {**{k: row.get(k) for k in PROMPT_FIELDS}, "prompt_key": prompt_key(row["variety"], row["prompt"])}
            for row in rows
        ],
    )


def load_prompts(path: str | Path) -> list[dict]:
    """A saved prompts.jsonl (or any JSONL with id, variety, prompt); file:line errors for bad rows."""
    if Path(path).is_dir():
        raise DataError(path, "is a directory; give a prompts.jsonl file")
    rows, ids = [], set()
    for lineno, row in iter_jsonl(path):
        problem = prompt_row_problem(row)  # missing/NaN fields, unknown variety
        if problem:
            raise DataError(path, problem, lineno)
        if not all(isinstance(row[k], str) for k in ("id", "variety", "prompt")):
            raise DataError(path, "id, variety and prompt must be strings", lineno)
        if row["id"] in ids:
            raise DataError(path, f"duplicate id '{row['id']}'", lineno)
        ids.add(row["id"])
        rows.append(
            {
                "id": row["id"],
                "variety": row["variety"],
                "prompt": row["prompt"],
                "features": row.get("features") or {},
                "prompt_key": prompt_key(row["variety"], row["prompt"]),
            }
        )
    if not rows:
        raise DataError(path, "no prompts")
    return rows


def check_disjoint(rows: list[dict], exclude: set[str], path: str | Path) -> None:
    """A reused prompt set must not share a prompt with the training data either."""
    shared = [row["id"] for row in rows if normalize_for_hash(row["prompt"]) in exclude]
    if shared:
        raise DataError(path, f"{len(shared)} prompt(s) also occur in the run's training data, e.g. '{shared[0]}'")

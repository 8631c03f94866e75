"""Write one story per eval prompt into generations.jsonl, appending as it goes; a rerun skips the ids already there.

Over-long prompts are skipped and counted (limits.max_prompt_chars, and limits.max_prompt_tokens for local models),
so a 100k-character prompt never reaches a model; a refused API key (401/403) stops the run at once.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm.auto import tqdm

from arastory.io import JsonlAppender, fingerprint
from arastory.llm.client import LLMAuthError, LLMError
from arastory.llm.resumable import done_keys, run_resumable

if TYPE_CHECKING:
    from arastory.evaluate.systems import LocalGenerator, Sampling, StoryGenerator, VLLMGenerator

log = logging.getLogger(__name__)


def generation_row(prompt: dict, system_name: str, result: dict, extra_meta: dict) -> dict:
    return {
        "id": prompt["id"],
        "system": system_name,
        "variety": prompt["variety"],
        "prompt": prompt["prompt"],
        "prompt_key": prompt.get("prompt_key"),
        "features": prompt.get("features") or {},
        "story": result["story"],
        "meta": {**extra_meta, **result["meta"]},
    }


def too_long(generator: StoryGenerator, prompt: str, limits: dict) -> str | None:
    """Why `prompt` is skipped, or None. Characters first: a huge prompt is never even tokenized whole."""
    max_chars, max_tokens = limits.get("max_prompt_chars"), limits.get("max_prompt_tokens")
    if max_chars and len(prompt) > max_chars:
        return f"prompt longer than limits.max_prompt_chars={max_chars}"
    if max_tokens and hasattr(generator, "prompt_tokens") and generator.prompt_tokens(prompt) > max_tokens:
        return f"prompt longer than limits.max_prompt_tokens={max_tokens}"
    return None


def generate_all(
    generator: StoryGenerator,
    prompts: list[dict],
    out_path: str | Path,
    sampling: Sampling,
    meta: dict | None = None,
    limits: dict | None = None,
) -> dict:
    """Generate the missing stories; returns counts {total, already_done, generated, failed, skipped_long, seconds}.

    `meta` (the generation key, sampling) is stored with every row so a rerun can tell which settings made it.
    """
    out_path = Path(out_path)
    finished = done_keys(out_path, "id")
    todo = [p for p in prompts if p["id"] not in finished]
    counts: dict[str, int | float] = {
        "total": len(prompts),
        "already_done": len(prompts) - len(todo),
        "generated": 0,
        "failed": 0,
        "skipped_long": 0,
    }
    if generator.kind != "file":
        skipped = [(p, too_long(generator, p["prompt"], limits or {})) for p in todo]
        todo = [p for p, why in skipped if why is None]
        counts["skipped_long"] = sum(1 for _, why in skipped if why)
        if counts["skipped_long"]:
            first = next(f"{p['id']}: {why}" for p, why in skipped if why)
            log.info(f"skipped {counts['skipped_long']} over-long prompt(s), e.g. {first}")
    start = time.perf_counter()
    meta = {**generator.meta, "sampling": sampling.as_dict(), **(meta or {})}
    if not todo:
        pass  # every story is there already
    elif generator.kind == "file":
        with JsonlAppender(out_path) as out:
            for prompt in todo:
                out.write(generation_row(prompt, generator.name, generator.story(prompt["id"]), meta))
        counts["generated"] = len(todo)
    elif generator.kind == "api":
        stats = run_resumable(
            todo,
            "id",
            lambda p: generation_row(p, generator.name, generator.generate_one(p["prompt"], sampling), meta),
            out_path,
            concurrency=generator.concurrency,
            desc=f"generate ({generator.name})",
            fail_fast=(LLMAuthError,),
        )
        counts.update(generated=stats.done, failed=stats.failed)
        if stats.done == 0 and stats.failed:
            raise LLMError(f"generation failed for every prompt, e.g. {stats.errors[0]} (see {out_path}.errors.jsonl)")
    else:
        counts["generated"] = _generate_local(generator, todo, out_path, sampling, meta)
    counts["seconds"] = round(time.perf_counter() - start, 2)
    return counts


def _generate_local(
    generator: LocalGenerator | VLLMGenerator, todo: list[dict], out_path: Path, sampling: Sampling, meta: dict
) -> int:
    """Batches of similar prompt length (less padding); each batch's seed follows from its ids, so reruns agree."""
    ordered = sorted(todo, key=lambda p: len(p["prompt"]))
    size = max(1, int(getattr(generator, "batch_size", 8) or 8))
    done = 0
    with (
        JsonlAppender(out_path) as out,
        tqdm(total=len(ordered), desc=f"generate ({generator.name})", unit="story", dynamic_ncols=True) as bar,
    ):
        for begin in range(0, len(ordered), size):
            batch = ordered[begin : begin + size]
            seed = int(fingerprint(sampling.seed, [p["id"] for p in batch])[:8], 16)
            results = generator.generate([p["prompt"] for p in batch], sampling, seed)
            for prompt, result in zip(batch, results, strict=False):
                out.write(generation_row(prompt, generator.name, result, meta))
            done += len(batch)
            bar.update(len(batch))
    return done

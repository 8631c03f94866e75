"""The filter inside `python train.py`: `data.filter.*` applied to the translated pairs, with the held-out
synthetic stories as evaluation items for the leakage guard. Scores come from the shared cache, so a threshold
sweep encodes once."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import DictConfig

from arastory.data.readers import iter_parallel_jsonl
from arastory.data.stored import StoredStory, TextStore
from arastory.filter.build import build_encoder, encoder_config, settings_from_config
from arastory.filter.pipeline import KEPT, Filter
from arastory.records import StoryRecord

if TYPE_CHECKING:
    from arastory.data.sources import ParallelSource


def filter_enabled(data_cfg: DictConfig) -> bool:
    section = data_cfg.get("filter")
    return bool(section is not None and section.get("enabled", False))


def filter_translated(
    source: ParallelSource, filter_cfg: DictConfig, eval_records: list[StoryRecord], out_dir: str | Path | None = None
) -> tuple[list[StoredStory], dict]:
    """(the kept pairs' Arabic sides as training records, summary for metrics.json). The records stream from
    kept.jsonl with their texts kept on disk. Outputs go to `<out_dir>` (the run dir's filter/) or a temp dir."""
    settings = settings_from_config(filter_cfg, key="data.filter")
    encoder = build_encoder(
        encoder_config(filter_cfg.encoder, filter_cfg.get("encoder_args"), key="data.filter.encoder"),
        key="data.filter.encoder",
    )
    out = Path(out_dir) if out_dir else Path(tempfile.mkdtemp(prefix="arastory-filter-"))
    flt = Filter(
        source.input_path(),
        out,
        encoder,
        settings,
        eval_records=eval_records,
        encoder_name=filter_cfg.encoder if isinstance(filter_cfg.encoder, str) else None,
        settings_key="data.filter",
    )
    report = flt.run()
    store = TextStore()
    kept = [store.add(pair.as_story()) for pair in iter_parallel_jsonl(out / KEPT)] if report["counts"]["kept"] else []
    summary = {
        "threshold": report["threshold"],
        "encoder": report["encoder"],
        "counts": report["counts"],
        "cache": report["cache"],
        "out": str(out),
    }
    return kept, summary

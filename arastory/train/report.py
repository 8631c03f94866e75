"""Print what a training run produced: where it went, final metrics, throughput and one generated story."""

from __future__ import annotations

import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def print_summary(run_dir: str | Path, metrics: dict) -> None:
    run_dir = Path(run_dir)
    log.info(f"\nrun dir: {run_dir}")
    for stage in metrics["stages"]:
        log.info(
            f"  stage {stage['name']:<11} data={stage['data']:<10} steps={stage['global_step']:<6} "
            f"train_loss={stage['train_loss']}  val_loss={stage['val_loss']}"
        )
    final = metrics.get("final", {})
    per_variety = sorted({k.split("/")[1] for k in final if k.count("/") == 2})
    for variety in per_variety:
        log.info(
            f"  val {variety}: loss={final[f'val/{variety}/loss']:.4f}  ppl={final[f'val/{variety}/ppl']:.2f}  "
            f"bits/char={final.get(f'val/{variety}/bpc', float('nan')):.3f}"
        )
    log.info(f"  throughput: {metrics.get('throughput_tokens_per_s', 0):.0f} non-padding tokens/s (training)")
    samples_path = run_dir / "samples.jsonl"
    if samples_path.exists():
        lines = samples_path.read_text(encoding="utf-8").splitlines()
        if lines:
            sample = json.loads(lines[0])
            log.info(f"  sample ({sample['variety']}) for held-out prompt: {sample['prompt'][:120]}…")
            log.info(f"  → {sample['story'][:400]}")

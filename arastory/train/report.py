"""Print what a training run produced: where it went, final metrics, throughput and one generated story."""

from __future__ import annotations

import json
from pathlib import Path


def print_summary(run_dir: str | Path, metrics: dict) -> None:
    run_dir = Path(run_dir)
    print(f"\n[arastory] run dir: {run_dir}")
    for stage in metrics["stages"]:
        print(f"  stage {stage['name']:<11} data={stage['data']:<10} steps={stage['global_step']:<6} "
              f"train_loss={stage['train_loss']}  val_loss={stage['val_loss']}")
    final = metrics.get("final", {})
    per_variety = sorted({k.split("/")[1] for k in final if k.count("/") == 2})
    for variety in per_variety:
        print(f"  val {variety}: loss={final[f'val/{variety}/loss']:.4f}  ppl={final[f'val/{variety}/ppl']:.2f}  "
              f"bits/char={final.get(f'val/{variety}/bpc', float('nan')):.3f}")
    print(f"  throughput: {metrics.get('throughput_tokens_per_s', 0):.0f} non-padding tokens/s (training)")
    samples_path = run_dir / "samples.jsonl"
    if samples_path.exists():
        lines = samples_path.read_text(encoding="utf-8").splitlines()
        if lines:
            sample = json.loads(lines[0])
            print(f"  sample ({sample['variety']}) for held-out prompt: {sample['prompt'][:120]}…")
            print(f"  → {sample['story'][:400]}")

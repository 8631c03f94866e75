"""The training command's `debug` and `callbacks` config groups: what each option promises, on the tiny model."""

import csv
import json
from itertools import pairwise

from tests.conftest import FAST_TRAIN, run_cli


def test_fast_dev_run_trains_one_batch_and_still_finishes_the_run(tmp_path):
    run_dir = tmp_path / "run"
    proc = run_cli(["train.py", *FAST_TRAIN, "debug=fast_dev_run", f"out={run_dir}"], check=True)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["stages"][0]["global_step"] == 1  # one batch, although max_steps=3
    assert metrics["final"]["val/loss"] > 0  # validated
    stage_dir = run_dir / "stages" / "0_synthetic"
    assert not (stage_dir / "metrics.csv").exists()  # Lightning's fast_dev_run switches loggers off
    assert (run_dir / "adapter" / "adapter_model.safetensors").exists() and (run_dir / "samples.jsonl").exists()
    assert "Trainable params" in proc.stdout  # callbacks=default: the model summary


def test_callbacks_overrides_are_honoured_and_the_profiler_writes_into_the_stage_dir(tmp_path):
    run_dir = tmp_path / "run"
    proc = run_cli(
        [
            "train.py",
            *FAST_TRAIN,
            "strategy.stages.0.max_steps=2",
            "debug=profiler",
            "callbacks.model_summary=null",
            "+callbacks.lr_monitor._target_=pytorch_lightning.callbacks.LearningRateMonitor",
            f"out={run_dir}",
        ],
        check=True,
    )
    assert "Trainable params" not in proc.stdout  # model_summary=null dropped it
    stage_dir = run_dir / "stages" / "0_synthetic"
    with open(stage_dir / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert any(row.get("lr-AdamW") for row in rows)  # the added LearningRateMonitor logged
    profile = (stage_dir / "fit-profile.txt").read_text()
    assert "run_training_batch" in profile


def test_overfit_batches_trains_on_one_batch_every_epoch_and_its_loss_falls(tmp_path):
    run_dir = tmp_path / "run"
    run_cli(
        [
            "train.py",
            *FAST_TRAIN,
            "debug=overfit_batches",
            "strategy.stages.0.max_steps=6",
            "optim.warmup_steps=1",
            "sample.per_variety=0",
            f"out={run_dir}",
        ],
        check=True,
    )
    stage_dir = run_dir / "stages" / "0_synthetic"
    batches = [json.loads(line) for line in (stage_dir / "batches.jsonl").read_text().splitlines()]
    assert [b["epoch"] for b in batches] == list(range(6))  # one batch per epoch ...
    assert len({tuple(b["ids"]) for b in batches}) == 1  # ... the same one each time
    with open(stage_dir / "metrics.csv", newline="") as f:
        losses = [float(row["train/loss_step"]) for row in csv.DictReader(f) if row.get("train/loss_step")]
    assert len(losses) == 6 and all(b < a for a, b in pairwise(losses))

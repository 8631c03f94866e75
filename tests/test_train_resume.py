"""Exact resume: a run SIGKILLed anywhere (mid-epoch, during validation, at a stage boundary, during sampling) and
resumed equals the run that was never interrupted: adapters, batch order, CSV and W&B history, samples. Checkpoints
that do not belong to the run stop it with one line."""

import csv
import json
import multiprocessing
import os
import shutil
import signal
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from tests.conftest import run_cli
from tests.wandb_history import run_history, steps_of

SMALL = [
    "data.synthetic.size=6",
    "data.translated.size=6",
    "batch_size=2",
    "data.max_length=144",
    "sample.max_new_tokens=4",
    "trainer.enable_progress_bar=false",
    "trainer.log_every_n_steps=1",
]
# Two stages, AdamW carried across them, default dropout (0.05), 3 batches per epoch, a checkpoint every 2 steps:
# stage 0 checkpoints at steps 2, 4 (mid-epoch) and 6 (an epoch's last batch: saved after that epoch's validation).
CHAIN = [
    *SMALL,
    "strategy=sequential",
    "strategy.restart_optimizer=false",
    "dialect=egy",
    "logger=wandb",
    "strategy.stages.0.max_steps=7",
    "strategy.stages.1.max_steps=3",
    "checkpoint.every_n_steps=2",
    "sample.per_variety=2",
]
KILLS = [
    "validation:0:1",  # validating epoch 1 of stage 0 (last checkpoint: step 4, mid-epoch): replays 5, 6
    "step:0:7",  # after step 7 (last checkpoint: step 6, the end of epoch 1, after its validation)
    "boundary:1",  # stage 0 finished, stage 1 about to start from stage 0's adapter and AdamW state
    "sampling:1",
]  # writing the sample stories after training (one batch)
ADAPTERS = ["adapter", "stages/0_translated/adapter", "stages/1_synthetic/adapter"]


def max_diff(a: Path, b: Path) -> float:
    left, right = load_file(a / "adapter_model.safetensors"), load_file(b / "adapter_model.safetensors")
    assert left.keys() == right.keys()
    return max(float((left[k] - right[k]).abs().max()) for k in left)


def measured(key: str) -> bool:
    """A key of Lightning's ThroughputMonitor (rates, and counts that restart with each process): wall-clock facts
    that no two runs share, so histories are compared without them."""
    return key.startswith("train/") and (key[6:] in ("time", "batches", "samples", "lengths") or "_per_sec" in key)


def csv_rows(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        rows = [{k: v for k, v in row.items() if v != "" and not measured(k)} for row in csv.DictReader(handle)]
    return [row for row in rows if set(row) - {"step", "epoch"}]


def assert_same_history(a: Path, b: Path) -> None:
    """Every row once, in order, with the same keys and (to 1e-6) the same values."""
    left, right = csv_rows(a), csv_rows(b)
    assert [sorted(row) for row in left] == [sorted(row) for row in right], f"{b} has other rows than {a}"
    for x, y in zip(left, right, strict=False):
        assert all(abs(float(x[k]) - float(y[k])) <= 1e-6 for k in x), (x, y)


def train_here(overrides: list[str], run_dir: Path) -> None:
    """`python train.py OVERRIDES hydra.run.dir=RUN_DIR`, in this process (the uninterrupted reference runs)."""
    from hydra import compose, initialize_config_dir

    from arastory.cli import register_resolvers
    from arastory.paths import CONF_DIR
    from arastory.train.recipe import train

    register_resolvers()
    environ = dict(os.environ)
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        train(compose("train", overrides=overrides), run_dir)
    os.environ.clear()
    os.environ.update(environ)  # seed_everything's PL_* variables stay out of later subprocesses


def kill(point: str, run_dir: Path, overrides: list[str] | None = None) -> None:
    """Train (or, without overrides, resume) RUN_DIR in a child process, SIGKILL it at POINT (tests/kill_train.py)."""
    from tests.kill_train import train_then_die

    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["arastory.train.recipe", "tests.kill_train"])
    child = context.Process(target=train_then_die, args=(point, str(run_dir), overrides))
    child.start()
    child.join()
    assert child.exitcode == -signal.SIGKILL, f"{point}: the training process exited with {child.exitcode}"


def test_a_run_killed_anywhere_resumes_into_the_uninterrupted_run(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    train_here(CHAIN, a)
    kill(KILLS[0], b, CHAIN)
    wandb_id = (b / "wandb_id.txt").read_text().strip()
    for point in KILLS[1:]:
        kill(point, b)
    refused = run_cli(["train.py", f"resume={b}", "strategy.stages.0.max_steps=1"])
    assert refused.returncode == 2 and "resume: takes no other overrides" in refused.stderr
    resumed = run_cli(["train.py", f"resume={b}"], check=True)
    assert str(b) in resumed.stdout

    for adapter in ADAPTERS:
        assert max_diff(a / adapter, b / adapter) <= 1e-6, adapter
    for stage in ("0_translated", "1_synthetic"):
        assert (a / "stages" / stage / "batches.jsonl").read_text() == (
            b / "stages" / stage / "batches.jsonl"
        ).read_text()
        assert_same_history(a / "stages" / stage / "metrics.csv", b / "stages" / stage / "metrics.csv")
    assert (a / "samples.jsonl").read_text() == (b / "samples.jsonl").read_text()
    metrics_a, metrics_b = (json.loads((d / "metrics.json").read_text()) for d in (a, b))
    assert [s["resumed_from_step"] for s in metrics_b["stages"]] == [6, None]
    assert [s["examples"] for s in metrics_b["stages"]] == [6, 6], "3 batches per epoch, as the kill points assume"
    assert metrics_a["final"] == metrics_b["final"] and metrics_a["val_fingerprint"] == metrics_b["val_fingerprint"]

    # W&B: one run (id) across the five processes; every step of both stages on one run-wide axis, with the
    # uninterrupted run's values (steps a resume replayed appear again with the same value).
    assert (
        all(wandb_id in p.name for p in (b / "wandb").glob("offline-run-*"))
        and len(list((b / "wandb").glob("offline-run-*"))) == 5
    )
    loss_a, loss_b = steps_of(run_history(a), "train/loss_step"), steps_of(run_history(b), "train/loss_step")
    assert sorted(loss_a) == sorted(loss_b) == list(range(10)), "7 + 3 steps, stage 1 continuing at step 7"
    for step, (value,) in loss_a.items():
        assert all(abs(v - value) <= 1e-6 for v in loss_b[step]), step


# ----------------------------------------------------------------------------------- the issue's command shape
ISSUE = [
    "dialect=egy",
    "logger=csv",
    "peft.lora_dropout=0",
    "strategy.stages.0.max_steps=8",
    "checkpoint.every_n_steps=2",
    "sample.per_variety=0",
    *SMALL,
]


@pytest.fixture(scope="module")
def killed_after_first_checkpoint(tmp_path_factory):
    """(uninterrupted run dir, a run SIGKILLed right after its first checkpoint: copy it before resuming)."""
    root = tmp_path_factory.mktemp("issue")
    train_here(ISSUE, root / "a")
    kill("step:0:2", root / "killed", ISSUE)
    assert (root / "killed/stages/0_synthetic/checkpoints/last.ckpt").exists() and not (
        root / "killed/metrics.json"
    ).exists()
    return root / "a", root / "killed"


def test_issue_command_resumed_after_its_first_checkpoint_matches_without_dropout(
    killed_after_first_checkpoint, tmp_path
):
    a, killed = killed_after_first_checkpoint
    b = tmp_path / "b"
    shutil.copytree(killed, b)
    resumed = run_cli(["train.py", f"resume={b}"], check=True)
    assert f"resuming from {b / 'stages/0_synthetic/checkpoints/last.ckpt'} at step 2" in resumed.stdout
    assert max_diff(a / "adapter", b / "adapter") <= 1e-6
    assert (a / "stages/0_synthetic/batches.jsonl").read_text() == (b / "stages/0_synthetic/batches.jsonl").read_text()
    assert_same_history(a / "stages/0_synthetic/metrics.csv", b / "stages/0_synthetic/metrics.csv")


# Packed rows of 2 examples (6 examples of 144 tokens, 300 per row: 3 rows per epoch), default dropout, 5 steps.
PACKED = [
    *(o for o in ISSUE if not o.startswith(("peft.", "strategy."))),
    "strategy.stages.0.max_steps=5",
    "data.packing=true",
    "data.packing_max_tokens=300",
]


def test_a_packed_run_killed_mid_epoch_resumes_into_the_uninterrupted_run(tmp_path, caplog):
    import logging

    from omegaconf import OmegaConf

    from arastory.train.recipe import train

    a, b = tmp_path / "a", tmp_path / "b"
    train_here(PACKED, a)
    kill("step:0:3", b, PACKED)  # last checkpoint: step 2, one row before the end of epoch 0
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="arastory"):
        train(OmegaConf.load(b / "config.yaml"), b)  # what `train.py resume=B` runs, in this process (no start-up)
    resumed = caplog.text
    assert "packed into 3 rows of <= 300 tokens" in resumed and "at step 2" in resumed
    assert max_diff(a / "adapter", b / "adapter") <= 1e-6
    batches = (b / "stages/0_synthetic/batches.jsonl").read_text()
    assert (a / "stages/0_synthetic/batches.jsonl").read_text() == batches
    assert all(len(json.loads(line)["ids"]) == 2 for line in batches.splitlines()), "two examples per packed row"
    assert_same_history(a / "stages/0_synthetic/metrics.csv", b / "stages/0_synthetic/metrics.csv")
    stage = json.loads((b / "metrics.json").read_text())["stages"][0]
    assert stage["padding_fraction"] == 0.0 and stage["packed_rows"] == 3 and stage["global_step"] == 5


@pytest.mark.parametrize(
    "edit, differs",
    [
        (lambda cfg: cfg["peft"]["target_modules"].remove("o_proj"), "peft.target_modules"),
        (lambda cfg: cfg["data"]["synthetic"].update(size=5), "the training data changed since this checkpoint"),
    ],
)
def test_a_checkpoint_that_does_not_fit_the_run_stops_with_one_line(
    killed_after_first_checkpoint, tmp_path, edit, differs
):
    run_dir = tmp_path / "edited"
    shutil.copytree(killed_after_first_checkpoint[1], run_dir)
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    edit(config)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config, allow_unicode=True))
    refused = run_cli(["train.py", f"resume={run_dir}"])
    assert refused.returncode == 2, refused.stderr[-3000:]
    line = refused.stderr.strip().splitlines()[-1]
    assert (
        line.startswith(f"checkpoint error: {run_dir}/stages/0_synthetic/checkpoints/last.ckpt: ") and differs in line
    )
    assert "Traceback" not in refused.stderr and not (run_dir / "adapter").exists()


def test_strict_loading_refuses_missing_and_reshaped_adapter_tensors(tiny_tokenizer):
    from peft import LoraConfig

    from arastory.train.model import apply_lora, load_model
    from arastory.train.module import StoryLM
    from arastory.train.resume import CheckpointMismatch

    model = apply_lora(
        load_model(tiny_tokenizer.name_or_path, None, "float32"),
        LoraConfig(r=4, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"),
        quantized=False,
    )
    module = StoryLM(model, lr=1e-3)
    state = {k: v for k, v in module.state_dict().items() if k in module.trainable_shapes()}
    module.load_state_dict(state)  # exactly the trainable tensors: fine
    missing = dict(state)
    dropped = sorted(missing)[0]
    del missing[dropped]
    with pytest.raises(CheckpointMismatch, match=f"missing adapter tensors: {dropped}"):
        module.load_state_dict(missing)
    reshaped = {**state, dropped: torch.zeros(1, 1)}
    with pytest.raises(CheckpointMismatch, match="shape differs"):
        module.load_state_dict(reshaped)

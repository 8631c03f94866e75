"""Training on two CPU processes (DDP over gloo, `trainer=ddp_cpu`): the same batches and (within a stated tolerance)
the same validation loss as one process with the same global batch, one run dir written by rank 0 only, exact
resume after the whole process group is SIGKILLed, sequential stages, and SLURM-started ranks sharing one run dir.

Cost: three training launches (one process; two processes killed and resumed; two SLURM-started ranks), the
expensive part of this file; the rest fails before training or runs in-process."""

import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from tests.conftest import REPO, run_cli, wait_until

# Two stages (the sequential strategy, AdamW carried over), default dropout (0.05), 8 examples per stage,
# global batch 4 (2 per process), a checkpoint every 4 steps.
# Validation runs once per stage (its end), not every epoch: the numbers compared are the stages' final ones.
SMALL = [
    "dialect=egy",
    "strategy=sequential",
    "strategy.restart_optimizer=false",
    "strategy.stages.1.max_steps=2",
    "checkpoint.every_n_steps=4",
    "data.synthetic.size=8",
    "data.translated.size=8",
    "batch_size=4",
    "data.max_length=144",
    "sample.max_new_tokens=4",
    "trainer.enable_progress_bar=false",
    "trainer.log_every_n_steps=1",
    "trainer.check_val_every_n_epoch=1000",
]
ISSUE = ["trainer=ddp_cpu", "strategy.stages.0.max_steps=10", "logger=csv"]  # the issue's command shape
VAL_LOSS_TOLERANCE = 0.005  # ours: |final val/loss, 2 processes - 1 process|, same global batch, dropout 0.05
ADAPTERS = ["adapter", "stages/0_translated/adapter", "stages/1_synthetic/adapter"]
STAGES = ["0_translated", "1_synthetic"]


def metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def max_diff(a: Path, b: Path) -> float:
    left, right = load_file(a / "adapter_model.safetensors"), load_file(b / "adapter_model.safetensors")
    assert left.keys() == right.keys()
    return max(float((left[k] - right[k]).abs().max()) for k in left)


def kill_group_after_first_checkpoint(args: list[str], run_dir: Path) -> None:
    """`python train.py ARGS` (rank 0 and the worker it starts), SIGKILLed as a whole once a checkpoint exists."""
    proc = subprocess.Popen(
        [sys.executable, *args],
        cwd=REPO,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    checkpoint = run_dir / "stages" / STAGES[0] / "checkpoints" / "last.ckpt"
    try:
        wait_until(checkpoint.exists, proc, "its first checkpoint")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # rank 0 and its worker
    _, stderr = proc.communicate()
    assert proc.returncode == -signal.SIGKILL, (
        f"the run ended before it was killed ({proc.returncode}):\n{stderr[-3000:]}"
    )


def slurm_ranks(args: list[str], tasks: int = 2) -> list[subprocess.CompletedProcess]:
    """What `srun --ntasks=2 python train.py ARGS` starts: every task runs train.py with SLURM's variables."""
    env = {
        **os.environ,
        "HYDRA_FULL_ERROR": "0",
        "SLURM_NTASKS": str(tasks),
        "SLURM_NTASKS_PER_NODE": str(tasks),
        "SLURM_JOB_ID": "4242",
        "SLURM_JOB_NAME": "train",
        "SLURM_NODELIST": "localhost",
        "SLURM_NNODES": "1",
        "SLURM_JOB_NUM_NODES": "1",
        "SLURM_NODEID": "0",
    }
    procs = [
        subprocess.Popen(
            [sys.executable, *args],
            cwd=REPO,
            env={**env, "SLURM_PROCID": str(r), "SLURM_LOCALID": str(r)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in range(tasks)
    ]
    return [subprocess.CompletedProcess(p.args, p.wait(timeout=600), *p.communicate()) for p in procs]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """`one`: one process; `killed`: the issue's `trainer=ddp_cpu` command (arastory's worker launch, W&B offline),
    SIGKILLed after its first checkpoint and resumed; `slurm`: the same two ranks started as `srun` would, never
    interrupted (the reference for the exact resume)."""
    root = tmp_path_factory.mktemp("ddp")
    one, slurm, killed = root / "one", root / "slurm", root / "killed"
    run_cli(["train.py", *SMALL, "strategy.stages.0.max_steps=10", "logger=csv", f"hydra.run.dir={one}"], check=True)
    kill_group_after_first_checkpoint(["train.py", *SMALL, *ISSUE, "logger=wandb", f"hydra.run.dir={killed}"], killed)
    resumed = run_cli(["train.py", f"resume={killed}"], check=True)
    ranks = slurm_ranks(["train.py", *SMALL, *ISSUE, f"hydra.run.dir={slurm}"])
    return {"one": one, "slurm": slurm, "killed": killed, "resumed": resumed, "ranks": ranks, "root": root}


def test_two_processes_train_on_the_global_batch_of_one(runs):
    one, ddp = runs["one"], runs["killed"]
    m1, m2 = metrics(one), metrics(ddp)
    assert (m2["world_size"], m2["global_batch_size"], m2["per_device_batch_size"]) == (2, 4, 2)
    assert m1["world_size"] == 1 and [s["global_step"] for s in m2["stages"]] == [10, 2]
    for stage in STAGES:  # each step's global batch is the one a single process trains on
        assert (ddp / "stages" / stage / "batches.jsonl").read_text() == (
            one / "stages" / stage / "batches.jsonl"
        ).read_text()
    assert abs(m2["final"]["val/loss"] - m1["final"]["val/loss"]) <= VAL_LOSS_TOLERANCE
    # Reduced over both ranks' halves of the validation set, token-weighted: per-variety and overall numbers agree.
    assert set(m2["final"]) == set(m1["final"]) and m2["val_fingerprint"] == m1["val_fingerprint"]
    assert abs(m2["final"]["val/egy/bpc"] - m1["final"]["val/egy/bpc"]) <= VAL_LOSS_TOLERANCE


def test_rank_zero_writes_one_run_dir(runs):
    ddp, root = runs["killed"], runs["root"]
    assert sorted(p.name for p in root.iterdir()) == ["killed", "one", "slurm"], "no run dir of a worker's own"
    assert len(list(ddp.rglob("metrics.json"))) == 1
    assert sorted(str(p.relative_to(ddp)) for p in ddp.rglob("config.yaml")) == [
        ".hydra/config.yaml",
        ".hydra/resumed/config.yaml",
        "config.yaml",
    ], "rank 0's (and the resume's record)"
    assert len((ddp / "samples.jsonl").read_text().splitlines()) == 1
    assert sorted(p.name for p in (ddp / "stages" / STAGES[0] / "checkpoints").iterdir()) == ["last.ckpt"]
    with open(ddp / "stages" / STAGES[0] / "metrics.csv", newline="") as handle:
        losses = [int(row["step"]) for row in csv.DictReader(handle) if row.get("train/loss_step")]
    assert losses == list(range(10)), "one writer: each step's row once, across the kill"
    assert [
        json.loads(r)["step"] for r in (ddp / "stages" / STAGES[0] / "batches.jsonl").read_text().splitlines()
    ] == list(range(10))
    wandb_id = (ddp / "wandb_id.txt").read_text().strip()
    offline = list((ddp / "wandb").glob("offline-run-*"))
    assert len(offline) == 2 and all(wandb_id in p.name for p in offline), "one W&B run, logged by rank 0 only"


def test_killed_process_group_resumes_exactly(runs):
    slurm, killed = runs["slurm"], runs["killed"]
    assert "resuming from" in runs["resumed"].stdout
    assert any(s["resumed_from_step"] for s in metrics(killed)["stages"])
    for adapter in ADAPTERS:  # the uninterrupted two-process run, to float precision (each rank's RNG restored)
        assert max_diff(slurm / adapter, killed / adapter) <= 1e-6, adapter
    for stage in STAGES:
        assert (slurm / "stages" / stage / "batches.jsonl").read_text() == (
            killed / "stages" / stage / "batches.jsonl"
        ).read_text()


def test_slurm_tasks_share_one_run_dir(runs):
    slurm = runs["slurm"]
    assert [r.returncode for r in runs["ranks"]] == [0, 0], [r.stderr[-2000:] for r in runs["ranks"]]
    assert str(slurm) in runs["ranks"][0].stdout and "run dir" not in runs["ranks"][1].stdout
    assert len(list(slurm.rglob("metrics.json"))) == 1 and metrics(slurm)["world_size"] == 2


def test_slurm_tasks_without_a_shared_run_dir_stop_with_one_line():
    results = slurm_ranks(["train.py", "trainer=ddp_cpu", "logger=csv"])
    for result in results:
        assert result.returncode == 2 and result.stderr.strip().splitlines()[-1].startswith(
            "config error: hydra.run.dir:"
        )


def test_batch_size_must_split_over_the_processes(tmp_path):
    proc = run_cli(["train.py", "trainer=ddp_cpu", "batch_size=3", "logger=csv", f"hydra.run.dir={tmp_path / 'r'}"])
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "config error: batch_size: 3 does not split over 2 processes "
        "(trainer.devices x trainer.num_nodes): batch_size is the global "
        "batch; use a multiple of 2"
    )


def test_each_rank_gets_its_part_of_every_global_batch():
    from arastory.train.distributed import ShardedBatches, split_batch
    from arastory.train.sampler import ResumableSampler

    sampler = ResumableSampler(11, seed=3)
    order = sampler.epoch_order()
    parts = [ShardedBatches(sampler, 4, rank, 2).plan() for rank in range(2)]
    assert [g for g, _ in parts[0]] == [order[0:4], order[4:8], order[8:11]]  # one process's batches
    assert [p for _, p in parts[0]] == [order[0:2], order[4:6], order[8:10]]
    assert [p for _, p in parts[1]] == [order[2:4], order[6:8], order[10:11]]  # the last batch split 2 + 1
    assert split_batch(order[10:11], 2, order) == [[order[10]], [order[0]]], "a batch smaller than the world is padded"
    sampler.consumed = 8  # resumed after two steps
    assert [p for _, p in ShardedBatches(sampler, 4, 1, 2).plan()] == [order[10:11]]
    assert len(ShardedBatches(sampler, 4, 1, 2)) == 3, "Lightning counts the whole epoch's steps"


def test_gpu_trainers_on_a_cpu_machine_stop_with_one_line(monkeypatch):
    import torch
    from hydra import compose, initialize_config_dir

    from arastory.errors import ConfigError
    from arastory.paths import CONF_DIR
    from arastory.train.ranks import check_accelerator

    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        trainer = compose("train", overrides=["trainer=ddp"]).trainer
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a machine without a GPU, wherever this runs
    with pytest.raises(ConfigError) as error:
        check_accelerator(trainer)
    assert str(error.value) == (
        "config error: trainer.accelerator: 'gpu' but this machine has no CUDA GPU; use "
        "trainer=cpu (trainer=ddp_cpu for two CPU processes)"
    )

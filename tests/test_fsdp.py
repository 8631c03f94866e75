"""Training with FSDP on two CPU processes (`trainer=fsdp_cpu`, gloo, unquantized base): one run dir written by rank 0,
the validation loss of one process with the same global batch (within a stated tolerance), an adapter that peft loads,
a resumed stage; and the one-line refusals (a 4-bit base on the CPU, carried optimizer state).

Cost: three training launches (one process; two processes; their resume), the expensive part of this file."""

import json
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.test_ddp import SMALL as DDP_SMALL  # the same tiny two-stage run

# test_ddp.py's tiny run with an unquantized base and the optimizer restarted per stage: two stages of 8 examples,
# global batch 4 (2 per process), a checkpoint every step.
SMALL = [
    "quant=none",
    "strategy.stages.0.max_steps=4",
    "checkpoint.every_n_steps=1",
    "logger=csv",
    *(a for a in DDP_SMALL if not a.startswith(("strategy.restart_optimizer", "checkpoint."))),
]
VAL_LOSS_TOLERANCE = 0.005  # ours: |final val/loss, 2 FSDP processes - 1 process|, same global batch, dropout 0.05


def metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """`one`: one process; `fsdp`: the same run under `trainer=fsdp_cpu` (two processes)."""
    root = tmp_path_factory.mktemp("fsdp")
    one, fsdp = root / "one", root / "fsdp"
    run_cli(["train.py", *SMALL, f"hydra.run.dir={one}"], check=True)
    run_cli(["train.py", *SMALL, "trainer=fsdp_cpu", f"hydra.run.dir={fsdp}"], check=True)
    return {"one": one, "fsdp": fsdp, "root": root}


def test_two_fsdp_processes_match_one_process(runs):
    one, fsdp = runs["one"], runs["fsdp"]
    m1, m2 = metrics(one), metrics(fsdp)
    assert (m2["world_size"], m2["global_batch_size"], m2["per_device_batch_size"]) == (2, 4, 2)
    assert [s["global_step"] for s in m2["stages"]] == [4, 2]
    for stage in ("0_translated", "1_synthetic"):  # each step's global batch is the one a single process trains on
        assert (fsdp / "stages" / stage / "batches.jsonl").read_text() == (
            one / "stages" / stage / "batches.jsonl"
        ).read_text()
    for stage1, stage2 in zip(m1["stages"], m2["stages"], strict=True):  # token-weighted over both ranks' halves
        assert abs(stage2["val_loss"] - stage1["val_loss"]) <= VAL_LOSS_TOLERANCE
    assert abs(m2["final"]["val/loss"] - m1["final"]["val/loss"]) <= VAL_LOSS_TOLERANCE
    assert set(m2["final"]) == set(m1["final"]) and m2["val_fingerprint"] == m1["val_fingerprint"]


def test_rank_zero_writes_one_run_dir_with_a_loadable_adapter(runs):
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from arastory.train.tiny import build_tiny_model

    fsdp, one = runs["fsdp"], runs["one"]
    assert sorted(p.name for p in runs["root"].iterdir()) == ["fsdp", "one"], "no run dir of a worker's own"
    assert len(list(fsdp.rglob("metrics.json"))) == 1
    assert len((fsdp / "samples.jsonl").read_text().splitlines()) == 1
    saved, reference = (load_file(d / "adapter" / "adapter_model.safetensors") for d in (fsdp, one))
    assert saved.keys() == reference.keys()  # gathered whole, named as peft's own save names them
    assert all(saved[k].shape == reference[k].shape for k in saved)
    base = AutoModelForCausalLM.from_pretrained(build_tiny_model(), dtype=torch.float32)
    model = PeftModel.from_pretrained(base, str(fsdp / "adapter"))
    loaded = {k: v for k, v in model.named_parameters() if "lora_B" in k}
    assert loaded and any(float(v.abs().max()) > 0 for v in loaded.values()), "trained LoRA B matrices, not zeros"


def test_fsdp_stage_resumes_from_its_checkpoint(runs, tmp_path):
    """A copy of the run as if killed after its second stage's last checkpoint (metrics.json without that stage):
    `resume=` loads the FSDP checkpoint (adapter, optimizer, RNG streams) into both ranks' shards and validates it
    to the uninterrupted run's loss. (Exact resume mid-stage after a kill is covered for DDP in test_ddp.py.)"""
    import shutil

    fsdp = runs["fsdp"]
    resumed = tmp_path / "resumed"
    shutil.copytree(fsdp, resumed)
    m = metrics(resumed)
    m["stages"] = m["stages"][:1]  # as if killed during stage 1, after its last checkpoint
    (resumed / "metrics.json").write_text(json.dumps(m))
    proc = run_cli(["train.py", f"resume={resumed}"], check=True)
    assert "resuming from" in proc.stdout
    after = metrics(resumed)
    assert after["stages"][1]["resumed_from_step"] == 2 and after["stages"][1]["global_step"] == 2
    assert abs(after["final"]["val/loss"] - metrics(fsdp)["final"]["val/loss"]) <= 1e-4


def compose_train(overrides: list[str]):
    from hydra import compose, initialize_config_dir

    from arastory.paths import CONF_DIR

    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return compose("train", overrides=overrides)


def test_fsdp_with_a_4bit_base_on_the_cpu_stops_with_one_line(tmp_path):
    proc = run_cli(["train.py", "trainer=fsdp_cpu", "logger=csv", f"hydra.run.dir={tmp_path / 'r'}"])
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "config error: trainer.strategy: fsdp shards a 4-bit base only on CUDA GPUs (bitsandbytes' quant_storage), "
        "and this run is on the CPU; use quant=none to shard an unquantized base, or trainer=ddp_cpu for QLoRA"
    )


def test_fsdp_refuses_what_it_cannot_shard_or_carry(monkeypatch):
    import torch

    from arastory.errors import ConfigError
    from arastory.train.sharded import check_fsdp

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a GPU machine, wherever this runs
    with pytest.raises(ConfigError, match=r"^config error: quant.bnb_4bit_quant_storage: 'uint8': FSDP shards 4-bit"):
        check_fsdp(compose_train(["trainer=fsdp", "model.dtype=bfloat16"]))
    check_fsdp(compose_train(["trainer=fsdp", "model.dtype=bfloat16", "quant.bnb_4bit_quant_storage=bfloat16"]))
    check_fsdp(compose_train(["trainer=fsdp", "quant=none"]))
    with pytest.raises(
        ConfigError, match=r"^config error: strategy.restart_optimizer: false is not built for trainer=fsdp"
    ):
        check_fsdp(
            compose_train(["trainer=fsdp", "quant=none", "strategy=sequential", "strategy.restart_optimizer=false"])
        )


def test_lockstep_validation_batches_pad_the_shorter_rank():
    from arastory.train.distributed import LockstepBatches

    ranks = [LockstepBatches(5, 2, rank, 2).batches for rank in range(2)]
    assert ranks[0] == [[(0, False), (2, False)], [(4, False)]]
    assert ranks[1] == [[(1, False), (3, False)], [(0, True)]]  # as many batches: the last is padding
    assert [len(LockstepBatches(1, 4, rank, 2)) for rank in range(2)] == [1, 1]

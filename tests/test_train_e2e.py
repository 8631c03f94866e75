"""End-to-end training through `python train.py` on the tiny model: direct, sequential, multirun, released data
(resume after a kill: tests/test_train_resume.py)."""

import csv
import json
from pathlib import Path

import torch
import yaml

from tests.conftest import FAST_TRAIN, run_cli


def read_metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def tiny_parameter_count() -> int:
    from transformers import AutoModelForCausalLM

    from arastory.train.tiny import build_tiny_model

    return sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(build_tiny_model()).parameters())


def adapter_parameter_count(adapter_dir) -> int:
    from safetensors.torch import load_file

    return sum(t.numel() for t in load_file(adapter_dir / "adapter_model.safetensors").values())


def test_direct_run_writes_a_complete_run_dir(tmp_path):
    run_dir = tmp_path / "direct"
    proc = run_cli(["train.py", *FAST_TRAIN, "dialect=egy", f"out={run_dir}"], check=True)
    metrics = read_metrics(run_dir)
    assert [s["name"] for s in metrics["stages"]] == ["synthetic"]
    again = run_cli(["train.py", *FAST_TRAIN, f"out={run_dir}"])  # out= never overwrites a run
    assert again.returncode == 2 and again.stderr.strip() == (
        f"config error: out: '{run_dir}' already holds a training "
        f"run; continue it with resume={run_dir}, or choose another out"
    )
    assert metrics["stages"][0]["global_step"] == 3 and metrics["global_step"] == 3
    assert set(metrics["final"]) >= {"val/egy/loss", "val/egy/ppl", "val/egy/bpc", "val/egy/bpw", "val/loss", "val/bpc"}
    assert set(metrics["val_fingerprint"]) == {"all", "egy"} and metrics["max_length"] == 160
    assert metrics["train_format"]["synthetic"]["lost_eos"] == metrics["stages"][0]["format"]["truncated"] == 6
    assert "lose their end of story (EOS)" in proc.stderr, "the truncation warning names the count"
    batches = [json.loads(line) for line in (run_dir / "stages/0_synthetic/batches.jsonl").read_text().splitlines()]
    assert [b["step"] for b in batches] == [0, 1, 2] and all(len(b["ids"]) == 2 for b in batches)
    assert metrics["data"]["synthetic"]["train_per_variety"] == {"egy": 6}
    assert metrics["throughput_tokens_per_s"] > 0
    with open(run_dir / "stages/0_synthetic/metrics.csv", newline="") as handle:  # Lightning's ThroughputMonitor
        rates = [row for row in csv.DictReader(handle) if row.get("train/device/items_per_sec")]
    assert rates and all(
        float(r["train/device/items_per_sec"]) > float(r["train/device/samples_per_sec"]) > 0 for r in rates
    )
    # FLOPs are 4N per non-padding token over the same window, N the base's parameters at their unquantized size
    # plus the adapter's (LoRA matrices and the trained copy of the LM head).
    per_token = {round(float(r["train/device/flops_per_sec"]) / float(r["train/device/items_per_sec"])) for r in rates}
    assert per_token == {4 * (tiny_parameter_count() + adapter_parameter_count(run_dir / "adapter"))}
    assert (run_dir / "adapter" / "adapter_config.json").exists() and (run_dir / "adapter" / "tokenizer.json").exists()
    assert (run_dir / "stages" / "0_synthetic" / "checkpoints" / "last.ckpt").exists()
    assert (run_dir / "stages" / "0_synthetic" / "metrics.csv").exists()
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["dialect"] == "egy" and config["quant"]["load_in_4bit"] is True
    samples = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    assert samples and samples[0]["variety"] == "egy" and samples[0]["prompt"]
    assert str(run_dir) in proc.stdout and "non-padding tokens/s" in proc.stdout
    log = (run_dir / "train.log").read_text(encoding="utf-8")  # what the console showed, timestamped, in the run dir
    assert "non-padding tokens/s" in log and "[WARNING]" in log and "lose their end of story (EOS)" in log
    # The checkpoint holds the adapter, not the frozen 4-bit base.
    state = torch.load(run_dir / "stages/0_synthetic/checkpoints/last.ckpt", weights_only=False)["state_dict"]
    assert state and all("lora_" in k or "lm_head" in k for k in state)


def test_sequential_run_continues_one_adapter_through_two_stages(tmp_path):
    run_dir = tmp_path / "seq"
    run_cli(
        [
            "train.py",
            *FAST_TRAIN,
            "strategy=sequential",
            "strategy.stages.1.max_steps=2",
            "logger=wandb",
            "strategy.restart_optimizer=false",
            f"hydra.run.dir={run_dir}",
        ],
        check=True,
    )
    metrics = read_metrics(run_dir)
    assert [(s["name"], s["data"], s["global_step"]) for s in metrics["stages"]] == [
        ("translated", "translated", 3),
        ("synthetic", "synthetic", 2),
    ]
    assert metrics["data"]["translated"]["train"] == 6
    assert metrics["data"]["translated"]["filter"]["counts"]["kept"] == 80, (
        "the default filter keeps the 80 faithful pairs"
    )
    assert list((run_dir / "wandb").glob("offline-run-*/files/media/images/filter/*.png")), "filter plots reach W&B"
    assert [s["format"]["kept"] for s in metrics["stages"]] == [s["examples"] for s in metrics["stages"]] == [6, 18], (
        "each stage counts its own examples"
    )
    for stage in ("0_translated", "1_synthetic"):
        assert (run_dir / "stages" / stage / "adapter" / "adapter_model.safetensors").exists()
        assert (run_dir / "stages" / stage / "checkpoints" / "last.ckpt").exists()
    from safetensors.torch import load_file

    first = load_file(run_dir / "stages/0_translated/adapter/adapter_model.safetensors")
    second = load_file(run_dir / "stages/1_synthetic/adapter/adapter_model.safetensors")
    assert first.keys() == second.keys() and any(not torch.equal(first[k], second[k]) for k in first)
    # restart_optimizer=false: stage 2's AdamW continues stage 1's moments (step counts add up).
    optimizer = torch.load(run_dir / "stages/1_synthetic/optimizer.pt", weights_only=False)
    assert int(next(iter(optimizer["state"].values()))["step"]) == 5


def test_multirun_gives_each_job_its_own_run_dir(tmp_path):
    sweep = tmp_path / "sweep"
    run_cli(["train.py", "-m", *FAST_TRAIN, "dialect=msa,mor", f"hydra.sweep.dir={sweep}"], check=True)
    job_dirs = sorted(p for p in sweep.iterdir() if (p / "metrics.json").exists())
    assert [p.name for p in job_dirs] == ["0", "1"]
    for job_dir, variety in zip(job_dirs, ["msa", "mor"], strict=False):
        assert read_metrics(job_dir)["data"]["synthetic"]["train_per_variety"] == {variety: 6}
        assert yaml.safe_load((job_dir / "config.yaml").read_text())["dialect"] == variety


def test_plain_lora_and_released_csv_data(tmp_path, released_dir):
    run_dir = tmp_path / "plain"
    run_cli(
        [
            "train.py",
            *FAST_TRAIN,
            "quant=none",
            "data=arastories",
            f"data.synthetic.path={released_dir}",
            "dialect=mor",
            "data.max_length=256",
            f"hydra.run.dir={run_dir}",
        ],
        check=True,
    )
    metrics = read_metrics(run_dir)
    assert metrics["data"]["synthetic"]["read"] == 850 and metrics["data"]["synthetic"]["train_per_variety"] == {
        "mor": 6
    }
    assert metrics["stages"][0]["format"]["truncated"] > 0, "released stories exceed 256 tokens and are counted"
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["quant"]["_target_"] == "arastory.train.model.no_quantization"

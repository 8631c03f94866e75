"""Benchmark: arastory's training throughput side by side with what a researcher would otherwise use, same work for all.

    python bench/bench_peers.py [--quick] [--json FILE] [--rounds R] [--per-variety N]

Every setup trains the tiny model (4-bit NF4 double-quant, fp32 compute, CPU) with the same LoRA (r 8, alpha 16,
dropout 0.05, all linear layers + the LM head), AdamW at a constant 2e-3, gradient clipping 1.0, for one epoch over
the same tokenized examples (arastory's formatter on the bundled stories), 4 examples per step unless stated:

    arastory              python train.py's recipe: packed rows (padding-free), one row per step holding about as many
                          tokens as 4 examples (data.packing_max_tokens = 4 x the mean example length)
    arastory_unpacked     the same recipe, padded batches of 4 (full run only)
    hf_trainer            transformers.Trainer + peft, padded batches of 4
    trl_sft               trl.SFTTrainer, padded batches of 4 (gradient checkpointing and bf16 off, as for everyone)
    trl_sft_padding_free  trl.SFTTrainer with padding_free=True: the 4 examples flattened into one row
    study_bs1             the study's setup: transformers.Trainer + peft, batch size 1, no packing

Each (setup, round) runs in a fresh process, setups interleaved and rotated per round; the table shows the median of
non-padding tokens per second of the training loop (model loading and validation excluded), the ratio to the best
peer, the padding share of the token slots, the mean training loss of the last quarter of steps, and the held-out
loss (every setup's trained adapter scored by the same code on the same held-out stories), which must agree within
LOSS_TOLERANCE across the setups that take 4 examples per step.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PEERS = ("hf_trainer", "trl_sft", "trl_sft_padding_free", "study_bs1")
LOSS_TOLERANCE = 0.03  # held-out losses within 3% (relative) of their median
BATCH, LR, SEED = 4, 2e-3, 42
QUICK = {"rounds": 2, "per_variety": 8}
FULL = {"rounds": 3, "per_variety": 32}


# ------------------------------------------------------------------------------------------------ the shared work
def train_overrides(per_variety: int, packed: bool, budget: int | None = None) -> list[str]:
    """The arastory run every setup mirrors (its data selection, formatter and optimizer settings)."""
    overrides = [
        "dialect=all",
        "strategy=direct",
        f"data.synthetic.size={per_variety}",
        f"batch_size={BATCH}",
        f"optim.lr={LR}",
        "optim.schedule=constant",
        "optim.warmup_steps=0",
        f"seed={SEED}",
        "logger=csv",
        "strategy.stages.0.max_epochs=1",
        "strategy.stages.0.max_steps=-1",
        "sample.per_variety=0",
        "checkpoint.every_n_steps=1000000",
        "trainer.enable_progress_bar=false",
        "trainer.log_every_n_steps=1",
        f"data.packing={str(packed).lower()}",
    ]
    return overrides + ([f"data.packing_max_tokens={budget}"] if budget else [])


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from arastory.cli import register_resolvers
    from arastory.paths import CONF_DIR

    register_resolvers()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return hydra_compose("train", overrides=overrides)


def workload(per_variety: int) -> dict:
    """The examples arastory's recipe trains and validates on, tokenized by its formatter; the model and LoRA config."""
    from arastory.train.data import build_training_data
    from arastory.train.formatting import ExampleFormatter
    from arastory.train.model import load_tokenizer, resolve_model_path

    cfg = compose(train_overrides(per_variety, packed=False))
    data = build_training_data(cfg.data, cfg.dialect, needed=["synthetic"], seed=cfg.seed)
    path = resolve_model_path(cfg.model)
    tokenizer = load_tokenizer(path)
    formatter = ExampleFormatter(tokenizer, cfg.data.max_length, cfg.data.overflow)
    encode = lambda records: [e | {"id": r.id} for r in records if (e := formatter.encode(r.prompt, r.story))]
    return {
        "cfg": cfg,
        "path": path,
        "tokenizer": tokenizer,
        "train": encode(data.train["synthetic"]),
        "val": encode([r for records in data.val.values() for r in records]),
    }


def peft_model(work: dict, wrap: bool = True):
    """The tiny base in 4-bit exactly as arastory loads it; wrapped with the run's LoRA unless `wrap` is False."""
    from hydra.utils import instantiate

    from arastory.train.model import apply_lora, load_model

    cfg = work["cfg"]
    base = load_model(work["path"], instantiate(cfg.quant), cfg.model.dtype, "sdpa")
    peft_config = instantiate(cfg.peft, _convert_="all")
    if not wrap:
        return base, peft_config
    import torch

    torch.manual_seed(SEED)
    return apply_lora(base, peft_config, quantized=True), peft_config


def heldout_loss(model, work: dict) -> float:
    """Mean NLL per scored story token over the held-out stories: arastory's validation computation."""
    import torch

    from arastory.train.datamodule import pad_collate
    from arastory.train.loss import story_nll

    collate = pad_collate(work["tokenizer"].pad_token_id, extras=True)
    for param in model.parameters():  # TRL trains the adapter of a 4-bit model in bf16: score it in fp32 like the rest
        if param.requires_grad and param.dtype == torch.bfloat16:
            param.data = param.data.float()
    model.eval()
    total, tokens = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(work["val"]), 8):
            batch = collate(work["val"][start : start + 8])
            total += float(story_nll(model, batch, reduction="sum"))
            tokens += batch["targets"].numel()
    return total / tokens


def last_quarter(losses: list[float]) -> float:
    tail = losses[-max(1, len(losses) // 4) :]
    return sum(tail) / len(tail)


# ---------------------------------------------------------------------------------------------------- the setups
class LoopClock:
    """Wall and CPU seconds of a training loop, validation excluded (CPU time: this process's own work, which other
    jobs on a shared machine do not inflate)."""

    def __init__(self):
        self.wall = self.cpu = 0.0
        self._marks = None

    def start(self) -> None:
        self._marks = (time.perf_counter(), time.process_time())

    def stop(self) -> None:
        if self._marks:
            self.wall += time.perf_counter() - self._marks[0]
            self.cpu += time.process_time() - self._marks[1]
            self._marks = None

    def rates(self, tokens: int) -> dict:
        return {"tokens_per_s": tokens / self.wall, "tokens_per_cpu_s": tokens / self.cpu}


def run_arastory(per_variety: int, packed: bool) -> dict:
    import csv

    from arastory.train import recipe

    clock = LoopClock()

    class ClockedThroughput(recipe.Throughput):  # the recipe's own callback, with wall and CPU clocks beside it
        def on_train_start(self, trainer, module):
            super().on_train_start(trainer, module)
            clock.start()

        def on_validation_start(self, trainer, module):  # validation inside fit is not training time
            clock.stop()
            super().on_validation_start(trainer, module)

        def on_validation_end(self, trainer, module):
            super().on_validation_end(trainer, module)
            if trainer.state.fn == "fit":
                clock.start()

        def on_train_end(self, trainer, module):
            clock.stop()
            super().on_train_end(trainer, module)

    recipe.Throughput = ClockedThroughput
    work = workload(per_variety)
    lengths = [len(e["input_ids"]) for e in work["train"]]
    budget = max(max(lengths), round(BATCH * sum(lengths) / len(lengths))) if packed else None
    run_dir = Path(tempfile.mkdtemp(prefix="bench-peers-arastory-"))
    metrics = recipe.train(compose(train_overrides(per_variety, packed, budget)), run_dir)
    with open(run_dir / "stages/0_synthetic/metrics.csv", newline="") as handle:
        losses = [float(row["train/loss_step"]) for row in csv.DictReader(handle) if row.get("train/loss_step")]
    stage = metrics["stages"][0]
    return {
        **clock.rates(sum(lengths)),
        "padding_fraction": stage["padding_fraction"],
        "steps": stage["global_step"],
        "train_loss": last_quarter(losses),
        "heldout_loss": metrics["final"]["val/loss"],
        "tokens": sum(lengths),
        "examples_per_step": len(lengths) / stage["global_step"],
    }


class _Counter:
    """Wraps a data collator: counts the real and padded token slots of the batches it builds."""

    def __init__(self, collate):
        self.collate, self.tokens, self.slots = collate, 0, 0

    def __call__(self, features):
        batch = self.collate(features)
        self.tokens += sum(len(f["input_ids"]) for f in features)
        self.slots += batch["input_ids"].numel()
        return batch


def _timed_train(trainer, work: dict, counter: _Counter) -> dict:
    """trainer.train() timed from on_train_begin to on_train_end (the loop, not the setup)."""
    from transformers import TrainerCallback

    clock = LoopClock()

    class Clock(TrainerCallback):
        def on_train_begin(self, *args, **kwargs):
            clock.start()

        def on_train_end(self, *args, **kwargs):
            clock.stop()

    trainer.add_callback(Clock())
    trainer.data_collator = counter
    trainer.train()
    losses = [row["loss"] for row in trainer.state.log_history if "loss" in row]
    return {
        **clock.rates(counter.tokens),
        "padding_fraction": 1 - counter.tokens / counter.slots,
        "steps": trainer.state.global_step,
        "train_loss": last_quarter(losses),
        "heldout_loss": heldout_loss(trainer.model, work),
        "tokens": counter.tokens,
        "examples_per_step": len(work["train"]) / trainer.state.global_step,
    }


def _dataset(work: dict):
    from datasets import Dataset

    return Dataset.from_list([{"input_ids": e["input_ids"], "labels": e["labels"]} for e in work["train"]])


# The HF Trainer and TRL SFTTrainer setups train with the same settings (arastory's: constant LR, no warmup or decay,
# clipping at 1.0, one epoch, the same seed, on the CPU, logging every step and saving nothing).
PEER_ARGS = {
    "num_train_epochs": 1,
    "learning_rate": LR,
    "lr_scheduler_type": "constant",
    "warmup_steps": 0,
    "weight_decay": 0.0,
    "max_grad_norm": 1.0,
    "logging_steps": 1,
    "save_strategy": "no",
    "report_to": [],
    "seed": SEED,
    "use_cpu": True,
}


def run_hf_trainer(per_variety: int, batch_size: int) -> dict:
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments

    work = workload(per_variety)
    model, _ = peft_model(work)
    args = TrainingArguments(
        output_dir=tempfile.mkdtemp(prefix="bench-peers-hf-"),
        per_device_train_batch_size=batch_size,
        **PEER_ARGS,
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    collate = DataCollatorForSeq2Seq(work["tokenizer"], padding=True, label_pad_token_id=-100)
    trainer = Trainer(model=model, args=args, train_dataset=_dataset(work), data_collator=collate)
    return _timed_train(trainer, work, _Counter(collate))


def run_trl(per_variety: int, padding_free: bool) -> dict:
    from trl import SFTConfig, SFTTrainer

    work = workload(per_variety)
    base, peft_config = peft_model(work, wrap=False)
    args = SFTConfig(
        output_dir=tempfile.mkdtemp(prefix="bench-peers-trl-"),
        per_device_train_batch_size=BATCH,
        **PEER_ARGS,
        bf16=False,
        gradient_checkpointing=False,
        padding_free=padding_free,
        max_length=None if padding_free else 1024,
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    import torch

    torch.manual_seed(SEED)
    trainer = SFTTrainer(
        model=base, args=args, train_dataset=_dataset(work), processing_class=work["tokenizer"], peft_config=peft_config
    )
    return _timed_train(trainer, work, _Counter(trainer.data_collator))


SETUPS = {
    "arastory": lambda n: run_arastory(n, packed=True),
    "arastory_unpacked": lambda n: run_arastory(n, packed=False),
    "hf_trainer": lambda n: run_hf_trainer(n, BATCH),
    "trl_sft": lambda n: run_trl(n, padding_free=False),
    "trl_sft_padding_free": lambda n: run_trl(n, padding_free=True),
    "study_bs1": lambda n: run_hf_trainer(n, 1),
}


# ---------------------------------------------------------------------------------------------------- the driver
def run_worker(name: str, per_variety: int, out: Path, threads: int) -> None:
    os.environ.setdefault("ARASTORY_CACHE", str(Path(tempfile.gettempdir()) / "arastory-bench-cache"))
    import warnings

    import torch

    warnings.filterwarnings("ignore")
    if threads:
        torch.set_num_threads(threads)
    result = SETUPS[name](per_variety)
    out.write_text(json.dumps(result))


def measure(name: str, per_variety: int, threads: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        env = {
            **os.environ,
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "WANDB_MODE": "disabled",
        }
        proc = subprocess.run(
            [
                sys.executable,
                __file__,
                "--worker",
                name,
                "--per-variety",
                str(per_variety),
                "--out",
                str(out),
                "--threads",
                str(threads),
            ],
            capture_output=True,
            text=True,
            env=env,
            cwd=REPO,
        )
        if proc.returncode != 0:
            raise SystemExit(f"{name} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
        return json.loads(out.read_text())


def summarize(runs: dict[str, list[dict]]) -> dict:
    table = {}
    for name, results in runs.items():
        median = lambda key, results=results: statistics.median(r[key] for r in results)
        table[name] = {
            "tokens_per_s": round(median("tokens_per_s"), 1),
            "tokens_per_cpu_s": round(median("tokens_per_cpu_s"), 1),
            "rounds": [round(r["tokens_per_s"], 1) for r in results],
            "rounds_cpu": [round(r["tokens_per_cpu_s"], 1) for r in results],
            "padding_fraction": round(median("padding_fraction"), 4),
            "train_loss": round(median("train_loss"), 4),
            "heldout_loss": round(median("heldout_loss"), 4),
            "steps": results[0]["steps"],
            "examples_per_step": round(results[0]["examples_per_step"], 2),
            "tokens": results[0]["tokens"],
        }
    peers = [p for p in PEERS if p in table]
    best = {key: max(peers, key=lambda p: table[p][key]) for key in ("tokens_per_s", "tokens_per_cpu_s")}
    for row in table.values():
        row["ratio_to_best_peer"] = round(row["tokens_per_s"] / table[best["tokens_per_s"]]["tokens_per_s"], 3)
        row["cpu_ratio_to_best_peer"] = round(
            row["tokens_per_cpu_s"] / table[best["tokens_per_cpu_s"]]["tokens_per_cpu_s"], 3
        )
    four = [name for name in table if name != "study_bs1"]
    center = statistics.median(table[name]["heldout_loss"] for name in four)
    spread = max(abs(table[name]["heldout_loss"] / center - 1) for name in four)
    return {
        **table,
        "best_peer": best["tokens_per_s"],
        "best_peer_cpu": best["tokens_per_cpu_s"],
        "speedup_vs_best_peer": table["arastory"]["ratio_to_best_peer"],
        "speedup_vs_best_peer_cpu": table["arastory"]["cpu_ratio_to_best_peer"],
        "losses_agree": spread <= LOSS_TOLERANCE,
        "loss_spread": round(spread, 4),
        "loss_tolerance": LOSS_TOLERANCE,
    }


def print_table(summary: dict) -> None:
    names = [k for k, v in summary.items() if isinstance(v, dict) and "tokens_per_s" in v]
    print(
        f"{'setup':<22}{'tokens/s':>10}{'ratio':>7}{'tok/cpu-s':>11}{'ratio':>7}{'padding':>9}{'steps':>7}"
        f"{'ex/step':>8}{'train loss':>11}{'held-out':>10}"
    )
    for name in names:
        row = summary[name]
        print(
            f"{name:<22}{row['tokens_per_s']:>10.0f}{row['ratio_to_best_peer']:>7.2f}{row['tokens_per_cpu_s']:>11.0f}"
            f"{row['cpu_ratio_to_best_peer']:>7.2f}{row['padding_fraction']:>9.1%}{row['steps']:>7}"
            f"{row['examples_per_step']:>8.2f}{row['train_loss']:>11.4f}{row['heldout_loss']:>10.4f}"
        )
    print(
        f"arastory / best peer: {summary['speedup_vs_best_peer']:.2f}x wall-clock ({summary['best_peer']}), "
        f"{summary['speedup_vs_best_peer_cpu']:.2f}x per CPU-second ({summary['best_peer_cpu']}); held-out losses "
        f"of the 4-per-step setups within {summary['loss_spread']:.1%} of their median "
        f"({'agree' if summary['losses_agree'] else 'DO NOT agree'}: tolerance {LOSS_TOLERANCE:.0%})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help=f"{QUICK['rounds']} rounds, {QUICK['per_variety']} stories per variety"
    )
    parser.add_argument("--json", type=Path, help="write the summary here")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--per-variety", type=int, help="training stories per variety (x3 varieties)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads per run (default 1: on a shared machine more threads measure contention; "
        "0 = torch's default)",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    preset = QUICK if args.quick else FULL
    per_variety = args.per_variety or preset["per_variety"]
    if args.worker:
        return run_worker(args.worker, per_variety, args.out, args.threads)
    setups = [s for s in SETUPS if not (args.quick and s == "arastory_unpacked")]
    runs: dict[str, list[dict]] = {s: [] for s in setups}
    for round_ in range(args.rounds or preset["rounds"]):
        order = setups[round_ % len(setups) :] + setups[: round_ % len(setups)]  # rotate: no setup always goes first
        for name in order:
            result = measure(name, per_variety, args.threads)
            runs[name].append(result)
            print(
                f"round {round_ + 1} {name:<22} {result['tokens_per_s']:>8.0f} tokens/s "
                f"{result['tokens_per_cpu_s']:>8.0f} tokens/cpu-s",
                flush=True,
            )
    summary = summarize(runs)
    summary["settings"] = {
        "per_variety": per_variety,
        "rounds": args.rounds or preset["rounds"],
        "batch": BATCH,
        "lr": LR,
        "model": "tiny (arastory/conf/model/tiny.yaml), NF4 double-quant, fp32 compute, CPU",
        "torch_threads": args.threads or "torch default",
    }
    print_table(summary)
    if args.json:
        from arastory.io import atomic_write_json

        atomic_write_json(args.json, summary)


if __name__ == "__main__":
    main()

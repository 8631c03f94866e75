"""The training recipe, top to bottom: check config → data → model + LoRA → one Lightning fit per stage → adapter, samples, metrics.

A run dir holds everything needed to resume it: `config.yaml` (resolved, redacted), per-stage checkpoints,
`metrics.json` (completed stages) and the W&B run id.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import Callback, ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger

from arastory.io import atomic_write_json, atomic_write_jsonl, atomic_write_text
from arastory.train.checks import check_config
from arastory.train.data import build_training_data
from arastory.train.datamodule import ResumeDataPosition, StoryDataModule
from arastory.train.formatting import ExampleFormatter
from arastory.train.generate import generate_samples
from arastory.train.model import apply_lora, is_quantized, load_model, load_tokenizer, resolve_model_path
from arastory.train.module import StoryLM
from arastory.train.tracking import plain_config

CONFIG_FILE, METRICS_FILE, SAMPLES_FILE = "config.yaml", "metrics.json", "samples.jsonl"


class Throughput(Callback):
    """Non-padding tokens per second of training (model time, excluding validation)."""

    def __init__(self):
        self.tokens, self.seconds, self._start, self._tokens0 = 0, 0.0, None, 0

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self._start, self._tokens0 = time.perf_counter(), module.tokens_seen

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if self._start is not None:
            self.seconds += time.perf_counter() - self._start
            self.tokens += module.tokens_seen - self._tokens0

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0


def save_run_config(cfg: DictConfig, run_dir: Path) -> None:
    """The resolved config, secrets redacted; `resume=` reads it back."""
    atomic_write_text(run_dir / CONFIG_FILE, OmegaConf.to_yaml(OmegaConf.create(plain_config(cfg))))


def train(cfg: DictConfig, run_dir: str | Path) -> dict:
    run_dir = Path(run_dir)
    check_config(cfg)
    pl.seed_everything(cfg.seed, workers=True)
    stages = list(cfg.strategy.stages)
    data = build_training_data(cfg.data, cfg.dialect, needed=sorted({s.data for s in stages}), seed=cfg.seed,
                               out_dir=run_dir)
    save_run_config(cfg, run_dir)

    model_path = resolve_model_path(cfg.model)
    tokenizer = load_tokenizer(model_path, cfg.model.trust_remote_code)
    formatter = ExampleFormatter(tokenizer, cfg.data.max_length, cfg.data.overflow)
    datamodules = [StoryDataModule(data.train[s.data], data.val, formatter, cfg.batch_size, seed=cfg.seed + k)
                   for k, s in enumerate(stages)]
    planned = [planned_steps(s, dm, cfg.trainer.get("accumulate_grad_batches", 1)) for s, dm in zip(stages, datamodules)]

    base = load_model(model_path, instantiate(cfg.quant), cfg.model.dtype, cfg.model.attn_implementation,
                      cfg.model.trust_remote_code)
    model = apply_lora(base, instantiate(cfg.peft, _convert_="all"), is_quantized(base), cfg.model.gradient_checkpointing)
    module = StoryLM(model, lr=stages[0].lr, weight_decay=cfg.optim.weight_decay, warmup_steps=cfg.optim.warmup_steps,
                     schedule=cfg.optim.schedule)

    metrics = read_metrics(run_dir)
    loggers = [instantiate(cfg.logger.wandb)(run_dir=run_dir, run_config=plain_config(cfg))] if cfg.logger.get("wandb") else []
    log_filter_report(run_dir, loggers)
    throughput = Throughput()
    carried = None
    for k, stage in enumerate(stages):
        stage_dir = run_dir / "stages" / f"{k}_{stage.name}"
        if k < len(metrics["stages"]):
            continue  # finished before a resume
        ckpt = stage_dir / "checkpoints" / "last.ckpt"
        if k > 0 and not ckpt.exists():
            carried = restore_previous_stage(model, run_dir / "stages" / f"{k - 1}_{stages[k - 1].name}", cfg.strategy)
        restart = cfg.strategy.restart_optimizer
        module.configure_stage(stage.lr, total_steps=planned[k] if restart else sum(planned),
                               step_offset=0 if restart else sum(planned[:k]),
                               val_names=datamodules[k].val_names, carried_optimizer_state=None if restart else carried)
        trainer = instantiate(
            cfg.trainer, max_epochs=stage.max_epochs if stage.max_steps in (None, -1) else None,
            max_steps=stage.max_steps if stage.max_steps not in (None, -1) else -1, default_root_dir=str(stage_dir),
            logger=[CSVLogger(str(stage_dir), name="", version="")] + loggers,
            callbacks=[throughput, ResumeDataPosition(), ModelCheckpoint(dirpath=str(stage_dir / "checkpoints"), save_last=True, save_top_k=0,
                                                   every_n_train_steps=cfg.checkpoint.every_n_steps)])
        resumed_from = checkpoint_step(ckpt)
        print(f"[arastory] stage {k} '{stage.name}': {len(datamodules[k].train_set)} examples on data '{stage.data}', "
              f"{planned[k]} steps planned" + (f"; resuming from {ckpt} at step {resumed_from}" if resumed_from else ""))
        trainer.fit(module, datamodule=datamodules[k], ckpt_path=str(ckpt) if ckpt.exists() else None)
        train_loss = trainer.callback_metrics.get("train/loss_epoch", trainer.callback_metrics.get("train/loss_step"))
        val = {k2: float(v) for k2, v in trainer.validate(module, datamodule=datamodules[k], verbose=False)[0].items()} \
            if datamodules[k].val_names else {}
        save_stage(model, trainer, stage_dir)
        metrics["stages"].append(stage_summary(stage, trainer, train_loss, val, datamodules[k])
                                 | {"resumed_from_step": resumed_from})
        atomic_write_json(run_dir / METRICS_FILE, metrics)

    model.save_pretrained(run_dir / "adapter")
    tokenizer.save_pretrained(run_dir / "adapter")
    samples = generate_samples(model, formatter, data.val, cfg.sample)
    atomic_write_jsonl(run_dir / SAMPLES_FILE, samples)
    metrics.update(final=metrics["stages"][-1]["val"], data=data.counts, base_model=str(cfg.model.name_or_path or model_path),
                   throughput_tokens_per_s=round(throughput.tokens_per_s, 1), global_step=metrics["stages"][-1]["global_step"])
    atomic_write_json(run_dir / METRICS_FILE, metrics)
    for logger in loggers:
        logger.log_metrics({f"final/{k}": v for k, v in metrics["final"].items()})
        logger.experiment.finish()
    return metrics


def log_filter_report(run_dir: Path, loggers: list) -> None:
    """The translation filter's counts and plots (written while building the data) into the training W&B run."""
    report = run_dir / "filter" / "report.json"
    if loggers and report.exists() and not read_metrics(run_dir)["stages"]:  # once, not again on resume
        import json

        from arastory.filter.report import wandb_payload
        for logger in loggers:
            logger.experiment.log(wandb_payload(report.parent, json.loads(report.read_text())))


def planned_steps(stage, datamodule: StoryDataModule, accumulate: int) -> int:
    if stage.max_steps not in (None, -1):
        return int(stage.max_steps)
    per_epoch = math.ceil(math.ceil(len(datamodule.train_set) / datamodule.batch_size) / accumulate)
    return per_epoch * int(stage.max_epochs)


def checkpoint_step(ckpt: Path) -> int | None:
    """The global step stored in a Lightning checkpoint (None when there is none)."""
    if not ckpt.exists():
        return None
    return int(torch.load(ckpt, map_location="cpu", weights_only=False)["global_step"])


def read_metrics(run_dir: Path) -> dict:
    import json

    path = run_dir / METRICS_FILE
    return json.loads(path.read_text()) if path.exists() else {"stages": []}


def save_stage(model, trainer, stage_dir: Path) -> None:
    """The stage's adapter (and optimizer state, for strategies that carry it into the next stage)."""
    model.save_pretrained(stage_dir / "adapter")
    tmp = stage_dir / "optimizer.pt.tmp"
    torch.save(trainer.optimizers[0].state_dict(), tmp)
    tmp.replace(stage_dir / "optimizer.pt")


def restore_previous_stage(model, prev_dir: Path, strategy_cfg):
    """Load the previous stage's adapter into `model`; return its optimizer state when the strategy carries it."""
    from peft.utils import set_peft_model_state_dict
    from safetensors.torch import load_file

    set_peft_model_state_dict(model, load_file(prev_dir / "adapter" / "adapter_model.safetensors"))
    if strategy_cfg.restart_optimizer:
        return None
    return torch.load(prev_dir / "optimizer.pt", weights_only=False)


def stage_summary(stage, trainer, train_loss, val: dict, datamodule: StoryDataModule) -> dict:
    return {"name": stage.name, "data": stage.data, "examples": len(datamodule.train_set),
            "global_step": int(trainer.global_step), "epochs": int(trainer.current_epoch),
            "lr": float(stage.lr), "train_loss": None if train_loss is None else round(float(train_loss), 4),
            "val_loss": round(val["val/loss"], 4) if "val/loss" in val else None,
            "val": {k: round(v, 4) for k, v in val.items()}, "format": datamodule.format_stats.as_dict()}

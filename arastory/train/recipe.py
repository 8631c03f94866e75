"""The training recipe, top to bottom: check config → data → model + LoRA → a fit per stage → adapter, samples, metrics.

A run dir holds everything needed to resume it exactly: `config.yaml` (resolved, redacted), per-stage checkpoints
(adapter, optimizer, LR schedule, step, data position, RNG streams), `metrics.json` (completed stages) and the
W&B run id. Each stage starts from RNG streams seeded by (seed, stage), so a run killed anywhere and resumed
trains on the same batches with the same dropout masks as one that was never interrupted.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import Callback, ThroughputMonitor
from pytorch_lightning.trainer.states import RunningStage

from arastory.io import atomic_write_json, atomic_write_jsonl, atomic_write_text
from arastory.train import distributed, ranks, sharded
from arastory.train.attention import resolve_attn_implementation
from arastory.train.checks import check_config
from arastory.train.data import TrainingData, build_training_data, val_fingerprint
from arastory.train.datamodule import StoryDataModule
from arastory.train.devices import single_training_device
from arastory.train.formatting import ExampleFormatter, auto_max_length
from arastory.train.fused_lora import fuse_lora
from arastory.train.generate import generate_samples
from arastory.train.history import BatchLog, StageCSVLogger, StepMetrics, csv_history, replay_into
from arastory.train.model import (
    apply_lora,
    context_length,
    is_quantized,
    load_model,
    load_tokenizer,
    resolve_model_path,
)
from arastory.train.module import StoryLM, use_fused_adamw
from arastory.train.resume import (
    AtomicCheckpointIO,
    CheckpointMismatch,
    RngStreams,
    StepCheckpoint,
    check_checkpoint,
    load_adapter_strict,
    run_identity,
)
from arastory.train.sampler import derive_seed
from arastory.train.speedups import apply_liger, compile_layers, want_gradient_checkpointing
from arastory.train.tracking import plain_config

if TYPE_CHECKING:
    from peft import PeftModel
    from pytorch_lightning.loggers import Logger
    from transformers import PreTrainedTokenizerBase

log = logging.getLogger(__name__)

CONFIG_FILE, METRICS_FILE, SAMPLES_FILE = "config.yaml", "metrics.json", "samples.jsonl"


class Throughput(ThroughputMonitor):
    """Lightning's ThroughputMonitor logs samples/s, non-padding tokens/s (its items/s) and FLOPs/s (the module's
    `flops_per_batch`; MFU on GPUs whose peak Lightning knows), per device and for all processes under `train/`,
    over its last `window_size` batches, every `log_every_n_steps`. It keeps no whole-run
    figure (its window is bounded and it restarts each fit, i.e. each stage), so this subclass adds one for
    metrics.json: all processes' non-padding tokens (the module's `tokens_seen`) over the monitor's own training
    time, which leaves out validation."""

    WINDOW = 20  # ours: batches per logged rate

    def __init__(self):
        super().__init__(batch_size_fn=lambda batch: batch["num_examples"], length_fn=lambda batch: batch["num_tokens"])
        self.tokens, self.seconds, self._tokens0 = 0, 0.0, 0

    def fit_batches(self, batches: int) -> None:
        """The next fit's window: at most its batch count, since a window that never fills logs no rate."""
        self.kwargs["window_size"] = max(2, min(self.WINDOW, batches))

    def on_train_start(self, trainer: pl.Trainer, module: StoryLM) -> None:  # type: ignore[override]  # a StoryLM only
        super().on_train_start(trainer)
        self._tokens0 = module.tokens_seen

    def _compute(self, trainer, iter_num: int | None = None) -> None:
        if (
            trainer.state.stage == RunningStage.TRAINING
        ):  # validation rates would be logged at their batch index as step
            super()._compute(trainer, iter_num)

    def on_train_end(self, trainer: pl.Trainer, module: StoryLM) -> None:  # type: ignore[override]  # a StoryLM only
        times = self._throughputs[RunningStage.TRAINING]._time
        self.seconds += times[-1] if times else 0.0
        self.tokens += module.tokens_seen - self._tokens0

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0


def save_run_config(cfg: DictConfig, run_dir: Path) -> None:
    """The resolved config, secrets redacted; `resume=` reads it back."""
    atomic_write_text(run_dir / CONFIG_FILE, OmegaConf.to_yaml(OmegaConf.create(plain_config(cfg))))


def train(cfg: DictConfig, run_dir: str | Path) -> dict:
    """The whole run on this process; with several processes (trainer=ddp), rank 0 starts the others, which run
    this too, and only rank 0 writes into the run dir."""
    failed = True
    try:
        metrics = _train(cfg, Path(run_dir))
        failed = False
        return metrics
    finally:
        if ranks.is_rank_zero():
            distributed.finish_launches(failed)


def _train(cfg: DictConfig, run_dir: Path) -> dict:
    """The recipe: set up data, the model and the stages; run each stage; finish (adapter, samples, metrics)."""
    zero = set_up_ranks(cfg, run_dir)
    stages = list(cfg.strategy.stages)
    data, formatter, datamodules = set_up_data(cfg, run_dir, stages, zero)
    planned = [
        planned_steps(s, dm, cfg.trainer.get("accumulate_grad_batches", 1))
        for s, dm in zip(stages, datamodules, strict=False)
    ]
    run = set_up_model(cfg, formatter, datamodules)
    run.reload = lambda: set_up_model(cfg, formatter, datamodules)
    metrics = read_metrics(run_dir)
    metrics.update(run_facts(formatter, data, datamodules, stages), speed=run.speed)
    with open_loggers(cfg, run_dir, zero) as loggers:
        log_filter_report(run_dir, loggers)
        log_run_facts(loggers, metrics)
        throughput = Throughput()
        device = run_stages(cfg, run_dir, stages, datamodules, planned, run, metrics, loggers, throughput, zero)
        if not zero:
            return metrics  # samples, the final adapter and metrics.json are rank 0's
        if sharded.is_fsdp(cfg.trainer):  # sample from an unsharded model with the last stage's adapter
            run.renew()
            load_adapter_strict(run.model, stage_dir_of(run_dir, stages, len(stages) - 1) / "adapter", run.identity)
        return finish(cfg, run_dir, run, formatter, data, metrics, loggers, throughput, device)


def set_up_ranks(cfg: DictConfig, run_dir: Path) -> bool:
    """Checks that need no data; other ranks wait for rank 0's run dir. Whether this process is rank 0."""
    check_config(cfg)
    ranks.check_accelerator(cfg.trainer)
    sharded.check_fsdp(cfg)
    zero = ranks.is_rank_zero()
    if not zero:
        ranks.wait_for_rank_zero(run_dir)
    distributed.bind_cuda_device(cfg.trainer)
    return zero


def set_up_data(
    cfg: DictConfig, run_dir: Path, stages: list, zero: bool
) -> tuple[TrainingData, ExampleFormatter, list[StoryDataModule]]:
    """The stages' records (split once per study), the example formatter, and one data module per stage."""
    with distributed.scratch_dir(zero, run_dir) as data_out:
        data = build_training_data(
            cfg.data, cfg.dialect, needed=sorted({s.data for s in stages}), seed=cfg.seed, out_dir=data_out
        )
    if zero:
        save_run_config(cfg, run_dir)
    model_path = resolve_model_path(cfg.model)
    tokenizer = load_tokenizer(model_path, cfg.model.trust_remote_code)
    formatter = build_formatter(cfg, tokenizer, model_path, data)
    datamodules = [build_datamodule(cfg, data.train[s.data], data.val, formatter, k) for k, s in enumerate(stages)]
    for datamodule in datamodules:
        datamodule.setup(
            "fit"
        )  # here, not first in trainer.fit: planning the steps needs the examples' count and lengths
    data.train.clear()  # the texts: training reads the (memory-mapped) token ids from here on
    if zero:
        warn_truncation(stages, datamodules, formatter.resolved_max_length)
    return data, formatter, datamodules


@dataclass
class ModelSetup:
    """The quantized base with its adapter, the Lightning module that trains it, and what identifies the adapter."""

    model: PeftModel
    module: StoryLM
    identity: dict
    model_path: str
    device: torch.device | None
    speed: dict
    reload: Callable[[], ModelSetup] | None = None  # the same setup again, for `renew`

    def renew(self) -> None:
        """A freshly loaded base with a fresh adapter in place of this one (FSDP wraps and shards a model in place)."""
        assert self.reload is not None, "set by set_up_model"
        fresh = self.reload()
        self.model, self.module = fresh.model, fresh.module


def set_up_model(cfg: DictConfig, formatter: ExampleFormatter, datamodules: list) -> ModelSetup:
    """Base model (quantized), speed options, LoRA (its initial weights depend on the seed only), the module."""
    stages = list(cfg.strategy.stages)
    model_path = resolve_model_path(cfg.model)
    device = single_training_device(str(cfg.trainer.get("accelerator", "auto")), cfg.trainer.get("devices", "auto"))
    attention = resolve_attn_implementation(
        cfg.model.attn_implementation, packing_on(cfg), on_cuda=device is not None and device.type == "cuda"
    )
    base = load_model(model_path, instantiate(cfg.quant), cfg.model.dtype, attention, cfg.model.trust_remote_code)
    apply_liger(base, cfg.model.get("liger", False))
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    peft_config = instantiate(cfg.peft, _convert_="all")
    checkpointing = want_gradient_checkpointing(
        cfg.model.gradient_checkpointing, base.config, max(dm.tokens_per_step() for dm in datamodules), device
    )
    model = apply_lora(base, peft_config, is_quantized(base), checkpointing)
    fused_lora = fuse_lora(model, cfg.model.get("fused_lora", False))
    compiled = compile_layers(model, cfg.model.get("compile", False))
    identity = run_identity(model, peft_config)
    module = StoryLM(
        model,
        lr=stages[0].lr,
        weight_decay=cfg.optim.weight_decay,
        warmup_steps=cfg.optim.warmup_steps,
        schedule=cfg.optim.schedule,
        identity=identity,
        fused=cfg.optim.get("fused", "auto"),
    )
    speed = {
        "attn_implementation": attention,
        "packing": packing_on(cfg),
        "gradient_checkpointing": checkpointing,
        "liger": bool(cfg.model.get("liger", False)),
        "compiled_layers": compiled,
        "fused_lora_layers": fused_lora,
        "fused_adamw": use_fused_adamw(
            cfg.optim.get("fused", "auto"), [p for p in model.parameters() if p.requires_grad]
        ),
    }
    return ModelSetup(model, module, identity, str(model_path), device, speed)


@contextmanager
def open_loggers(cfg: DictConfig, run_dir: Path, zero: bool) -> Iterator[list[Logger]]:
    """The W&B logger (rank 0, when configured), finished whatever happens: a failed run is marked failed (exit 1)
    instead of being left running until W&B times it out."""
    loggers = (
        [instantiate(cfg.logger.wandb)(run_dir=run_dir, run_config=plain_config(cfg))]
        if cfg.logger.get("wandb") and zero
        else []
    )
    exit_code = 1
    try:
        yield loggers
        exit_code = 0
    finally:
        for logger in loggers:
            logger.experiment.finish(exit_code=exit_code)


def run_stages(
    cfg: DictConfig,
    run_dir: Path,
    stages: list,
    datamodules: list,
    planned: list[int],
    run: ModelSetup,
    metrics: dict,
    loggers: list,
    throughput: Throughput,
    zero: bool,
) -> torch.device | None:
    """Each stage not finished before a resume, carrying the adapter (and optimizer, unless restarted) between
    stages; metrics.json gains a stage summary as each ends. The device the last stage trained on."""
    finished = len(metrics["stages"])
    replay_finished_stages(loggers, run_dir, stages[:finished], planned)
    device, carried = run.device, None
    for k, stage in enumerate(stages):
        if k < finished:
            continue  # finished before a resume
        stage_dir = stage_dir_of(run_dir, stages, k)
        if k > 0 and sharded.is_fsdp(cfg.trainer):  # the previous stage's model is wrapped and sharded
            run.renew()
        if k > 0 and not (stage_dir / "checkpoints" / "last.ckpt").exists():
            carried = restore_previous_stage(
                run.model, stage_dir_of(run_dir, stages, k - 1), cfg.strategy, run.identity
            )
        restart = cfg.strategy.restart_optimizer
        run.module.configure_stage(
            stage.lr,
            total_steps=planned[k] if restart else sum(planned),
            step_offset=0 if restart else sum(planned[:k]),
            val_names=datamodules[k].val_names,
            carried_optimizer_state=None if restart else carried,
        )
        summary, trainer = fit_stage(
            cfg,
            k,
            stage,
            run.module,
            datamodules[k],
            stage_dir,
            loggers,
            throughput,
            planned[k],
            step_offset=sum(planned[:k]),
        )
        device = trainer.strategy.root_device
        metrics["stages"].append(summary)
        if zero:
            atomic_write_json(run_dir / METRICS_FILE, metrics)
    if finished == len(stages):  # killed after its last stage: continue from that stage's adapter
        load_adapter_strict(run.model, stage_dir_of(run_dir, stages, len(stages) - 1) / "adapter", run.identity)
    return device


def finish(
    cfg: DictConfig,
    run_dir: Path,
    run: ModelSetup,
    formatter: ExampleFormatter,
    data: TrainingData,
    metrics: dict,
    loggers: list,
    throughput: Throughput,
    device: torch.device | None,
) -> dict:
    """The final adapter (with its tokenizer), samples for held-out prompts, and the run's metrics.json."""
    run.model.save_pretrained(str(run_dir / "adapter"))
    formatter.tokenizer.save_pretrained(run_dir / "adapter")
    samples = generate_samples(run.model, formatter, data.val, cfg.sample, device=device)
    atomic_write_jsonl(run_dir / SAMPLES_FILE, samples)
    metrics.update(
        final=metrics["stages"][-1]["val"],
        data=data.counts,
        base_model=str(cfg.model.name_or_path or run.model_path),
        throughput_tokens_per_s=round(throughput.tokens_per_s, 1),
        global_step=metrics["stages"][-1]["global_step"],
        **distributed.run_shape(cfg),
    )
    atomic_write_json(run_dir / METRICS_FILE, metrics)
    for logger in loggers:
        logger.log_metrics({f"final/{k}": v for k, v in metrics["final"].items()})
    return metrics


def fit_stage(
    cfg: DictConfig,
    k: int,
    stage: DictConfig,
    module: StoryLM,
    datamodule: StoryDataModule,
    stage_dir: Path,
    loggers: list,
    throughput: Throughput,
    planned: int,
    step_offset: int,
) -> tuple[dict, pl.Trainer]:
    """One stage: fit (from its checkpoint if there is one), validate, save its adapter; (summary, trainer)."""
    ckpt = stage_dir / "checkpoints" / "last.ckpt"
    resumed_from = verify_checkpoint(ckpt, module)
    pl.seed_everything(derive_seed(cfg.seed, "stage", k) % 2**32, workers=True, verbose=False)
    set_step_offset(loggers, step_offset)
    zero = ranks.is_rank_zero()  # the stage's metrics.csv and batches.jsonl are rank 0's
    csv_logger = StageCSVLogger(stage_dir, resumed_from or 0) if zero else None
    if csv_logger is not None:
        replay_into(loggers, csv_logger.kept_rows)
    trainer = instantiate(
        cfg.trainer,
        strategy=distributed.training_strategy(cfg.trainer, stage_dir.parent.parent),
        plugins=[AtomicCheckpointIO()],
        use_distributed_sampler=False,
        max_epochs=stage.max_epochs if stage.max_steps in (None, -1) else None,
        max_steps=stage.max_steps if stage.max_steps not in (None, -1) else -1,
        default_root_dir=str(stage_dir),
        logger=[csv_logger, *loggers] if zero else False,
        callbacks=[
            throughput,
            RngStreams(),
            *([BatchLog(stage_dir, resumed_from or 0)] if zero else []),
            StepMetrics(),
            StepCheckpoint(stage_dir / "checkpoints", cfg.checkpoint.every_n_steps),
            *optional_callbacks(cfg, with_logger=zero),
        ],
    )
    throughput.fit_batches(planned * trainer.accumulate_grad_batches)
    packed = (
        f" packed into {len(datamodule.packed)} rows of <= {datamodule.packed.budget} tokens "
        f"({datamodule.packed.fill():.0%} full)"
        if datamodule.packed is not None
        else ""
    )
    if zero:
        log.info(
            f"stage {k} '{stage.name}': {len(datamodule.train_set)} examples on data '{stage.data}'{packed}, "
            f"{planned} steps planned" + (f"; resuming from {ckpt} at step {resumed_from}" if resumed_from else "")
        )
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=str(ckpt) if ckpt.exists() else None)
    except CheckpointMismatch as error:  # raised while Lightning restores: name the checkpoint
        raise CheckpointMismatch(error.what, ckpt) from None
    train_loss = trainer.callback_metrics.get("train/loss_epoch", trainer.callback_metrics.get("train/loss"))
    val = (
        {k2: float(v) for k2, v in trainer.validate(module, datamodule=datamodule, verbose=False)[0].items()}
        if datamodule.val_names
        else {}
    )
    adapter = sharded.gathered_adapter(trainer)  # FSDP: gathered from every rank's shards (all ranks take part)
    if zero:
        save_stage(module.model, trainer, stage_dir, adapter)
    trainer.strategy.barrier("arastory.save_stage")  # the next stage loads this stage's adapter on every rank
    padding = module.padding_fraction
    return stage_summary(stage, trainer, train_loss, val, datamodule) | {
        "resumed_from_step": resumed_from,
        "padding_fraction": None if padding is None else round(padding, 4),
        "packed_rows": None if datamodule.packed is None else len(datamodule.packed),
    }, trainer


def optional_callbacks(cfg: DictConfig, with_logger: bool) -> list[Callback]:
    """The `callbacks` group's entries (arastory/conf/callbacks), each built from its `_target_`; a null entry is off.
    Ranks without a logger leave out the callbacks that only log (Lightning refuses them there)."""
    from pytorch_lightning.callbacks import LearningRateMonitor

    entries = cfg.get("callbacks") or {}  # run dirs from before the group existed lack it
    built = [instantiate(entry) for entry in entries.values() if entry is not None]
    return [c for c in built if with_logger or not isinstance(c, LearningRateMonitor)]


def replay_finished_stages(loggers: list, run_dir: Path, finished: list, planned: list[int]) -> None:
    """On resume: log the finished stages' metrics.csv into W&B again (a killed process loses its last W&B rows)."""
    for k in range(len(finished)):
        set_step_offset(loggers, sum(planned[:k]))
        replay_into(loggers, csv_history(stage_dir_of(run_dir, finished, k)))


def set_step_offset(loggers: list, offset: int) -> None:
    """W&B counts steps across the run: stage k's steps come after those planned for the stages before it."""
    for logger in loggers:
        logger.step_offset = offset


def stage_dir_of(run_dir: Path, stages: list, k: int) -> Path:
    return run_dir / "stages" / f"{k}_{stages[k].name}"


def packing_on(cfg: DictConfig) -> bool:
    return bool(cfg.data.get("packing", False))  # run dirs from before packing existed lack the key


def build_datamodule(cfg: DictConfig, records: list, val: dict, formatter: ExampleFormatter, k: int) -> StoryDataModule:
    """Stage k's data: tokenized through the token cache (`data.token_cache`), padded or packed (`data.packing`)."""
    from arastory.paths import cache_dir

    return StoryDataModule(
        records,
        val,
        formatter,
        cfg.batch_size,
        seed=derive_seed(cfg.seed, "data", k),
        packing=packing_on(cfg),
        packing_max_tokens=cfg.data.get("packing_max_tokens"),
        group_by_length=bool(cfg.data.get("group_by_length", False)),
        token_cache=cache_dir() / "tokens" if cfg.data.get("token_cache", True) else None,
    )


def build_formatter(
    cfg: DictConfig, tokenizer: PreTrainedTokenizerBase, model_path: str, data: TrainingData
) -> ExampleFormatter:
    """The example formatter at `data.max_length`; `auto` measures every training and validation example."""
    formatter = ExampleFormatter(tokenizer, cfg.data.max_length, cfg.data.overflow)
    if cfg.data.max_length == "auto":
        records = [r for records in (*data.train.values(), *data.val.values()) for r in records]
        context = context_length(model_path, tokenizer, cfg.model.trust_remote_code)
        formatter.max_length = auto_max_length(formatter, records, context)
        log.info(f"data.max_length=auto: {formatter.max_length} tokens (longest example, model context {context})")
    return formatter


def warn_truncation(stages: list, datamodules: list[StoryDataModule], max_length: int) -> None:
    for stage, datamodule in zip(stages, datamodules, strict=False):
        if message := datamodule.format_stats.warning(f"'{stage.name}' training", max_length):
            log.warning(message)
    if message := datamodules[0].val_format_stats.warning("validation", max_length):
        log.warning(message)


def run_facts(
    formatter: ExampleFormatter, data: TrainingData, datamodules: list[StoryDataModule], stages: list
) -> dict:
    """What metrics.json and W&B record about the examples: length limit, truncation counts, validation ids."""
    return {
        "max_length": formatter.resolved_max_length,
        "val_fingerprint": val_fingerprint(data.val),
        "val_format": datamodules[0].val_format_stats.as_dict(),
        "train_format": {s.name: dm.format_stats.as_dict() for s, dm in zip(stages, datamodules, strict=False)},
    }


def log_run_facts(loggers: list, facts: dict) -> None:
    flat = {
        "data/max_length": facts["max_length"],
        "data/val_fingerprint": facts["val_fingerprint"]["all"],
        **{f"data/val/{key}": value for key, value in facts["val_format"].items()},
        **{
            f"data/{stage}/{key}": value
            for stage, counts in facts["train_format"].items()
            for key, value in counts.items()
        },
    }
    for logger in loggers:
        logger.experiment.summary.update(flat)


def log_filter_report(run_dir: Path, loggers: list) -> None:
    """The translation filter's counts and plots (written while building the data) into the training W&B run."""
    report = run_dir / "filter" / "report.json"
    if loggers and report.exists() and not read_metrics(run_dir)["stages"]:  # once, not again on resume
        import json

        from arastory.filter.report import wandb_payload

        for logger in loggers:
            logger.experiment.log(wandb_payload(report.parent, json.loads(report.read_text())))


def planned_steps(stage: DictConfig, datamodule: StoryDataModule, accumulate: int) -> int:
    if stage.max_steps not in (None, -1):
        return int(stage.max_steps)
    per_epoch = math.ceil(datamodule.batches_per_epoch() / accumulate)
    return per_epoch * int(stage.max_epochs)


def verify_checkpoint(ckpt: Path, module: StoryLM) -> int | None:
    """The global step of a stage's checkpoint (None when there is none), after checking it fits this run."""
    if not ckpt.exists():
        return None
    checkpoint = torch.load(ckpt, map_location="cpu", weights_only=False)
    check_checkpoint(checkpoint, module.identity, module.trainable_shapes(), ckpt)
    return int(checkpoint["global_step"])


def read_metrics(run_dir: Path) -> dict:
    import json

    path = run_dir / METRICS_FILE
    return json.loads(path.read_text()) if path.exists() else {"stages": []}


def save_stage(model: PeftModel, trainer: pl.Trainer, stage_dir: Path, adapter_state: dict | None = None) -> None:
    """The stage's adapter (and optimizer state, for strategies that carry it into the next stage). `adapter_state`:
    the adapter's tensors when the model holds shards of them (FSDP, which carries no optimizer state)."""
    if adapter_state is not None:
        sharded.save_adapter(model, adapter_state, stage_dir / "adapter")
        return
    model.save_pretrained(str(stage_dir / "adapter"))
    tmp = stage_dir / "optimizer.pt.tmp"
    torch.save(trainer.optimizers[0].state_dict(), tmp)
    tmp.replace(stage_dir / "optimizer.pt")


def restore_previous_stage(model: PeftModel, prev_dir: Path, strategy_cfg: DictConfig, identity: dict) -> dict | None:
    """Load the previous stage's adapter into `model`; return its optimizer state when the strategy carries it."""
    load_adapter_strict(model, prev_dir / "adapter", identity)
    if strategy_cfg.restart_optimizer:
        return None
    return torch.load(prev_dir / "optimizer.pt", weights_only=False)


def stage_summary(
    stage: DictConfig,
    trainer: pl.Trainer,
    train_loss: torch.Tensor | float | None,
    val: dict,
    datamodule: StoryDataModule,
) -> dict:
    return {
        "name": stage.name,
        "data": stage.data,
        "examples": len(datamodule.train_set),
        "global_step": int(trainer.global_step),
        "epochs": int(trainer.current_epoch),
        "lr": float(stage.lr),
        "train_loss": None if train_loss is None else round(float(train_loss), 4),
        "val_loss": round(val["val/loss"], 4) if "val/loss" in val else None,
        "val": {k: round(v, 4) for k, v in val.items()},
        "format": datamodule.format_stats.as_dict(),
    }

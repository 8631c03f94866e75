"""The LightningModule: a causal LM with a LoRA adapter, story-only loss, per-variety validation loss, perplexity and
bits per character / per word (comparable across tokenizers)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities.types import OptimizerLRSchedulerConfig
from torchmetrics import Metric

from arastory.train.distributed import global_step_loss
from arastory.train.loss import story_nll
from arastory.train.resume import IDENTITY_KEY, CheckpointMismatch, shapes_mismatch

EPOCH_LOSS_KEY = "arastory_epoch_loss"  # in each checkpoint: the running (loss × examples, examples) of the epoch
TOKENS_KEY = "arastory_stage_tokens"  # in each checkpoint: the stage's (real, padded) training token counts

MODEL_INPUTS = ("input_ids", "attention_mask", "labels")
VAL_SUMS = (
    "nll",
    "tokens",
    "chars",
    "words",
)  # per variety: NLL (nats) of the story tokens, their count, characters, words


class ValidationSums(Metric):
    """Per-variety validation totals (VAL_SUMS), added over batches and, with several processes, over the ranks by
    torchmetrics (`dist_reduce_fx="sum"`), so every metric comes from the whole validation set's totals
    (token-weighted), not from per-rank means. float64: the sums reach millions of nats on the full sets."""

    full_state_update = False
    sums: torch.Tensor  # (variety, VAL_SUMS) float64, registered by add_state

    def __init__(self, names: tuple[str, ...]):
        super().__init__()
        self.names = tuple(names)
        self.add_state(
            "sums", default=torch.zeros(len(self.names), len(VAL_SUMS), dtype=torch.float64), dist_reduce_fx="sum"
        )

    def update(self, index: int, values: torch.Tensor) -> None:
        self.sums[index] += values.to(self.sums)

    def compute(self) -> dict[str, torch.Tensor]:
        return {name: self.sums[k].cpu() for k, name in enumerate(self.names)}


def dense_parameter_count(model: torch.nn.Module) -> int:
    """All parameters at their unquantized size: a bitsandbytes 4-bit weight stores two values per byte and keeps
    its original shape in `quant_state`."""
    total = 0
    for parameter in model.parameters():
        quant_state = getattr(parameter, "quant_state", None)
        total += math.prod(quant_state.shape) if quant_state is not None else parameter.numel()
    return total


def lr_factor(step: int, warmup_steps: int, total_steps: int, schedule: str) -> float:
    """Multiplier of the base learning rate at `step`: linear warmup, then constant, linear or cosine decay."""
    if warmup_steps and step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant" or total_steps <= warmup_steps:
        return 1.0
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    if schedule == "linear":
        return 1.0 - progress
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def use_fused_adamw(fused: bool | str, params: list) -> bool:
    """`optim.fused`: AdamW's fused kernel (one launch for all tensors) when `auto` and the parameters' device has
    it (CUDA, and the CPU on torch >= 2.4), or as set."""
    if fused != "auto":
        return bool(fused)
    from torch.optim.optimizer import _get_fused_kernels_supported_devices

    devices = {p.device.type for p in params}
    return (
        bool(params)
        and devices <= set(_get_fused_kernels_supported_devices())
        and all(p.dtype in (torch.float32, torch.float16, torch.bfloat16) for p in params)
    )


class StoryLM(pl.LightningModule):
    """Trains only the adapter; checkpoints hold only what training changes (adapter, optimizer, schedule, step)
    plus `identity` (base model and adapter config), and load back only into a module with exactly that adapter."""

    _val_sums: ValidationSums  # set per validation epoch in on_validation_epoch_start

    def __init__(
        self,
        model,
        lr: float,
        weight_decay: float = 0.0,
        warmup_steps: int = 0,
        schedule: str = "cosine",
        total_steps: int = 1,
        step_offset: int = 0,
        val_names: tuple[str, ...] = (),
        carried_optimizer_state=None,
        identity: dict | None = None,
        fused: bool | str = "auto",
    ):
        super().__init__()
        self.model = model
        self.identity = identity or {}
        self.configure_stage(lr, total_steps, step_offset, val_names, carried_optimizer_state)
        self.weight_decay, self.warmup_steps, self.schedule, self.fused = weight_decay, warmup_steps, schedule, fused
        self.tokens_seen = 0
        # Read by Lightning's ThroughputMonitor after each training batch (FLOPs/s, and MFU on GPUs it knows). A frozen
        # base computes no weight gradients, so a LoRA step costs about 4N FLOPs per token (forward 2N, input
        # gradients 2N), not the usual 6N; N counts 4-bit weights at their unquantized size. Scored or not, every
        # non-padding token is computed; padding is left out, as in bench/bench_gpu.py's MFU.
        self.dense_parameters = dense_parameter_count(model)
        self.flops_per_batch: int | None = None
        self.step_metrics: dict[str, torch.Tensor | float] = {}
        self._trainable_shapes: dict[str, tuple] | None = None
        self.trainable_shapes()  # now, before a strategy (FSDP) can rename and shard the parameters

    def configure_stage(
        self,
        lr: float,
        total_steps: int,
        step_offset: int,
        val_names: Sequence[str],
        carried_optimizer_state: dict | None = None,
    ) -> None:
        """Settings for the next `Trainer.fit` (one per stage); the adapter weights carry over."""
        self.lr, self.total_steps, self.step_offset = lr, total_steps, step_offset
        self.val_names = tuple(val_names)
        self.carried_optimizer_state = carried_optimizer_state
        self._epoch_loss: list = [0.0, 0]
        self.stage_tokens = [0, 0]  # (real, padded) tokens of this stage's training batches

    @property
    def padding_fraction(self) -> float | None:
        """Share of the stage's processed token slots that were padding (0 when packed)."""
        tokens, slots = self.stage_tokens
        return 1 - tokens / slots if slots else None

    def forward(self, **batch: torch.Tensor) -> Any:
        return self.model(**batch)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = story_nll(self.model, batch)
        loss, step = global_step_loss(self.trainer, loss, batch)  # several processes: over the global batch
        # Counted by the collate on the CPU: reading them off the device would wait for the step to finish.
        self.tokens_seen += batch["num_tokens"] if step is None else step.input_tokens
        self.flops_per_batch = 4 * self.dense_parameters * int(batch["num_tokens"])  # this process's share
        self.stage_tokens = [self.stage_tokens[0] + batch["num_tokens"], self.stage_tokens[1] + batch["num_slots"]]
        examples = batch["num_examples"] if step is None else step.examples
        shown = loss.detach() if step is None else step.loss
        self.log("train/loss", shown, prog_bar=True, logger=False, batch_size=examples)  # the progress bar only
        # Written to the loggers by history.StepMetrics before the step's checkpoint, not by Lightning after it;
        # kept as tensors so that nothing waits for the device until a row is written.
        self.step_metrics = {"train/loss_step": shown, "train/lr": self.current_lr()}
        self._epoch_loss = [self._epoch_loss[0] + shown * examples, self._epoch_loss[1] + examples]
        return loss

    def current_lr(self) -> float:
        optimizer = self.optimizers()
        assert not isinstance(optimizer, list), "one optimizer per stage"
        return float(optimizer.param_groups[0]["lr"])

    def on_train_epoch_end(self) -> None:
        """The epoch's mean training loss, kept in checkpoints so a mid-epoch resume reports the whole epoch's mean
        (Lightning's own on_epoch mean would restart at the resumed batch)."""
        total, examples = self._epoch_loss
        if examples:
            self.log("train/loss_epoch", float(total) / examples, on_step=False, on_epoch=True)
        self._epoch_loss = [0.0, 0]

    def on_validation_epoch_start(self) -> None:
        # Not a child module (a plain attribute): it stays out of the checkpoint and of the adapter's parameters.
        self.__dict__["_val_sums"] = ValidationSums(self.val_names).to(self.device)

    def validation_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        """Sums per variety: NLL (nats) over the scored story tokens, their count, story characters and words."""
        loss_sum = story_nll(self.model, batch, reduction="sum")
        counts = [batch["targets"].numel(), int(batch["story_chars"].sum()), int(batch["story_words"].sum())]
        self._val_sums.update(dataloader_idx, torch.tensor([float(loss_sum), *counts], dtype=torch.float64))

    def on_validation_epoch_end(self) -> None:
        sums = self._val_sums.compute()  # several processes: whole-set totals (torchmetrics' own all-reduce)
        for name, values in sums.items():
            self._log_val(f"val/{name}/", values)
        self._log_val("val/", sum(sums.values(), torch.zeros(len(VAL_SUMS), dtype=torch.float64)), prog_bar=True)

    def _log_val(self, prefix: str, sums: torch.Tensor, prog_bar: bool = False) -> None:
        """loss and ppl per token; bpc and bpw: the same NLL in bits per character / word of the story text."""
        nll, tokens, chars, words = sums.tolist()
        if not tokens:
            return
        self.log(f"{prefix}loss", nll / tokens, prog_bar=prog_bar)
        self.log(f"{prefix}ppl", math.exp(min(nll / tokens, 50)))
        self.log(f"{prefix}bpc", nll / math.log(2) / chars)
        self.log(f"{prefix}bpw", nll / math.log(2) / words)

    def configure_optimizers(self) -> OptimizerLRSchedulerConfig:
        params = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(
            params, lr=self.lr, weight_decay=self.weight_decay, fused=use_fused_adamw(self.fused, params)
        )
        if self.carried_optimizer_state is not None:
            optimizer.load_state_dict(self.carried_optimizer_state)
            for group in optimizer.param_groups:  # the carried moments stay; the stage's own lr applies
                group["lr"] = group["initial_lr"] = self.lr
        offset, total = self.step_offset, self.total_steps
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: lr_factor(step + offset, self.warmup_steps, total, self.schedule)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def trainable_shapes(self) -> dict[str, tuple]:
        """Names and shapes of the adapter's tensors, as first seen: once FSDP wraps the model (in place), its
        parameters are renamed (`_fsdp_wrapped_module.`) and hold flat shards."""
        if self._trainable_shapes is None:
            self._trainable_shapes = {n: tuple(p.shape) for n, p in self.named_parameters() if p.requires_grad}
        return self._trainable_shapes

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        trainable = self.trainable_shapes()
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in trainable}
        checkpoint[IDENTITY_KEY] = self.identity
        checkpoint[EPOCH_LOSS_KEY] = [float(self._epoch_loss[0]), self._epoch_loss[1]]
        checkpoint[TOKENS_KEY] = list(self.stage_tokens)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self._epoch_loss = list(checkpoint.get(EPOCH_LOSS_KEY, [0.0, 0]))
        self.stage_tokens = list(checkpoint.get(TOKENS_KEY, [0, 0]))

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False) -> Any:
        """Strict means: exactly the trainable tensors, with their shapes (the frozen base is never in a checkpoint)."""
        problem = shapes_mismatch(self.trainable_shapes(), {k: tuple(v.shape) for k, v in state_dict.items()})
        if strict and problem:
            raise CheckpointMismatch(problem)
        return super().load_state_dict(state_dict, strict=False, assign=assign)

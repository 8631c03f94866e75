"""The LightningModule: a causal LM with a LoRA adapter, story-only loss, per-variety validation loss, perplexity and
bits per character / per word (comparable across tokenizers)."""

from __future__ import annotations

import math

import pytorch_lightning as pl
import torch

from arastory.train.distributed import global_step_loss, reduce_sums
from arastory.train.loss import story_nll
from arastory.train.resume import IDENTITY_KEY, CheckpointMismatch, shapes_mismatch

EPOCH_LOSS_KEY = "arastory_epoch_loss"  # in each checkpoint: the running (loss × examples, examples) of the epoch
TOKENS_KEY = "arastory_stage_tokens"  # in each checkpoint: the stage's (real, padded) training token counts

MODEL_INPUTS = ("input_ids", "attention_mask", "labels")


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
        self.step_metrics: dict[str, torch.Tensor | float] = {}
        self._trainable_shapes: dict[str, tuple] | None = None
        self.trainable_shapes()  # now, before a strategy (FSDP) can rename and shard the parameters

    def configure_stage(self, lr, total_steps, step_offset, val_names, carried_optimizer_state=None):
        """Settings for the next `Trainer.fit` (one per stage); the adapter weights carry over."""
        self.lr, self.total_steps, self.step_offset = lr, total_steps, step_offset
        self.val_names = tuple(val_names)
        self.carried_optimizer_state = carried_optimizer_state
        self._epoch_loss = [0.0, 0]
        self.stage_tokens = [0, 0]  # (real, padded) tokens of this stage's training batches

    @property
    def padding_fraction(self) -> float | None:
        """Share of the stage's processed token slots that were padding (0 when packed)."""
        tokens, slots = self.stage_tokens
        return 1 - tokens / slots if slots else None

    def forward(self, **batch):
        return self.model(**batch)

    def training_step(self, batch, batch_idx):
        loss = story_nll(self.model, batch)
        loss, step = global_step_loss(self.trainer, loss, batch)  # several processes: over the global batch
        # Counted by the collate on the CPU: reading them off the device would wait for the step to finish.
        self.tokens_seen += batch["num_tokens"] if step is None else step.input_tokens
        self.stage_tokens = [self.stage_tokens[0] + batch["num_tokens"], self.stage_tokens[1] + batch["num_slots"]]
        examples = batch["num_examples"] if step is None else step.examples
        shown = loss.detach() if step is None else step.loss
        self.log("train/loss", shown, prog_bar=True, logger=False, batch_size=examples)  # the progress bar only
        # Written to the loggers by history.StepMetrics before the step's checkpoint, not by Lightning after it;
        # kept as tensors so that nothing waits for the device until a row is written.
        self.step_metrics = {"train/loss_step": shown, "train/lr": float(self.optimizers().param_groups[0]["lr"])}
        self._epoch_loss = [self._epoch_loss[0] + shown * examples, self._epoch_loss[1] + examples]
        return loss

    def on_train_epoch_end(self):
        """The epoch's mean training loss, kept in checkpoints so a mid-epoch resume reports the whole epoch's mean
        (Lightning's own on_epoch mean would restart at the resumed batch)."""
        total, examples = self._epoch_loss
        if examples:
            self.log("train/loss_epoch", float(total) / examples, on_step=False, on_epoch=True)
        self._epoch_loss = [0.0, 0]

    def on_validation_epoch_start(self):
        self._val_sums = {name: torch.zeros(4, dtype=torch.float64) for name in self.val_names}

    def validation_step(self, batch, batch_idx, dataloader_idx: int = 0):
        """Sums per variety: NLL (nats) over the scored story tokens, their count, story characters and words."""
        loss_sum = story_nll(self.model, batch, reduction="sum")
        self._val_sums[self.val_names[dataloader_idx]] += torch.tensor(
            [
                float(loss_sum),
                batch["targets"].numel(),
                int(batch["story_chars"].sum()),
                int(batch["story_words"].sum()),
            ],
            dtype=torch.float64,
        )

    def on_validation_epoch_end(self):
        self._val_sums = reduce_sums(self.trainer, self._val_sums)  # several processes: whole-set totals
        for name, sums in self._val_sums.items():
            self._log_val(f"val/{name}/", sums)
        self._log_val("val/", sum(self._val_sums.values(), torch.zeros(4, dtype=torch.float64)), prog_bar=True)

    def _log_val(self, prefix: str, sums: torch.Tensor, prog_bar: bool = False) -> None:
        """loss and ppl per token; bpc and bpw: the same NLL in bits per character / word of the story text."""
        nll, tokens, chars, words = sums.tolist()
        if not tokens:
            return
        self.log(f"{prefix}loss", nll / tokens, prog_bar=prog_bar)
        self.log(f"{prefix}ppl", math.exp(min(nll / tokens, 50)))
        self.log(f"{prefix}bpc", nll / math.log(2) / chars)
        self.log(f"{prefix}bpw", nll / math.log(2) / words)

    def configure_optimizers(self):
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

    def on_save_checkpoint(self, checkpoint):
        trainable = self.trainable_shapes()
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in trainable}
        checkpoint[IDENTITY_KEY] = self.identity
        checkpoint[EPOCH_LOSS_KEY] = [float(self._epoch_loss[0]), self._epoch_loss[1]]
        checkpoint[TOKENS_KEY] = list(self.stage_tokens)

    def on_load_checkpoint(self, checkpoint):
        self._epoch_loss = list(checkpoint.get(EPOCH_LOSS_KEY, [0.0, 0]))
        self.stage_tokens = list(checkpoint.get(TOKENS_KEY, [0, 0]))

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Strict means: exactly the trainable tensors, with their shapes (the frozen base is never in a checkpoint)."""
        problem = shapes_mismatch(self.trainable_shapes(), {k: tuple(v.shape) for k, v in state_dict.items()})
        if strict and problem:
            raise CheckpointMismatch(problem)
        return super().load_state_dict(state_dict, strict=False, assign=assign)

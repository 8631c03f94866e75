"""The LightningModule: a causal LM with a LoRA adapter, story-only loss, per-variety validation loss and perplexity."""

from __future__ import annotations

import math

import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from arastory.train.formatting import IGNORE_INDEX


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


class StoryLM(pl.LightningModule):
    """Trains only the adapter; checkpoints hold only what training changes (adapter, optimizer, schedule, step)."""

    strict_loading = False  # the frozen base is reloaded from its id, not stored in checkpoints

    def __init__(self, model, lr: float, weight_decay: float = 0.0, warmup_steps: int = 0, schedule: str = "cosine",
                 total_steps: int = 1, step_offset: int = 0, val_names: tuple[str, ...] = (), carried_optimizer_state=None):
        super().__init__()
        self.model = model
        self.configure_stage(lr, total_steps, step_offset, val_names, carried_optimizer_state)
        self.weight_decay, self.warmup_steps, self.schedule = weight_decay, warmup_steps, schedule
        self.tokens_seen = 0

    def configure_stage(self, lr, total_steps, step_offset, val_names, carried_optimizer_state=None):
        """Settings for the next `Trainer.fit` (one per stage); the adapter weights carry over."""
        self.lr, self.total_steps, self.step_offset = lr, total_steps, step_offset
        self.val_names = tuple(val_names)
        self.carried_optimizer_state = carried_optimizer_state

    def forward(self, **batch):
        return self.model(**batch)

    def training_step(self, batch, batch_idx):
        loss = self.model(**batch).loss
        self.tokens_seen += int(batch["attention_mask"].sum())
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=batch["input_ids"].size(0))
        self.log("train/lr", self.optimizers().param_groups[0]["lr"], on_step=True, on_epoch=False)
        return loss

    def on_validation_epoch_start(self):
        self._val_sums = {name: [0.0, 0] for name in self.val_names}

    def validation_step(self, batch, batch_idx, dataloader_idx: int = 0):
        logits = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        shift_logits, shift_labels = logits[:, :-1].float(), batch["labels"][:, 1:]
        loss_sum = F.cross_entropy(shift_logits.reshape(-1, shift_logits.size(-1)), shift_labels.reshape(-1),
                                   ignore_index=IGNORE_INDEX, reduction="sum")
        sums = self._val_sums[self.val_names[dataloader_idx]]
        sums[0] += float(loss_sum)
        sums[1] += int((shift_labels != IGNORE_INDEX).sum())

    def on_validation_epoch_end(self):
        total_loss = total_tokens = 0
        for name, (loss_sum, tokens) in self._val_sums.items():
            if tokens:
                self.log(f"val/{name}/loss", loss_sum / tokens)
                self.log(f"val/{name}/ppl", math.exp(min(loss_sum / tokens, 50)))
                total_loss, total_tokens = total_loss + loss_sum, total_tokens + tokens
        if total_tokens:
            self.log("val/loss", total_loss / total_tokens, prog_bar=True)
            self.log("val/ppl", math.exp(min(total_loss / total_tokens, 50)))

    def configure_optimizers(self):
        params = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)
        if self.carried_optimizer_state is not None:
            optimizer.load_state_dict(self.carried_optimizer_state)
            for group in optimizer.param_groups:  # the carried moments stay; the stage's own lr applies
                group["lr"] = group["initial_lr"] = self.lr
        offset, total = self.step_offset, self.total_steps
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: lr_factor(step + offset, self.warmup_steps, total, self.schedule))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint):
        trainable = {n for n, p in self.named_parameters() if p.requires_grad}
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in trainable}

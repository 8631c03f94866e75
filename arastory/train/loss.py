"""The story loss: next-token cross-entropy over the labelled (story) tokens, with the LM head run only where a label
follows (the prompt's positions never reach the vocabulary projection), for padded and for packed batches alike."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from arastory.train.formatting import IGNORE_INDEX

# Keys of a collated batch the model's forward takes (the rest is bookkeeping: ids, counts, targets).
FORWARD_KEYS = (
    "input_ids",
    "attention_mask",
    "position_ids",
    "cu_seq_lens_q",
    "cu_seq_lens_k",
    "max_length_q",
    "max_length_k",
)


def scored_positions(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(positions whose next token is a label, those labels): what `story_nll` scores. Positions are a 1-D index for
    one row (no device sync when the model reads them) and a [batch, seq] boolean mask for several."""
    follows = torch.zeros_like(labels, dtype=torch.bool)
    follows[:, :-1] = labels[:, 1:] != IGNORE_INDEX
    targets = labels[:, 1:][follows[:, :-1]]
    if labels.size(0) == 1:
        return follows[0].nonzero().flatten(), targets
    return follows, targets


def story_nll(model: torch.nn.Module, batch: dict, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy of the batch's story tokens given everything before them in their own example.

    Equal to the HF causal-LM loss on the same labels (mean over the scored tokens), but the LM head and the
    softmax only see the scored positions. The collate precomputes `logit_positions` and `targets` on the CPU.
    """
    if "targets" in batch:
        positions, targets = batch["logit_positions"], batch["targets"]
    else:
        positions, targets = scored_positions(batch["labels"])
    inputs = {key: batch[key] for key in FORWARD_KEYS if key in batch}
    logits = model(**inputs, use_cache=False, logits_to_keep=positions).logits
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), targets, reduction=reduction)

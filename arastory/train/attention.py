"""Attention for packed rows: which implementation a run uses, and `sdpa_packed`, SDPA run per example of a packed row.

A packed row holds several examples back to back; each must attend only to itself. flash-attention 2 does that
natively from `cu_seq_lens_q/k` (its varlen kernel). Without it, transformers' `sdpa` and `eager` build a dense
block-causal mask from the reset position ids (masking_utils: attention over the whole row, the mask throwing most
of it away). `sdpa_packed` instead runs causal SDPA on each example's slice of the row: the work of the unpacked
examples, minus their padding, on the CPU as on a GPU without flash-attn. Padded batches (validation, sampling)
take the ordinary `sdpa` path, mask and all.
"""

from __future__ import annotations

import importlib.util
import itertools
from typing import Any

import torch
import torch.nn.functional as F

PACKED_SDPA = "sdpa_packed"
FLASH = "flash_attention_2"


def flash_attn_installed() -> bool:
    return importlib.util.find_spec("flash_attn") is not None


def resolve_attn_implementation(requested: str | None, packing: bool, on_cuda: bool) -> str | None:
    """The implementation to load the model with.

    `auto`: flash-attention 2 on a GPU when flash-attn is installed, else SDPA. With packing, plain `sdpa` becomes
    `sdpa_packed` (per-example SDPA); `flash_attention_2` and `eager` take packed rows as they are; None (remote
    code) is left alone.
    """
    if requested == "auto":
        requested = FLASH if on_cuda and flash_attn_installed() else "sdpa"
    if packing and requested == "sdpa":
        register_packed_sdpa()
        return PACKED_SDPA
    return requested


def segment_bounds(
    cu_seq_lens: torch.Tensor | None, position_ids: torch.Tensor | None, length: int
) -> list[tuple[int, int]]:
    """(start, end) of each example of a packed row: from `cu_seq_lens_q` when the batch carries it (built on the
    CPU by the collate, so no device sync), else from where the position ids restart."""
    if cu_seq_lens is not None:
        cuts = _cuts(cu_seq_lens)
    elif position_ids is not None:
        starts = (position_ids[0] == 0).nonzero().flatten().tolist()
        cuts = (starts if starts and starts[0] == 0 else [0, *starts]) + [length]
    else:
        cuts = [0, length]
    return list(itertools.pairwise(cuts))


_last_cuts: tuple[torch.Tensor, list[int]] | None = None


def _cuts(cu_seq_lens: torch.Tensor) -> list[int]:
    """`cu_seq_lens.tolist()`, once per forward: every layer gets the same tensor (a GPU syncs once, not per layer)."""
    global _last_cuts
    if _last_cuts is None or _last_cuts[0] is not cu_seq_lens:
        _last_cuts = (cu_seq_lens, cu_seq_lens.tolist())
    return _last_cuts[1]


def packed_sdpa_forward(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers' attention interface: (output [batch, seq, heads, dim], None). A single row without a mask
    (a packed row, or one unpadded example) runs causal SDPA per example; anything else goes to `sdpa`."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    length = query.shape[2]
    if attention_mask is not None or query.shape[0] != 1 or length == 1 or key.shape[2] != length:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, is_causal=is_causal, **kwargs
        )
    # Grouped-query heads go to SDPA as they are (`enable_gqa`, as transformers' `sdpa` does without a mask): no
    # copy of the key/value heads per query group, and no sum of those copies' gradients in the backward.
    gqa = key.shape[1] != query.shape[1]
    sizes = [b - a for a, b in segment_bounds(kwargs.get("cu_seq_lens_q"), kwargs.get("position_ids"), length)]
    # split, not slices: its backward is one concatenation, where each slice's backward fills a zero tensor of the row
    parts = [
        F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, scale=scaling, is_causal=True, enable_gqa=gqa)
        for q, k, v in zip(query.split(sizes, 2), key.split(sizes, 2), value.split(sizes, 2), strict=False)
    ]
    output = parts[0] if len(parts) == 1 else torch.cat(parts, dim=2)
    return output.transpose(1, 2).contiguous(), None


def packed_sdpa_mask(*args: Any, attention_mask: torch.Tensor | None = None, **kwargs: Any) -> torch.Tensor | None:
    """No dense mask for a causal row without padding (packed or not: `packed_sdpa_forward` separates the examples);
    the ordinary SDPA mask otherwise (padded validation batches, generation)."""
    from transformers.masking_utils import sdpa_mask

    if (
        attention_mask is None
        and kwargs.get("q_length") == kwargs.get("kv_length")
        and not kwargs.get("q_offset")
        and not kwargs.get("kv_offset")
    ):
        return None
    return sdpa_mask(*args, **{**kwargs, "attention_mask": attention_mask})


def register_packed_sdpa() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(PACKED_SDPA, packed_sdpa_forward)
    AttentionMaskInterface.register(PACKED_SDPA, packed_sdpa_mask)

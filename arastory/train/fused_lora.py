"""Fused LoRA on 4-bit layers (`model.fused_lora`): the adapter's update added to the base output by one `addmm`.

peft's forward of a LoRA-wrapped 4-bit linear layer clones the base output, computes `B(A(dropout(x)))`, scales
it and adds it: three passes over the [tokens, out] output (and their backward) besides the matmuls. Here the
scaling goes into B's few columns and the sum into the second matmul (`addmm(base, A(dropout(x)), (s·B)ᵀ)`):
the same dropout mask (drawn at the same point), the same matmuls; bitwise the same numbers where the scaling is a
power of two (the tiny model's alpha/r = 2), otherwise equal to fp32 rounding. Anything else (several adapters,
DoRA, merged or disabled adapters, mixed-adapter batches, autocast or mixed dtypes, a LoRA bias) takes peft's own
forward.
"""

from __future__ import annotations

import types
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from peft.tuners.lora.bnb import Linear4bit


def fuse_lora(model: torch.nn.Module, enabled: bool) -> int:
    """Give each LoRA-wrapped 4-bit linear layer of `model` the fused forward; how many layers got it."""
    if not enabled:
        return 0
    from peft.tuners.lora.bnb import Linear4bit

    layers = [module for module in model.modules() if isinstance(module, Linear4bit)]
    for layer in layers:
        layer.forward = types.MethodType(fused_forward, layer)  # type: ignore[method-assign]
    return len(layers)


def fused_forward(self: Linear4bit, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    """peft's `Linear4bit.forward` for one plain LoRA adapter, with the scaling and the sum inside one addmm."""
    name = _plain_adapter(self, x, args, kwargs)
    if name is None:
        return type(self).forward(self, x, *args, **kwargs)
    result = self.base_layer(x)
    hidden = self.lora_A[name](self.lora_dropout[name](x))
    up = (self.lora_B[name].weight * self.scaling[name]).t()
    fused = torch.addmm(result.reshape(-1, result.shape[-1]), hidden.reshape(-1, hidden.shape[-1]), up)
    return fused.view(result.shape)


def _plain_adapter(layer, x: torch.Tensor, args: tuple, kwargs: dict) -> str | None:
    """The one active vanilla LoRA adapter when the fused forward computes what peft's would; None otherwise."""
    if args or kwargs or layer.disable_adapters or layer.merged or torch.is_autocast_enabled():
        return None
    active = [name for name in layer.active_adapters if name in layer.lora_A]
    if len(active) != 1 or active[0] in layer.lora_variant:
        return None
    (name,) = active
    a, b = layer.lora_A[name], layer.lora_B[name]
    if b.bias is not None or not (x.dtype == a.weight.dtype == b.weight.dtype):
        return None
    return name

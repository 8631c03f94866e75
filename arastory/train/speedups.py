"""Optional speed-ups of a training run, each a config knob that degrades cleanly on the CPU: gradient checkpointing
chosen by memory (`model.gradient_checkpointing=auto`), Liger kernels (`model.liger`), `torch.compile` of the
decoder layers (`model.compile`). Packing, attention and fused AdamW live in packing.py, attention.py and module.py."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from arastory.errors import ConfigError

if TYPE_CHECKING:
    from transformers import PretrainedConfig

CHECKPOINT_ABOVE = 0.7  # checkpoint activations when they would take more than this share of the free GPU memory
BYTES_PER_TOKEN_LAYER = 48  # activations kept per token, layer and hidden unit, in bytes (bf16, LoRA inputs included)


def activation_bytes(config: PretrainedConfig, tokens_per_step: int) -> int:
    """A step's activation memory without checkpointing (bf16, flash/per-example attention: nothing quadratic),
    plus the fp32 logits of the scored positions and their gradient."""
    layers = config.num_hidden_layers
    per_layer = BYTES_PER_TOKEN_LAYER * tokens_per_step * config.hidden_size
    logits = 2 * 4 * tokens_per_step * config.vocab_size
    return layers * per_layer + logits


def want_gradient_checkpointing(
    setting: bool | str, config: PretrainedConfig, tokens_per_step: int, device: torch.device | None
) -> bool:
    """`model.gradient_checkpointing`: true/false as set; `auto` turns it on only on a GPU whose free memory the
    step's activations would crowd (more than 70% of it). Recomputing activations costs ~30% of step time, so it
    is worth it only when the step would not fit otherwise."""
    if setting != "auto":
        return bool(setting)
    if device is None or device.type != "cuda":
        return False
    free, _ = torch.cuda.mem_get_info(device)
    return activation_bytes(config, tokens_per_step) > CHECKPOINT_ABOVE * free


def apply_liger(model: torch.nn.Module, enabled: bool) -> None:
    """`model.liger=true`: Liger's Triton kernels for RMSNorm, RoPE and SwiGLU (GPU only; the loss stays ours)."""
    if not enabled:
        return
    if not torch.cuda.is_available():  # checks.py stops a run asking for it without liger-kernel or with trainer=cpu
        raise ConfigError("model.liger", "Liger kernels run on a GPU only and none is visible; set model.liger=false")
    from liger_kernel.transformers import _apply_liger_kernel_to_instance

    _apply_liger_kernel_to_instance(
        model=model, rope=True, rms_norm=True, swiglu=True, cross_entropy=False, fused_linear_cross_entropy=False
    )


def compile_layers(model: torch.nn.Module, enabled: bool) -> int:
    """`model.compile=true`: `torch.compile` each decoder layer (dynamic shapes: packed rows vary in length), where
    the elementwise work (norms, rotary, SwiGLU, LoRA scaling) fuses; the LM head and the loss stay eager. Returns
    how many layers were compiled."""
    if not enabled:
        return 0
    layers = [module for module in model.modules() if type(module).__name__.endswith("DecoderLayer")]
    if not layers:
        raise ConfigError("model.compile", f"found no decoder layers to compile in {type(model).__name__}")
    for layer in layers:
        layer.compile(dynamic=True)
    return len(layers)

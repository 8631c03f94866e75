"""Load a causal LM by HF id or local path, optionally 4-bit (bitsandbytes NF4), and wrap it in a peft LoRA adapter."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from arastory.errors import ConfigError

if TYPE_CHECKING:
    from omegaconf import DictConfig
    from peft import LoraConfig, PeftModel
    from transformers import BitsAndBytesConfig, PreTrainedModel, PreTrainedTokenizerBase

HF_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def no_quantization() -> None:
    """`quant=none`: plain LoRA on full-precision weights."""
    return None


def looks_local(name_or_path: str) -> bool:
    return (
        name_or_path.startswith(("/", "./", "../", "~")) or Path(name_or_path).exists() or not HF_ID.match(name_or_path)
    )


def check_model_path(name_or_path: str) -> None:
    """Fail fast on a local path that does not exist (HF ids are resolved by `from_pretrained`)."""
    if looks_local(name_or_path) and not Path(name_or_path).expanduser().exists():
        raise ConfigError(
            "model.name_or_path", f"'{name_or_path}' is neither an existing local path nor an HF id (org/name)"
        )


def resolve_model_path(model_cfg: DictConfig) -> str:
    """The directory or HF id to load; `model=tiny` builds its local model on first use."""
    if model_cfg.get("tiny"):
        from arastory.train.tiny import build_tiny_model

        return build_tiny_model(**model_cfg.tiny)
    return (
        str(Path(model_cfg.name_or_path).expanduser())
        if looks_local(model_cfg.name_or_path)
        else model_cfg.name_or_path
    )


def load_tokenizer(path: str, trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    if tokenizer.pad_token_id is None:
        # Llama-style tokenizers ship without a pad token; padding is masked out of the loss anyway.
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def context_length(path: str, tokenizer: PreTrainedTokenizerBase, trust_remote_code: bool = False) -> int | None:
    """The longest input the model takes: its config's position limit and the tokenizer's, whichever is smaller."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    limits = [
        getattr(config, key)
        for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length")
        if isinstance(getattr(config, key, None), int)
    ]
    if isinstance(tokenizer.model_max_length, int) and tokenizer.model_max_length < 10**7:  # HF's "no limit" is ~1e30
        limits.append(tokenizer.model_max_length)
    return min(limits) if limits else None


def load_model(
    path: str,
    quantization_config: BitsAndBytesConfig | None = None,
    dtype: str = "float32",
    attn_implementation: str | None = "sdpa",
    trust_remote_code: bool = False,
    device_map: str | dict[str, int | str] | None = None,
    for_training: bool = True,
) -> PreTrainedModel:
    """`for_training=False` (evaluation) keeps bitsandbytes' fast CPU inference layout for 4-bit weights."""
    kwargs = {"dtype": getattr(torch, dtype), "trust_remote_code": trust_remote_code}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    if quantization_config is not None:
        kwargs["quantization_config"] = quantization_config
        if device_map is None and torch.cuda.is_available():
            device_map = {"": torch.cuda.current_device()}
    if device_map is not None:
        kwargs["device_map"] = device_map
    model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    if quantization_config is not None and for_training:
        keep_cpu_4bit_trainable(model)
    return model


def keep_cpu_4bit_trainable(model: torch.nn.Module) -> None:
    """Stop bitsandbytes from repacking 4-bit weights for AVX512-BF16 CPU inference.

    After an eval-mode forward (validation, sampling) bitsandbytes>=0.48 repacks CPU 4-bit weights into a
    layout whose kernel (gemv_4bit) has no autograd: later training steps then get wrong gradients through
    the frozen base. Keeping the training layout costs some CPU inference speed and nothing on GPU.
    """
    import bitsandbytes as bnb

    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            module.support_avx512bf16_for_cpu = False


def apply_lora(
    model: PreTrainedModel, lora_config: LoraConfig, quantized: bool, gradient_checkpointing: bool = False
) -> PeftModel:
    """Wrap `model` with a trainable LoRA adapter (QLoRA when the base is 4-bit)."""
    from peft import get_peft_model, prepare_model_for_kbit_training

    # Non-reentrant checkpointing: no hook forcing the embeddings' output to require a gradient (wasted backward work).
    checkpointing = {"use_reentrant": False}
    if quantized:
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=gradient_checkpointing, gradient_checkpointing_kwargs=checkpointing
        )
    elif gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=checkpointing)
    peft_model = get_peft_model(model, lora_config)
    peft_model.train()  # from_pretrained leaves eval mode (dropout off); training starts in train mode
    return peft_model


def is_quantized(model: torch.nn.Module) -> bool:
    return bool(getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_quantized", False))

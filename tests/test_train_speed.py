"""GPU-ready defaults and speed knobs, on the CPU: what `trainer=gpu` turns on, how each knob resolves here (attention,
gradient checkpointing by memory, fused AdamW, torch.compile of the layers), and one-line errors for the impossible."""

import re

import pytest
import torch
from hydra import compose, initialize_config_dir

from arastory.cli import register_resolvers
from arastory.errors import ConfigError
from arastory.paths import CONF_DIR
from arastory.train.checks import check_config


def config(*overrides):
    register_resolvers()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return compose("train", overrides=list(overrides))


def test_trainer_gpu_packs_in_bf16_and_7b_models_pick_attention_and_checkpointing_themselves():
    gpu = config("trainer=gpu", "model=acegpt_7b")
    assert gpu.data.packing is True and gpu.trainer.precision == "bf16-mixed" and gpu.trainer.accelerator == "gpu"
    assert gpu.trainer.gradient_clip_val == 1.0, "the rest of the trainer comes from trainer/cpu.yaml"
    assert gpu.model.attn_implementation == "auto" and gpu.model.gradient_checkpointing == "auto"
    assert gpu.optim.fused == "auto" and gpu.model.liger is False and gpu.model.compile is False
    assert config("trainer=gpu", "data.packing=false").data.packing is False
    assert config().data.packing is False, "the CPU default stays unpacked"
    with pytest.raises(ConfigError, match=re.escape("data.packing: needs model.attn_implementation")):
        check_config(config("trainer=gpu", "model=jais_6p7b"))
    with pytest.raises(ConfigError, match=re.escape("data.packing_max_tokens: 512 is below data.max_length=1024")):
        check_config(config("data.packing=true", "data.packing_max_tokens=512"))


def test_liger_without_liger_kernel_stops_with_one_line():
    # check_config runs in train.py before anything is built; ConfigError prints as "config error: <key>: ..." (exit 2)
    with pytest.raises(ConfigError, match=re.escape("model.liger: liger-kernel is not installed")):
        check_config(config("model.liger=true"))


def test_attention_resolves_to_what_this_machine_has(monkeypatch):
    from arastory.train import attention

    resolve = attention.resolve_attn_implementation
    assert resolve("auto", packing=False, on_cuda=False) == "sdpa"
    assert resolve("auto", packing=True, on_cuda=False) == "sdpa_packed"
    assert resolve("auto", packing=True, on_cuda=True) == "sdpa_packed", "no flash-attn installed here"
    assert resolve("eager", packing=True, on_cuda=False) == "eager" and resolve(None, False, True) is None
    monkeypatch.setattr(attention, "flash_attn_installed", lambda: True)
    assert resolve("auto", packing=True, on_cuda=True) == "flash_attention_2"
    assert resolve("auto", packing=True, on_cuda=False) == "sdpa_packed", "flash-attention 2 needs a GPU"


def test_gradient_checkpointing_auto_follows_the_memory_a_step_needs(monkeypatch):
    from transformers import LlamaConfig

    from arastory.train.speedups import activation_bytes, want_gradient_checkpointing

    llama7b = LlamaConfig()  # Llama-2-7B shapes: 32 layers, width 4096, vocabulary 32000
    assert want_gradient_checkpointing("auto", llama7b, 8192, torch.device("cpu")) is False
    assert want_gradient_checkpointing(True, llama7b, 8192, None) is True
    assert 50e9 < activation_bytes(llama7b, 8192) < 60e9
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (130 * 2**30, 141 * 2**30))  # an H200
    assert want_gradient_checkpointing("auto", llama7b, 8192, torch.device("cuda", 0)) is False
    assert want_gradient_checkpointing("auto", llama7b, 32768, torch.device("cuda", 0)) is True
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (40 * 2**30, 80 * 2**30))  # a busy H100
    assert want_gradient_checkpointing("auto", llama7b, 8192, torch.device("cuda", 0)) is True


def test_fused_adamw_and_compiled_layers_on_the_cpu(tiny_tokenizer):
    from peft import LoraConfig

    from arastory.train.model import apply_lora, load_model
    from arastory.train.module import StoryLM
    from arastory.train.speedups import compile_layers

    model = apply_lora(
        load_model(tiny_tokenizer.name_or_path, None, "float32"),
        LoraConfig(r=4, target_modules=["q_proj"], task_type="CAUSAL_LM"),
        quantized=False,
    )
    assert StoryLM(model, lr=1e-3).configure_optimizers()["optimizer"].defaults["fused"] is True
    assert StoryLM(model, lr=1e-3, fused=False).configure_optimizers()["optimizer"].defaults["fused"] is False
    assert compile_layers(model, False) == 0
    assert compile_layers(model, True) == 2
    layers = [m for m in model.modules() if type(m).__name__ == "LlamaDecoderLayer"]
    assert len(layers) == 2 and all(layer._compiled_call_impl is not None for layer in layers)


def test_flops_count_4bit_weights_at_their_unquantized_size(tiny_tokenizer):
    """ThroughputMonitor's FLOPs (4N per token) need N of the model as trained, not of its packed 4-bit storage."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from arastory.train.model import load_model
    from arastory.train.module import dense_parameter_count

    quant = instantiate(
        OmegaConf.merge(OmegaConf.load(CONF_DIR / "quant" / "nf4.yaml"), {"bnb_4bit_compute_dtype": "float32"})
    )
    dense = load_model(tiny_tokenizer.name_or_path, None, "float32")
    nf4 = load_model(tiny_tokenizer.name_or_path, quant, "float32")
    stored = sum(p.numel() for p in nf4.parameters())
    assert stored < sum(p.numel() for p in dense.parameters()), "4-bit weights store two values per element"
    assert dense_parameter_count(nf4) == dense_parameter_count(dense) == sum(p.numel() for p in dense.parameters())


def test_the_batch_log_is_fsynced_before_each_checkpoint_not_at_every_step(tmp_path, monkeypatch):
    """batches.jsonl rows are flushed as written (a killed process keeps them) and fsynced when a checkpoint is saved
    (a resume reads the rows before its checkpoint's step): an fsync per step made every step wait on the disk."""
    import os
    from types import SimpleNamespace

    from arastory.train.history import BatchLog, read_batch_log

    synced = []
    monkeypatch.setattr(os, "fsync", synced.append)
    log = BatchLog(tmp_path, resume_step=0)
    for step in range(5):
        trainer = SimpleNamespace(global_step=step, current_epoch=0)
        log.on_train_batch_start(trainer, None, {"example_ids": [f"e{step}"]}, step)
    assert synced == []
    assert [row["ids"] for row in read_batch_log(tmp_path)] == [[f"e{k}"] for k in range(5)]
    log.on_save_checkpoint(trainer, None, {})
    assert len(synced) == 1
    log.teardown(trainer, None, "fit")
    assert len(synced) == 2

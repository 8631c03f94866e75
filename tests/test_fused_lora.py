"""Fused LoRA (`model.fused_lora`): the one-addmm forward of LoRA on 4-bit layers trains exactly like peft's forward
(same dropout masks, same loss and gradients), and leaves peft's forward in charge where it cannot match it."""

import pytest
import torch

from arastory.train.fused_lora import fuse_lora


@pytest.fixture(scope="module")
def batch(tiny_tokenizer):
    from arastory.data.bundled import load_bundled_stories
    from arastory.train.datamodule import pad_collate
    from arastory.train.formatting import ExampleFormatter

    formatter = ExampleFormatter(tiny_tokenizer, max_length=128)
    examples = [formatter.encode(r.prompt, r.story) for r in load_bundled_stories()[:2]]
    return pad_collate(tiny_tokenizer.pad_token_id, extras=True)(examples)


def qlora_model(tokenizer, alpha: int):
    """The tiny base in NF4 (fp32 compute) with LoRA r=4 on every linear layer, dropout on, B nonzero."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf
    from peft import LoraConfig

    from arastory.paths import CONF_DIR
    from arastory.train.model import apply_lora, load_model

    quant = instantiate(
        OmegaConf.merge(OmegaConf.load(CONF_DIR / "quant" / "nf4.yaml"), {"bnb_4bit_compute_dtype": "float32"})
    )
    torch.manual_seed(0)
    config = LoraConfig(r=4, lora_alpha=alpha, lora_dropout=0.1, target_modules="all-linear", task_type="CAUSAL_LM")
    model = apply_lora(load_model(tokenizer.name_or_path, quant, "float32", "sdpa"), config, quantized=True)
    for name, param in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.02)  # B starts at zero in peft: make the adapter's update count
    return model


def loss_and_grads(model, batch) -> tuple[torch.Tensor, dict]:
    from arastory.train.loss import story_nll

    model.zero_grad()
    torch.manual_seed(1)  # the same dropout masks for both forwards
    loss = story_nll(model, batch)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("alpha", [8, 6])  # scaling 2 (a power of two: bitwise) and 1.5 (fp32 rounding)
def test_fused_lora_trains_like_peft_forward(tiny_tokenizer, batch, alpha, monkeypatch):
    from peft.tuners.lora.bnb import Linear4bit

    model = qlora_model(tiny_tokenizer, alpha)
    loss, grads = loss_and_grads(model, batch)
    assert fuse_lora(model, enabled=True) == 7 * 2  # q, k, v, o, gate, up, down in each of the 2 layers
    peft_calls = []
    peft_forward = Linear4bit.forward
    monkeypatch.setattr(
        Linear4bit, "forward", lambda self, *a, **k: peft_calls.append(1) or peft_forward(self, *a, **k)
    )
    fused_loss, fused_grads = loss_and_grads(model, batch)
    assert peft_calls == []  # every LoRA layer took the fused path
    if alpha == 8:
        assert torch.equal(fused_loss, loss)
        assert all(torch.equal(fused_grads[name], grad) for name, grad in grads.items())
    else:
        assert float(fused_loss) == pytest.approx(float(loss), rel=1e-6)
        for name, grad in grads.items():
            assert torch.allclose(fused_grads[name], grad, rtol=1e-4, atol=1e-7), name
    with model.disable_adapter(), torch.no_grad():  # disabled adapters: peft's own forward (the base alone)
        inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
        disabled = model(**inputs).logits
        assert len(peft_calls) == 7 * 2
        for layer in model.modules():
            layer.__dict__.pop("forward", None)  # peft's forward again
        assert torch.equal(model(**inputs).logits, disabled)

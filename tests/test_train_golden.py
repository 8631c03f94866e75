"""Training that can be trusted to learn: a recorded loss band for a short fixed tiny run, gradients that survive
bitsandbytes' CPU inference repacking, and the model kept on its training device from the first fit to sampling."""

import os

import pytest
import torch

# A short fixed variant of the default tiny run: two stages (translated, then Egyptian synthetic), 4-bit QLoRA.
GOLDEN = [
    "strategy=sequential",
    "dialect=egy",
    "data.synthetic.size=16",
    "data.translated.size=16",
    "batch_size=4",
    "data.max_length=256",
    "strategy.stages.0.max_steps=8",
    "strategy.stages.1.max_steps=20",
    "logger=csv",
    "sample.per_variety=1",
    "sample.max_new_tokens=8",
    "trainer.enable_progress_bar=false",
    "trainer.log_every_n_steps=1",
]
# Recorded on this project's CPU (2026-12, torch 2.13, bitsandbytes 0.50): stage 2 train loss 6.3005, val loss 7.1477,
# from ~8.3 (ln of the 4,000-token vocabulary) at step 0; ±0.05 leaves room for other CPUs' kernels.
GOLDEN_BAND = {"train_loss": (6.25, 6.35), "val_loss": (7.10, 7.20)}


@pytest.fixture(scope="module")
def golden_run(tmp_path_factory):
    """Train GOLDEN in this process with spies on where the model is: (metrics, run dir, spy records)."""
    from hydra import compose, initialize_config_dir

    from arastory.cli import register_resolvers
    from arastory.paths import CONF_DIR
    from arastory.train import recipe
    from arastory.train.module import StoryLM

    def model_device(model):
        return next(model.parameters()).device

    moved_to_cpu, sampled_on = [], []
    sample = recipe.generate_samples

    def spy_sampling(model, formatter, val_sets, sample_cfg, device=None):
        sampled_on.append({"asked": device, "before": model_device(model)})
        rows = sample(model, formatter, val_sets, sample_cfg, **({} if device is None else {"device": device}))
        sampled_on[-1]["during"] = model_device(model)
        return rows

    run_dir = tmp_path_factory.mktemp("golden") / "run"
    environ = dict(os.environ)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(StoryLM, "cpu", lambda self: moved_to_cpu.append(type(self).__name__) or self, raising=False)
        patch.setattr(recipe, "generate_samples", spy_sampling)
        register_resolvers()
        with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
            metrics = recipe.train(compose("train", overrides=GOLDEN), run_dir)
    os.environ.clear()
    os.environ.update(environ)
    return metrics, run_dir, {"moved_to_cpu": moved_to_cpu, "sampled_on": sampled_on}


def test_the_short_tiny_run_reaches_its_recorded_loss_band(golden_run):
    metrics, _run_dir, _ = golden_run
    last = metrics["stages"][-1]
    for key, (low, high) in GOLDEN_BAND.items():
        assert low <= last[key] <= high, f"{key}={last[key]} outside the recorded band [{low}, {high}]"
    assert metrics["stages"][0]["val_loss"] > last["val_loss"], "stage 2 improves on stage 1's validation loss"


def test_bits_per_character_and_word_follow_their_definition(golden_run):
    """bits/char = sum of the story tokens' NLL (nats, EOS included) / ln 2 / the story's characters; per word alike."""
    import math

    from hydra.utils import instantiate
    from omegaconf import OmegaConf
    from peft import PeftModel

    from arastory.train.data import build_training_data
    from arastory.train.formatting import ExampleFormatter
    from arastory.train.model import load_model, load_tokenizer, resolve_model_path

    metrics, run_dir, _ = golden_run
    cfg = OmegaConf.load(run_dir / "config.yaml")
    tokenizer = load_tokenizer(str(run_dir / "adapter"))
    base = load_model(resolve_model_path(cfg.model), instantiate(cfg.quant), cfg.model.dtype)  # the training layout
    model = PeftModel.from_pretrained(base, str(run_dir / "adapter")).eval()
    records = build_training_data(cfg.data, cfg.dialect, ["synthetic"], seed=cfg.seed).val["egy"]
    formatter = ExampleFormatter(tokenizer, max_length=cfg.data.max_length)
    nll = chars = words = 0.0
    with torch.no_grad():
        for record in records:
            example = formatter.encode(record.prompt, record.story)
            ids, labels = torch.tensor([example["input_ids"]]), torch.tensor([example["labels"]])
            logits = model(input_ids=ids).logits[0, :-1]
            nll += float(torch.nn.functional.cross_entropy(logits, labels[0, 1:], ignore_index=-100, reduction="sum"))
            chars, words = chars + example["story_chars"], words + example["story_words"]
    final = metrics["final"]
    assert final["val/egy/bpc"] == pytest.approx(nll / math.log(2) / chars, abs=2e-4)  # metrics.json rounds to 4 places
    assert final["val/egy/bpw"] == pytest.approx(nll / math.log(2) / words, abs=2e-4)


def test_sampling_and_validation_stay_on_the_training_device(golden_run):
    """Lightning's teardown moves the module to the CPU after every fit/validate; the resident strategy does not,
    and sampling asks for the trainer's root device (on a GPU run: the GPU, with no copy at stage boundaries)."""
    _, _, spy = golden_run
    assert spy["moved_to_cpu"] == [], "the model was moved to the CPU between fits"
    (sampling,) = spy["sampled_on"]
    assert sampling["asked"] == sampling["before"] == sampling["during"] == torch.device("cpu")


def test_gradients_survive_an_eval_forward_on_4bit_cpu_weights(tiny_tokenizer):
    """After an eval-mode forward (validation, sampling), bitsandbytes repacks 4-bit CPU weights for its AVX512-BF16
    inference kernel, which has no autograd: without keep_cpu_4bit_trainable, LoRA layers below lose their gradients.
    (The repacking only happens on CPUs with AVX512-BF16; elsewhere this test passes either way.)"""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf
    from peft import LoraConfig

    from arastory.data.bundled import load_bundled_stories
    from arastory.paths import CONF_DIR
    from arastory.train.datamodule import pad_collate
    from arastory.train.formatting import ExampleFormatter
    from arastory.train.model import apply_lora, load_model

    quant = instantiate(
        OmegaConf.merge(OmegaConf.load(CONF_DIR / "quant" / "nf4.yaml"), {"bnb_4bit_compute_dtype": "float32"})
    )
    formatter = ExampleFormatter(tiny_tokenizer, max_length=128)
    batch = pad_collate(tiny_tokenizer.pad_token_id)(
        [formatter.encode(r.prompt, r.story) for r in load_bundled_stories()[:2]]
    )
    inputs = {key: batch[key] for key in ("input_ids", "attention_mask", "labels")}

    def lora_grads(eval_forward_first: bool) -> dict:
        torch.manual_seed(0)
        model = apply_lora(
            load_model(tiny_tokenizer.name_or_path, quant, "float32"),
            LoraConfig(r=4, target_modules=["q_proj", "v_proj", "down_proj"], lora_dropout=0.0, task_type="CAUSAL_LM"),
            quantized=True,
        )
        for name, param in model.named_parameters():
            if "lora_B" in name:
                torch.nn.init.normal_(param, std=0.02)  # nonzero B: gradients reach A through every layer
        if eval_forward_first:
            model.eval()
            with torch.no_grad():
                model(**inputs)
            model.train()
        model(**inputs).loss.backward()
        return {name: param.grad for name, param in model.named_parameters() if param.requires_grad}

    reference, after_eval = lora_grads(False), lora_grads(True)
    missing = [name for name, grad in after_eval.items() if grad is None]
    assert not missing, f"{len(missing)} LoRA tensors got no gradient after an eval forward, e.g. {missing[0]}"
    assert all(torch.equal(after_eval[name], reference[name]) for name in reference)

"""Benchmark: QLoRA training throughput of a Llama-2-7B-shaped model on one GPU: the study's setup, arastory unpacked,
arastory packed, and each optimisation of the packed run switched off (or on) in turn.

    python bench/bench_gpu.py [--json FILE] [--budget-s 420]     # one H100/H200: within 8 minutes
    python bench/bench_gpu.py --cpu --quick [--json FILE]         # tiny shapes on the CPU: checks the code paths

The model is built from a LlamaConfig with random weights (nothing is downloaded or written to disk): bf16 on the GPU,
then every linear layer but the LM head is quantized in place to NF4 with double quantization (bitsandbytes
Linear4bit, bf16 compute), and the project's LoRA (arastory/conf/peft/lora.yaml with acegpt_7b's targets: all linear
layers) is applied with arastory's `apply_lora`. Examples are random tokens at realistic lengths: prompt + story +
template lengths drawn from the released stories' Llama-2-tokenizer distribution (PERCENTILES below, measured once on
../shared/data/arastories with the Llama-2 tokenizer.json), truncated at --max-length, the prompt share masked as
in training. Every setup trains on the same examples with arastory's collates (`pad_collate`, `packed_collate`),
loss (`story_nll`) and optimizer choice (`use_fused_adamw`), in a plain loop (bf16 autocast; Lightning's own loop
overhead is measured on the CPU by bench_peers.py).

Reported per setup: non-padding tokens/s (median step), padding share, peak GPU memory, and MFU = 4N FLOPs per token
(N = the base model's parameters: forward 2N + backward through the frozen weights 2N) over 989 TFLOP/s (dense bf16,
H100/H200). flash-attn and liger-kernel are optional: their rows say "not installed" when they are absent.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PEAK_FLOPS = 989e12  # H100/H200 SXM dense bf16
# Tokens of prompt + story + 12 template tokens of the 2,546 released stories with the Llama-2 tokenizer, at the
# 0th, 5th, ..., 100th percentile; the prompt is ~18% of an example (median 298 of 1,628 tokens).
PERCENTILES = [
    998,
    1314,
    1384,
    1434,
    1472,
    1505,
    1532,
    1558,
    1583,
    1605,
    1628,
    1650,
    1680,
    1705,
    1733,
    1764,
    1795,
    1831,
    1884,
    1963,
    2320,
]
PROMPT_SHARE = 0.18
SHAPES = {
    "llama2_7b": {
        "hidden_size": 4096,
        "intermediate_size": 11008,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 32,
        "vocab_size": 32000,
        "max_position_embeddings": 4096,
    },
    "tiny": {
        "hidden_size": 128,
        "intermediate_size": 384,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "vocab_size": 4000,
        "max_position_embeddings": 4096,
    },
}
GPU = {"shape": "llama2_7b", "examples": 96, "max_length": 2048, "batch": 4, "warmup": 2, "steps": 6, "scale": 1.0}
CPU_QUICK = {"shape": "tiny", "examples": 24, "max_length": 256, "batch": 4, "warmup": 1, "steps": 2, "scale": 1 / 12}


# ------------------------------------------------------------------------------------------------------ the model
def build_base(shape: dict, device, dtype):
    """A LlamaForCausalLM with random weights on `device`, its linear layers (not the LM head) NF4 double-quant."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(**shape, attn_implementation="sdpa")
    with torch.device(device):
        model = LlamaForCausalLM._from_config(config, dtype=dtype)
    parameters = sum(p.numel() for p in model.parameters())
    quantize_linears(model, dtype)
    model.is_loaded_in_4bit = True  # what from_pretrained(quantization_config=...) sets: peft prepares it as QLoRA
    return model, parameters


def quantize_linears(model, compute_dtype) -> None:
    """Replace each nn.Linear but `lm_head` by a bitsandbytes Linear4bit (NF4, double quant) holding its weights."""
    import bitsandbytes as bnb
    import torch

    for name, module in list(model.named_modules()):
        if not isinstance(module, torch.nn.Linear) or name.endswith("lm_head"):
            continue
        weight = module.weight.data
        layer = bnb.nn.Linear4bit(
            module.in_features,
            module.out_features,
            bias=module.bias is not None,
            compute_dtype=compute_dtype,
            compress_statistics=True,
            quant_type="nf4",
            device="meta",
        )
        layer.weight = bnb.nn.Params4bit(
            weight, requires_grad=False, compress_statistics=True, quant_type="nf4", module=layer
        )._quantize(weight.device)
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent), child, layer)
        del module, weight


def peft_model(base, device):
    """The project's LoRA over acegpt_7b's targets (all linear layers), applied by arastory's apply_lora."""
    import torch
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from arastory.cli import register_resolvers
    from arastory.paths import CONF_DIR
    from arastory.train.model import apply_lora

    register_resolvers()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=["model=acegpt_7b", "peft.lora_dropout=0"])
    torch.manual_seed(0)
    model = apply_lora(base, instantiate(cfg.peft, _convert_="all"), quantized=True)
    return model.to(device) if device.type == "cpu" else model


# --------------------------------------------------------------------------------------------------- the examples
def sample_lengths(count: int, max_length: int, scale: float, seed: int = 0) -> list[int]:
    """Example lengths drawn from PERCENTILES (linear between them), times `scale`, capped at max_length."""
    rng = random.Random(seed)
    lengths = []
    for _ in range(count):
        q = rng.random() * (len(PERCENTILES) - 1)
        low = int(q)
        value = PERCENTILES[low] + (q - low) * (PERCENTILES[min(low + 1, len(PERCENTILES) - 1)] - PERCENTILES[low])
        lengths.append(min(max_length, max(8, int(value * scale))))
    return lengths


def make_examples(lengths: list[int], vocab: int, eos: int = 2, seed: int = 0) -> list[dict]:
    """Random-token examples: the prompt share's labels masked, ending in EOS (learned), as the formatter builds it."""
    from arastory.train.formatting import IGNORE_INDEX

    rng = random.Random(seed)
    examples = []
    for index, length in enumerate(lengths):
        ids = [rng.randrange(3, vocab) for _ in range(length - 1)] + [eos]
        prompt = max(1, int(length * PROMPT_SHARE))
        examples.append({"id": str(index), "input_ids": ids, "labels": [IGNORE_INDEX] * prompt + ids[prompt:]})
    return examples


def batches(examples: list[dict], batch: int, packed: bool, max_length: int) -> list[dict]:
    """The setup's batches, collated by arastory: padded batches of `batch`, or rows of <= batch * max_length tokens."""
    from arastory.train.datamodule import pad_collate
    from arastory.train.packing import pack_rows, packed_collate

    if packed:
        rows = pack_rows([len(e["input_ids"]) for e in examples], batch * max_length, seed=0)
        collate = packed_collate(with_ids=False)
        return [collate([[examples[i] for i in row]]) for row in rows]
    collate = pad_collate(0, extras=True)
    return [collate(examples[k : k + batch]) for k in range(0, len(examples), batch)]


# ------------------------------------------------------------------------------------------------------ the setups
def setups(flash: bool, liger: bool) -> list[dict]:
    """Each setup: batch (examples per step, or packed-row budget in max_lengths), packing, attention, fused AdamW,
    story-only logits, gradient checkpointing ('auto': arastory's memory rule), liger, compile. The last two are
    applied in place and cannot be undone, so they come last and stack."""
    packed = {"batch": 4, "packed": True, "attention": "auto", "fused": True}
    packed |= {"story_logits": True, "checkpointing": "auto"}
    return [
        {
            "name": "study_bs1",
            "batch": 1,
            "packed": False,
            "attention": "sdpa",
            "fused": False,
            "story_logits": False,
            "checkpointing": True,
        },
        dict(packed, name="arastory_unpacked", packed=False),
        dict(packed, name="arastory_packed"),
        dict(packed, name="packed_without_fused_adamw", fused=False),
        dict(packed, name="packed_without_story_only_logits", story_logits=False),
        dict(packed, name="packed_with_gradient_checkpointing", checkpointing=True),
        dict(packed, name="packed_sdpa_not_flash", attention="sdpa")
        if flash
        else {"name": "packed_flash_attention_2", "skip": "flash-attn not installed"},
        dict(packed, name="packed_with_liger", liger=True)
        if liger
        else {"name": "packed_with_liger", "skip": "liger-kernel not installed"},
        dict(packed, name="packed_with_compile" + ("_and_liger" if liger else ""), compile=True, liger=liger),
    ]


def full_logits_nll(model, batch: dict):
    """The usual HF causal-LM loss: logits at every position, then cross-entropy of the labelled ones."""
    import torch.nn.functional as F

    from arastory.train.loss import FORWARD_KEYS

    logits = model(**{k: batch[k] for k in FORWARD_KEYS if k in batch}, use_cache=False).logits[:, :-1]
    return F.cross_entropy(
        logits.reshape(-1, logits.size(-1)).float(), batch["labels"][:, 1:].reshape(-1), ignore_index=-100
    )


def configure(model, setup: dict, device, tokens_per_step: int) -> dict:
    """Put the model in the setup's state; returns what was resolved (attention, checkpointing)."""
    from arastory.train.attention import resolve_attn_implementation
    from arastory.train.speedups import apply_liger, compile_layers, want_gradient_checkpointing

    attention = resolve_attn_implementation(setup["attention"], setup["packed"], device.type == "cuda")
    model.base_model.model.set_attn_implementation(attention)
    base = model.base_model.model
    checkpointing = want_gradient_checkpointing(setup["checkpointing"], base.config, tokens_per_step, device)
    if checkpointing:
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    else:
        base.gradient_checkpointing_disable()
    if setup.get("liger") and not getattr(model, "_liger_applied", False):
        apply_liger(base, True)
        model._liger_applied = True
    if setup.get("compile"):
        compile_layers(base, True)
    return {"attention": attention, "gradient_checkpointing": checkpointing}


def run_setup(model, setup: dict, examples: list[dict], plan: dict, device, parameters: int) -> dict:
    import torch

    from arastory.train.loss import story_nll
    from arastory.train.module import use_fused_adamw

    steps = batches(examples, setup["batch"], setup["packed"], plan["max_length"])
    steps = steps[: plan["warmup"] + plan["steps"]]
    resolved = configure(model, setup, device, max(b["num_slots"] for b in steps))
    params = [p for p in model.parameters() if p.requires_grad]
    fused = use_fused_adamw(setup["fused"], params) if setup["fused"] else False
    optimizer = torch.optim.AdamW(params, lr=1e-4, fused=fused)
    loss_fn = story_nll if setup["story_logits"] else full_logits_nll
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    times, tokens, slots, losses = [], [], [], []
    model.train()
    for index, batch in enumerate(steps):
        batch = {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
        if cuda:
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            loss = loss_fn(model, batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.detach().item())  # one sync per step, as Lightning's logged loss
        if index >= plan["warmup"]:
            times.append(time.perf_counter() - start)
            tokens.append(batch["num_tokens"])
            slots.append(batch["num_slots"])
    rates = sorted(t / s for t, s in zip(tokens, times, strict=False))
    rate = statistics.median(rates)
    return {
        "tokens_per_s": round(rate, 1),
        "padding_fraction": round(1 - sum(tokens) / sum(slots), 4),
        "tokens_per_step": round(statistics.mean(tokens)),
        "timed_steps": len(times),
        "peak_memory_gib": round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if cuda else None,
        "mfu": round(4 * parameters * rate / PEAK_FLOPS, 4) if cuda else None,
        "fused_adamw": fused,
        "final_loss": round(losses[-1], 4),
        **resolved,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu", action="store_true", help="run on the CPU (with --quick: tiny shapes)")
    parser.add_argument("--quick", action="store_true", help="tiny shapes, short examples, 1 warm-up + 2 timed steps")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--budget-s", type=float, default=420, help="stop starting new setups after this many seconds")
    args = parser.parse_args()
    import importlib.util

    import torch

    if not args.cpu and not torch.cuda.is_available():
        raise SystemExit("bench_gpu: no CUDA device visible; use --cpu --quick to check the code paths on the CPU")
    plan = dict(CPU_QUICK if args.quick else GPU)
    device = torch.device("cpu" if args.cpu else "cuda", 0 if not args.cpu else None)
    started = time.perf_counter()
    base, parameters = build_base(SHAPES[plan["shape"]], device, torch.float32 if args.cpu else torch.bfloat16)
    model = peft_model(base, device)
    built = time.perf_counter() - started
    lengths = sample_lengths(plan["examples"], plan["max_length"], plan["scale"])
    examples = make_examples(lengths, SHAPES[plan["shape"]]["vocab_size"])
    flash = importlib.util.find_spec("flash_attn") is not None and device.type == "cuda"
    liger = importlib.util.find_spec("liger_kernel") is not None and device.type == "cuda"
    results = {}
    print(
        f"{plan['shape']} ({parameters / 1e6:,.1f}M parameters) built and quantized in {built:.0f} s on {device}; "
        f"{len(examples)} examples, median {statistics.median(lengths)} tokens",
        flush=True,
    )
    for setup in setups(flash, liger):
        name = setup["name"]
        if "skip" in setup:
            results[name] = {"skipped": setup["skip"]}
        elif time.perf_counter() - started > args.budget_s:
            results[name] = {"skipped": f"time budget of {args.budget_s:.0f} s spent"}
        else:
            clock = time.perf_counter()
            results[name] = run_setup(model, setup, examples, plan, device, parameters)
            results[name]["seconds"] = round(time.perf_counter() - clock, 1)
        print(f"{name:<36} {results[name]}", flush=True)
    study = results["study_bs1"]["tokens_per_s"]
    for row in results.values():
        if "tokens_per_s" in row:
            row["ratio_to_study"] = round(row["tokens_per_s"] / study, 2)
    summary = {
        **results,
        "settings": {
            **plan,
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "parameters": parameters,
            "peak_flops": PEAK_FLOPS,
            "median_example_tokens": statistics.median(lengths),
            "seconds": round(time.perf_counter() - started, 1),
            "torch": torch.__version__,
        },
    }
    print(
        f"arastory packed / study setup: {results['arastory_packed']['ratio_to_study']:.2f}x; total "
        f"{summary['settings']['seconds']:.0f} s"
    )
    if args.json:
        from arastory.io import atomic_write_json

        atomic_write_json(args.json, summary)


if __name__ == "__main__":
    main()

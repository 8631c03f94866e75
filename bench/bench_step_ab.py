"""Benchmark: one optimisation of arastory's packed training step on and off, in one process, CPU time per token.

    python bench/bench_step_ab.py fused_lora [--steps 84] [--per-variety 8]
    python bench/bench_step_ab.py gqa

bench_peers.py measures whole runs in fresh processes, where a few percent drown in a shared machine's noise. Here
the tiny model (NF4, the run's LoRA, `sdpa_packed`) trains on the bench's packed rows (same examples and row budget
as bench_peers.py's `arastory`) with AdamW, and the variant is switched per step in an ABBA order, so both sides see
the same rows and the same machine load. Reported: non-padding tokens per CPU-second of this thread, on and off
(the first two steps of each side are warm-up), and their ratio.

    fused_lora  `model.fused_lora` (arastory/train/fused_lora.py) against peft's own forward
    gqa         `sdpa_packed` with `enable_gqa` (the current code) against key/value heads copied by `repeat_kv`
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def packed_model_and_rows(per_variety: int):
    """bench_peers.py's arastory setup, in-process: the model with its LoRA and the packed rows, collated."""
    import torch
    from hydra.utils import instantiate

    from arastory.train.attention import resolve_attn_implementation
    from arastory.train.model import apply_lora, load_model
    from arastory.train.packing import pack_rows, packed_collate
    from bench.bench_peers import BATCH, SEED, workload

    work = workload(per_variety)
    cfg = work["cfg"]
    attention = resolve_attn_implementation("sdpa", packing=True, on_cuda=False)
    base = load_model(work["path"], instantiate(cfg.quant), cfg.model.dtype, attention)
    torch.manual_seed(SEED)
    model = apply_lora(base, instantiate(cfg.peft, _convert_="all"), quantized=True)
    lengths = [len(e["input_ids"]) for e in work["train"]]
    budget = max(max(lengths), round(BATCH * sum(lengths) / len(lengths)))
    collate = packed_collate(with_ids=False)
    rows = [collate([[work["train"][i] for i in row]]) for row in pack_rows(lengths, budget, SEED)]
    return model, rows


def fused_lora_switch(model):
    from arastory.train.fused_lora import fuse_lora

    fuse_lora(model, enabled=True)
    fused = {layer: layer.__dict__["forward"] for layer in model.modules() if "forward" in layer.__dict__}

    def switch(on: bool) -> None:
        for layer, forward in fused.items():
            if on:
                layer.forward = forward
            else:
                layer.__dict__.pop("forward", None)  # peft's forward

    return switch


def gqa_switch(model):
    """Off: the key/value heads repeated per query group before SDPA, as sdpa_packed did before `enable_gqa`."""
    import torch.nn.functional as F
    from transformers.integrations.sdpa_attention import repeat_kv

    from arastory.train import attention

    state = {"on": True}

    def sdpa(query, key, value, enable_gqa=False, **kwargs):
        if enable_gqa and not state["on"]:
            groups = query.shape[1] // key.shape[1]
            key, value, enable_gqa = repeat_kv(key, groups), repeat_kv(value, groups), False
        return F.scaled_dot_product_attention(query, key, value, enable_gqa=enable_gqa, **kwargs)

    attention.F = type("F", (), {"scaled_dot_product_attention": staticmethod(sdpa)})
    return lambda on: state.update(on=on)


SWITCHES = {"fused_lora": fused_lora_switch, "gqa": gqa_switch}


def measure(variant: str, steps: int, per_variety: int) -> dict:
    import torch

    from arastory.train.loss import story_nll

    model, rows = packed_model_and_rows(per_variety)
    switch = SWITCHES[variant](model)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, fused=True)
    spent = {True: [], False: []}
    for step in range(steps):
        on = step % 4 in (0, 3)  # ABBA: neither side always runs first
        switch(on)
        row = rows[step % len(rows)]
        start = time.thread_time()
        optimizer.zero_grad()
        story_nll(model, row).backward()
        optimizer.step()
        spent[on].append((time.thread_time() - start, row["num_tokens"]))
    rate = {on: sum(n for _, n in runs[2:]) / sum(s for s, _ in runs[2:]) for on, runs in spent.items()}
    return {"on": round(rate[True], 1), "off": round(rate[False], 1), "ratio": round(rate[True] / rate[False], 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variant", choices=sorted(SWITCHES))
    parser.add_argument("--steps", type=int, default=84, help="training steps, both sides together")
    parser.add_argument("--per-variety", type=int, default=8, help="training stories per variety (as bench_peers)")
    args = parser.parse_args()
    os.environ.setdefault("ARASTORY_CACHE", str(Path("/tmp") / "arastory-bench-cache"))
    warnings.filterwarnings("ignore")
    import torch

    torch.set_num_threads(1)
    result = measure(args.variant, args.steps, args.per_variety)
    print(
        f"{args.variant}: {result['on']:.0f} tokens/CPU-s on, {result['off']:.0f} off: {result['ratio']:.3f}x "
        f"({args.steps} steps, ABBA, 1 thread)"
    )


if __name__ == "__main__":
    main()

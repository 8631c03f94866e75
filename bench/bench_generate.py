"""Benchmark: batched story generation (one left-padded `generate` call per batch) against one prompt at a time.

    python bench/bench_generate.py [--quick] [--json FILE] [--batch 16] [--new-tokens N] [--rounds R] [--threads T]

Both ways run the same code (`arastory.train.generate.generate_batch`, which evaluation's LocalGenerator and training's
end-of-run samples call) on the same model: the tiny base in NF4 double-quant with the run's LoRA
(arastory/conf/model/tiny.yaml, arastory/conf/quant, arastory/conf/peft), on the CPU, sampling at the evaluation
defaults (temperature 0.7, top-p 0.95). The prompts are the first BATCH bundled prompts (different lengths, so
batches are really left-padded). Tokens counted are the story tokens each prompt got (plus its stop token when it
stopped), so a batch that waits for its longest story earns nothing for the padding. Rounds alternate which way goes
first; the table shows medians. vLLM (evaluate's `system.engine=vllm`) needs a GPU and is not measured here.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

QUICK = {"rounds": 2, "new_tokens": 32}
FULL = {"rounds": 3, "new_tokens": 128}


def load(seed: int = 0):
    """(model, formatter): the tiny base in 4-bit with a LoRA adapter, as evaluation loads a tiny run."""
    import torch
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from arastory.cli import register_resolvers
    from arastory.paths import CONF_DIR
    from arastory.train.formatting import ExampleFormatter
    from arastory.train.model import apply_lora, load_model, load_tokenizer, resolve_model_path

    register_resolvers()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("train")
    path = resolve_model_path(cfg.model)
    tokenizer = load_tokenizer(path)
    torch.manual_seed(seed)
    model = apply_lora(
        load_model(path, instantiate(cfg.quant), cfg.model.dtype, "sdpa"),
        instantiate(cfg.peft, _convert_="all"),
        quantized=True,
    )
    return model.eval(), ExampleFormatter(tokenizer, cfg.data.max_length, "truncate")


def timed(model, formatter, prompts: list[str], batch: int, new_tokens: int, seed: int) -> dict:
    """Generate one story per prompt in batches of `batch`; tokens, seconds, tokens/s."""
    import torch

    from arastory.train.generate import generate_batch

    torch.manual_seed(seed)
    start, tokens = time.perf_counter(), 0
    for first in range(0, len(prompts), batch):
        for story in generate_batch(model, formatter, prompts[first : first + batch], new_tokens, 0.7, 0.95, True):
            tokens += story["meta"]["new_tokens"] + story["meta"]["finished"]
    seconds = time.perf_counter() - start
    return {"tokens": tokens, "seconds": seconds, "tokens_per_s": tokens / seconds}


def measure(batch: int, new_tokens: int, rounds: int) -> dict:
    from arastory.data.bundled import load_bundled_stories

    model, formatter = load()
    prompts = [record.prompt for record in load_bundled_stories()[:batch]]
    timed(model, formatter, prompts[:2], 2, 4, seed=0)  # warm-up: first-call allocations and kernel selection
    ways = {"batched": batch, "sequential": 1}
    runs: dict[str, list[dict]] = {name: [] for name in ways}
    for round_ in range(rounds):
        for name in list(ways) if round_ % 2 == 0 else list(ways)[::-1]:
            result = timed(model, formatter, prompts, ways[name], new_tokens, seed=round_)
            runs[name].append(result)
            print(
                f"round {round_ + 1} {name:<11} {result['tokens_per_s']:>8.1f} tokens/s "
                f"({result['tokens']} tokens in {result['seconds']:.1f} s)",
                flush=True,
            )
    summary = {name: round(statistics.median(r["tokens_per_s"] for r in results), 1) for name, results in runs.items()}
    summary["speedup"] = round(summary["batched"] / summary["sequential"], 2)
    summary["rounds"] = {name: [round(r["tokens_per_s"], 1) for r in results] for name, results in runs.items()}
    summary["tokens"] = {name: [r["tokens"] for r in results] for name, results in runs.items()}
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help=f"{QUICK['rounds']} rounds of {QUICK['new_tokens']} new tokens per prompt"
    )
    parser.add_argument("--json", type=Path, help="write the summary here")
    parser.add_argument("--batch", type=int, default=16, help="prompts, and the batch size of the batched way")
    parser.add_argument("--new-tokens", type=int, help="max_new_tokens per story")
    parser.add_argument("--rounds", type=int)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (default 1: on a shared machine more threads measure contention; 0 = default)",
    )
    args = parser.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    preset = QUICK if args.quick else FULL
    new_tokens, rounds = args.new_tokens or preset["new_tokens"], args.rounds or preset["rounds"]
    summary = measure(args.batch, new_tokens, rounds)
    summary["settings"] = {
        "batch": args.batch,
        "prompts": args.batch,
        "max_new_tokens": new_tokens,
        "rounds": rounds,
        "model": "tiny (arastory/conf/model/tiny.yaml), NF4 double-quant + LoRA, fp32 compute, CPU",
        "sampling": "temperature 0.7, top_p 0.95",
        "torch_threads": args.threads or "torch default",
    }
    print(
        f"batched (batch {args.batch}): {summary['batched']:.1f} tokens/s; sequential: {summary['sequential']:.1f} "
        f"tokens/s; batched / sequential = {summary['speedup']:.2f}x"
    )
    if args.json:
        from arastory.io import atomic_write_json

        atomic_write_json(args.json, summary)


if __name__ == "__main__":
    main()

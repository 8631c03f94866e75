"""bench/bench_gpu.py's code path on the CPU at tiny shapes: a LlamaConfig model quantized in place to NF4, arastory's
LoRA, the study's and the packed setup each trained a step (the GPU numbers themselves need a GPU)."""

import sys

import torch

from arastory.paths import REPO_DIR

sys.path.insert(0, str(REPO_DIR / "bench"))
import bench_gpu


def test_bench_gpu_quantizes_in_place_and_trains_the_study_and_the_packed_setup():
    import bitsandbytes as bnb

    device = torch.device("cpu")
    base, parameters = bench_gpu.build_base(bench_gpu.SHAPES["tiny"], device, torch.float32)
    linears = [m for m in base.modules() if isinstance(m, torch.nn.Linear)]
    assert sum(isinstance(m, bnb.nn.Linear4bit) for m in linears) == len(linears) - 1 == 14, "all but the LM head"
    assert all(m.weight.quant_type == "nf4" and m.weight.quant_state.nested for m in linears[:-1]), "NF4 double quant"
    model = bench_gpu.peft_model(base, device)
    lengths = bench_gpu.sample_lengths(12, 256, 1 / 12)
    assert 100 < sorted(lengths)[6] < 160 and max(lengths) <= 256
    examples = bench_gpu.make_examples(lengths, 4000)
    plan = dict(bench_gpu.CPU_QUICK, warmup=0, steps=1)
    study, packed = (
        s for s in bench_gpu.setups(flash=False, liger=False) if s["name"] in ("study_bs1", "arastory_packed")
    )
    rows = {s["name"]: bench_gpu.run_setup(model, s, examples, plan, device, parameters) for s in (study, packed)}
    assert rows["study_bs1"]["tokens_per_step"] == lengths[0] and rows["study_bs1"]["gradient_checkpointing"] is True
    assert rows["arastory_packed"]["attention"] == "sdpa_packed" and rows["arastory_packed"]["padding_fraction"] == 0
    assert (
        rows["arastory_packed"]["tokens_per_step"] > 3 * lengths[0] and rows["arastory_packed"]["fused_adamw"] is True
    )
    assert all(6 < row["final_loss"] < 12 for row in rows.values()), rows

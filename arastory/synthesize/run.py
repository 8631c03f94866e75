"""Synthetic stories end to end: sample prompts (seeded), ask a generator, gate every answer, write records and a report.

Files in the output dir:
  prompts.jsonl                 the sampled prompts (ids stable for a variety, seed and prompts config)
  generations.jsonl             the ledger: every answer, appended (fsynced) as it arrives; a rerun skips these ids
  generations.jsonl.errors.jsonl  prompts that failed after all retries (asked again by the next run)
  stories.jsonl / rejected.jsonl  the gated split, rebuilt atomically from the ledger at the end of every run
  report.json                   counts, gates, tokens, estimated cost, retries, elapsed
"""

from __future__ import annotations

import time
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from arastory.data.shards import Shard, write_manifest
from arastory.errors import ConfigError
from arastory.io import atomic_write_json, atomic_write_jsonl, iter_jsonl
from arastory.llm import estimate_cost
from arastory.prompts import PromptSampler
from arastory.records import StoryRecord
from arastory.synthesize.gates import GATES, QualityGates

LEDGER = "generations.jsonl"


def build(node: DictConfig):
    """hydra.utils.instantiate, with our own one-line errors unwrapped from Hydra's InstantiationException."""
    from hydra.errors import InstantiationException

    from arastory.errors import ArastoryError

    try:
        return instantiate(node, _convert_="all")
    except InstantiationException as error:
        cause = error.__cause__
        if isinstance(cause, ArastoryError):
            raise cause from None
        raise


def sample_prompts(cfg: DictConfig) -> list[dict]:
    """`cfg.n` prompts for `cfg.variety`; the first k are the same for any n >= k (so a larger n extends a run)."""
    if not isinstance(cfg.n, int) or cfg.n < 1:
        raise ConfigError("n", f"must be a positive integer, got {cfg.n!r}")
    sampler = PromptSampler(variety_name(cfg), order=list(cfg.sampler.order), always=list(cfg.sampler.always),
                            p_optional=cfg.sampler.p_optional, seed=cfg.seed,
                            balance_block=cfg.sampler.get("balance_block"))
    return [p.to_dict() for p in sampler.sample(cfg.n, id_prefix=f"{variety_name(cfg)}-s{cfg.seed}")]


def variety_name(cfg: DictConfig) -> str:
    """`variety=egy` selects conf/variety/egy.yaml; its `name` is the variety's id."""
    return str(cfg.variety.name)


def check_same_prompts(out_dir: Path, prompts: list[dict]) -> None:
    """Refuse to resume into a dir whose earlier prompts differ (another seed, variety or prompts config)."""
    path = out_dir / "prompts.jsonl"
    if not path.exists():
        return
    ours = {p["id"]: p["prompt"] for p in prompts}
    for lineno, row in iter_jsonl(path, on_error="skip"):
        if row.get("id") in ours and ours[row["id"]] != row.get("prompt"):
            raise ConfigError("out", f"{path}:{lineno} holds a different prompt for {row['id']} (changed seed, "
                                     "variety or prompts config?); use a new out dir")


def load_ledger(path: Path) -> dict[str, dict]:
    if not path.exists():
        return {}
    return {row["id"]: row for _, row in iter_jsonl(path, on_error="skip") if "id" in row}


def build_gates(cfg: DictConfig):
    """The quality gates, with the dialect identifier built first so config errors come before any request."""
    gates_cfg = OmegaConf.to_container(cfg.gates, resolve=True)
    identifier = None
    if gates_cfg.get("check_variety", True):
        identifier = build(cfg.dialect_id)
        known = list(getattr(identifier, "classes", []))
        if variety_name(cfg) not in known:
            raise ConfigError("gates.check_variety", f"the dialect identifier knows {', '.join(known)}, not "
                                                     f"'{variety_name(cfg)}': train it on labelled {variety_name(cfg)} text "
                                                     "(dialect_id.source=...) or set gates.check_variety=false")
    return QualityGates(**gates_cfg, identifier=identifier)


def split_by_gates(prompts: list[dict], ledger: dict[str, dict], gates: QualityGates, generator) -> tuple[list, list]:
    """(kept records, rejected rows) in prompt order, so duplicates are decided the same way on every run."""
    kept, rejected = [], []
    answered = [p for p in prompts if p["id"] in ledger]
    for prompt in tqdm(answered, desc="quality gates", unit="story", dynamic_ncols=True, disable=len(answered) < 50):
        answer = ledger[prompt["id"]]
        result = gates.check(prompt["id"], answer.get("text") or "", prompt["variety"])
        meta = {"generator": answer.get("generator", generator.name), "model": answer.get("model"),
                "usage": answer.get("usage", {}), "retries": answer.get("retries", 0), "gates": result.checks}
        record = StoryRecord(id=prompt["id"], variety=prompt["variety"], prompt=prompt["prompt"],
                             story=(answer.get("text") or "").strip(), features=prompt["features"],
                             source="synthetic", meta=meta)
        if result.kept:
            kept.append(record.to_dict())
        else:
            rejected.append({**record.to_dict(), "reason": result.reason, "detail": result.detail})
    return kept, rejected


def token_totals(rows) -> dict:
    totals = {"prompt_tokens": 0, "completion_tokens": 0}
    for row in rows:
        for key in totals:
            totals[key] += int((row.get("usage") or {}).get(key, 0) or 0)
    return totals


def synthesize(cfg: DictConfig, out_dir: str | Path) -> dict:
    """Run (or resume, or dry-run) one synthesis job into `out_dir`; returns the report."""
    started = time.perf_counter()
    out_dir = Path(out_dir)
    prompts = sample_prompts(cfg)
    shard = Shard.parse(cfg.get("shard"))
    if shard:  # every n-th prompt of the n sampled, so the shards' union is the unsharded job's prompts
        prompts = list(shard.select(prompts))
    generator = build(cfg.generator)
    check_same_prompts(out_dir, prompts)
    atomic_write_jsonl(out_dir / "prompts.jsonl", prompts)
    base = {"variety": variety_name(cfg), "requested": len(prompts), "generator": generator.name, "model": generator.model,
            "seed": cfg.seed}
    if cfg.dry_run:
        return dry_run_report(base, generator, prompts, out_dir, started)

    generator.preflight()
    gates = build_gates(cfg)
    run = generator.run(prompts, out_dir / LEDGER, desc=f"synthesize {variety_name(cfg)}")
    ledger = load_ledger(out_dir / LEDGER)
    kept, rejected = split_by_gates(prompts, ledger, gates, generator)
    atomic_write_jsonl(out_dir / "stories.jsonl", kept)
    atomic_write_jsonl(out_dir / "rejected.jsonl", rejected)

    answers = [ledger[p["id"]] for p in prompts if p["id"] in ledger]
    tokens = token_totals(answers)
    by_gate = {gate: sum(r["reason"] == gate for r in rejected) for gate in GATES}
    report = {
        **base, "dry_run": False, "generated": len(answers), "failed": len(prompts) - len(answers),
        "rejected": by_gate, "rejected_total": len(rejected), "kept": len(kept),
        "tokens": tokens, "estimated_cost_usd": estimate_cost(generator.model, **tokens),
        "retries": sum(int(a.get("retries", 0) or 0) for a in answers),
        "this_run": {"answered": run.answered, "already_answered": run.already_done, "failed": run.failed,
                     "requests": run.requests, "errors": run.errors[:20]},
        "elapsed_s": round(time.perf_counter() - started, 2),
        "files": {"stories": "stories.jsonl", "rejected": "rejected.jsonl", "ledger": LEDGER},
    }
    atomic_write_json(out_dir / "report.json", report)
    if shard:
        identity = {"variety": variety_name(cfg), "seed": cfg.seed, "n": cfg.n, "generator": generator.name,
                    "model": generator.model, "sampler": OmegaConf.to_container(cfg.sampler, resolve=True),
                    "gates": OmegaConf.to_container(cfg.gates, resolve=True)}
        write_manifest(out_dir, "synthesize", shard, report["failed"] == 0, identity, report)
    return report


def dry_run_report(base: dict, generator, prompts: list[dict], out_dir: Path, started: float) -> dict:
    tokens = generator.estimate(prompts)
    report = {**base, "dry_run": True, "estimated_tokens": tokens,
              "estimated_cost_usd": estimate_cost(generator.model, **tokens),
              "note": "estimate: prompt characters / generator.chars_per_token, "
                      "completion = expected tokens per story x prompts (ours); nothing was called",
              "elapsed_s": round(time.perf_counter() - started, 2), "files": {"prompts": "prompts.jsonl"}}
    atomic_write_json(out_dir / "report.json", report)
    return report

"""Synthetic stories end to end: sample prompts (seeded), ask a generator until `n` answers pass the gates, write
records and a report.

`n` counts stories kept. Prompts are taken in their seeded order, a round at a time: each round asks for as many
fresh prompts as the keep rate so far says are needed for the rest, until n stories pass or `max_attempts` prompts
have been sent. Everything is recomputed from the ledger, so a rerun (after a kill, or with a larger n) continues
exactly where the last one stopped and never asks a prompt that has an answer.

Files in the output dir:
  prompts.jsonl                 the prompts that may be sent (max_attempts of them; ids stable for a variety, seed
                                and prompts config)
  generations.jsonl             the ledger: every answer, appended (fsynced) as it arrives; a rerun skips these ids
  generations.jsonl.errors.jsonl  prompts that failed after all retries (asked again by the next run)
  stories.jsonl / rejected.jsonl  the gated split (the first n kept stories), rebuilt atomically from the ledger
  surplus.jsonl                 stories that passed the gates beyond n (paid for; a run with a larger n uses them)
  report.json                   requested, answered, kept, rejected per gate, dialect drift, tokens, cost, retries
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from arastory.data.shards import Shard, write_manifest
from arastory.errors import ConfigError
from arastory.io import atomic_write_json, atomic_write_jsonl, iter_jsonl
from arastory.llm import estimate_cost
from arastory.plain import plain_dict
from arastory.prompts import PromptSampler
from arastory.records import StoryRecord
from arastory.synthesize.gates import GATES, QualityGates
from arastory.synthesize.generators import GenerationRun

if TYPE_CHECKING:
    from arastory.dialect.classifier import DialectAnalysis
    from arastory.dialect.identify import DialectIdentifier
    from arastory.synthesize.generators import StoryGenerator

LEDGER = "generations.jsonl"
MIN_KEEP_RATE = 0.1  # ours: the keep rate a round plans with never drops below this (bounds one round's size)


def build(node: DictConfig) -> Any:
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


def max_attempts(cfg: DictConfig) -> int:
    """The most prompts this n may send: `max_attempts`, or 2 x n (ours)."""
    if not isinstance(cfg.n, int) or isinstance(cfg.n, bool) or cfg.n < 1:
        raise ConfigError("n", f"must be a positive integer, got {cfg.n!r}")
    budget = cfg.get("max_attempts")
    if budget is None:
        return 2 * cfg.n
    if not isinstance(budget, int) or isinstance(budget, bool) or budget < cfg.n:
        raise ConfigError("max_attempts", f"must be an integer of at least n ({cfg.n}), got {budget!r}")
    return budget


def sample_prompts(cfg: DictConfig, count: int | None = None) -> list[dict]:
    """The first `count` (default: max_attempts) prompts for `cfg.variety`; the first k are the same for any count."""
    count = max_attempts(cfg) if count is None else count
    sampler = PromptSampler(
        variety_name(cfg),
        order=list(cfg.sampler.order),
        always=list(cfg.sampler.always),
        p_optional=cfg.sampler.p_optional,
        seed=cfg.seed,
        balance_block=cfg.sampler.get("balance_block"),
    )
    return [p.to_dict() for p in sampler.sample(count, id_prefix=f"{variety_name(cfg)}-s{cfg.seed}")]


def variety_name(cfg: DictConfig) -> str:
    """`dialect=egy` (or the old `variety=egy`) selects arastory/conf/variety/egy.yaml; its `name` is the id."""
    return str(cfg.variety.name)


def check_same_prompts(out_dir: Path, prompts: list[dict]) -> None:
    """Refuse to resume into a dir whose earlier prompts differ (another seed, variety or prompts config)."""
    path = out_dir / "prompts.jsonl"
    if not path.exists():
        return
    ours = {p["id"]: p["prompt"] for p in prompts}
    for lineno, row in iter_jsonl(path, on_error="skip"):
        if row.get("id") in ours and ours[row["id"]] != row.get("prompt"):
            raise ConfigError(
                "out",
                f"{path}:{lineno} holds a different prompt for {row['id']} (changed seed, "
                "variety or prompts config?); use a new out dir",
            )


def load_ledger(path: Path) -> dict[str, dict]:
    if not path.exists():
        return {}
    return {row["id"]: row for _, row in iter_jsonl(path, on_error="skip") if "id" in row}


def build_gates(cfg: DictConfig) -> Callable[[], QualityGates]:
    """A factory of fresh quality gates (empty duplicate indexes) sharing one dialect identifier, which is built
    first so that config errors come before any request; its analyses are cached across rounds."""
    gates_cfg = plain_dict(cfg.gates, resolve=True)
    identifier = None
    if gates_cfg.get("check_variety", True):
        identifier = build(cfg.dialect_id)
        known = list(getattr(identifier, "classes", []))
        if variety_name(cfg) not in known:
            raise ConfigError(
                "gates.check_variety",
                f"the dialect identifier knows {', '.join(known)}, not "
                f"'{variety_name(cfg)}': train it on labelled {variety_name(cfg)} text "
                "(dialect_id.source=...) or set gates.check_variety=false",
            )
        identifier = RememberingIdentifier(identifier)
    QualityGates(**gates_cfg, identifier=identifier)  # settings errors now, before any request
    return lambda: QualityGates(**gates_cfg, identifier=identifier)


class RememberingIdentifier:
    """Answers each (story, target) once: every round re-gates all answers, the classifier runs once per story."""

    def __init__(self, identifier: DialectIdentifier):
        self.identifier = identifier
        self.memory: dict[tuple[str, str | None], DialectAnalysis] = {}
        self.classes = list(getattr(identifier, "classes", []))
        self.thresholds = dict(getattr(identifier, "thresholds", {}) or {})

    def analyze(self, story: str, target: str | None = None) -> DialectAnalysis:
        key = (story, target)
        if key not in self.memory:
            self.memory[key] = self.identifier.analyze(story, target)
        return self.memory[key]


def split_by_gates(
    prompts: list[dict], ledger: dict[str, dict], gates: QualityGates, generator: StoryGenerator, progress: bool = True
) -> tuple[list, list]:
    """(kept records, rejected rows) in prompt order, so duplicates are decided the same way on every run."""
    kept, rejected = [], []
    answered = [p for p in prompts if p["id"] in ledger]
    for prompt in tqdm(
        answered, desc="quality gates", unit="story", dynamic_ncols=True, disable=not progress or len(answered) < 50
    ):
        answer = ledger[prompt["id"]]
        result = gates.check(prompt["id"], answer.get("text") or "", prompt["variety"])
        meta = {
            "generator": answer.get("generator", generator.name),
            "model": answer.get("model"),
            "usage": answer.get("usage", {}),
            "retries": answer.get("retries", 0),
            "gates": result.checks,
        }
        record = StoryRecord(
            id=prompt["id"],
            variety=prompt["variety"],
            prompt=prompt["prompt"],
            story=(answer.get("text") or "").strip(),
            features=prompt["features"],
            source="synthetic",
            meta=meta,
        )
        if result.kept:
            kept.append(record.to_dict())
        else:
            rejected.append({**record.to_dict(), "reason": result.reason, "detail": result.detail})
    return kept, rejected


def token_totals(rows: Iterable[dict]) -> dict:
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
    target = shard.size(cfg.n) if shard else cfg.n
    if shard:  # every k-th of the prompts, for its share of the n stories: the shards' union is the job's prompts
        prompts = list(shard.select(prompts))
    generator = build(cfg.generator)
    check_same_prompts(out_dir, prompts)
    atomic_write_jsonl(out_dir / "prompts.jsonl", prompts)
    base = {
        "variety": variety_name(cfg),
        "requested": target,
        "max_attempts": len(prompts),
        "generator": generator.name,
        "model": generator.model,
        "seed": cfg.seed,
    }
    if cfg.dry_run:
        return dry_run_report(base, generator, prompts, out_dir, started, float(cfg.expected_keep_rate))

    generator.preflight()
    new_gates = build_gates(cfg)
    rounds = generate_until_kept(
        prompts, target, generator, new_gates, out_dir / LEDGER, f"synthesize {variety_name(cfg)}"
    )
    ledger = load_ledger(out_dir / LEDGER)
    kept, rejected = split_by_gates(prompts, ledger, new_gates(), generator)
    stories, surplus = kept[:target], kept[target:]
    atomic_write_jsonl(out_dir / "stories.jsonl", stories)
    atomic_write_jsonl(out_dir / "rejected.jsonl", rejected)
    atomic_write_jsonl(out_dir / "surplus.jsonl", surplus)

    answers = [ledger[p["id"]] for p in prompts if p["id"] in ledger]
    tokens = token_totals(answers)
    unanswered = len(rounds["failed_ids"] - set(ledger))
    report = {
        **base,
        "dry_run": False,
        "answered": len(answers),
        "generated": len(answers),
        "kept": len(stories),
        "surplus": len(surplus),
        "failed": unanswered if len(stories) < target else 0,  # prompts to ask again (only while n is not reached)
        "rejected": {gate: sum(r["reason"] == gate for r in rejected) for gate in GATES},
        "rejected_total": len(rejected),
        "keep_rate": round(len(kept) / len(answers), 4) if answers else None,
        "stopped": stop_reason(len(stories), target, len(answers) + unanswered, len(prompts)),
        "dialect_drift": drift_report(variety_name(cfg), stories, rejected),
        "tokens": tokens,
        "estimated_cost_usd": estimate_cost(generator.model, **tokens),
        "retries": sum(int(a.get("retries", 0) or 0) for a in answers),
        "this_run": {
            "answered": rounds["run"].answered,
            "already_answered": rounds["already_answered"],
            "failed": rounds["run"].failed,
            "rounds": rounds["rounds"],
            "requests": rounds["run"].requests,
            "errors": rounds["run"].errors[:20],
        },
        "elapsed_s": round(time.perf_counter() - started, 2),
        "files": {
            "stories": "stories.jsonl",
            "rejected": "rejected.jsonl",
            "surplus": "surplus.jsonl",
            "ledger": LEDGER,
        },
    }
    atomic_write_json(out_dir / "report.json", report)
    if shard:
        identity = {
            "variety": variety_name(cfg),
            "seed": cfg.seed,
            "n": cfg.n,
            "max_attempts": max_attempts(cfg),
            "generator": generator.name,
            "model": generator.model,
            "sampler": OmegaConf.to_container(cfg.sampler, resolve=True),
            "gates": OmegaConf.to_container(cfg.gates, resolve=True),
        }
        write_manifest(out_dir, "synthesize", shard, report["failed"] == 0, identity, report)
    return report


def generate_until_kept(
    prompts: list[dict],
    n: int,
    generator: StoryGenerator,
    new_gates: Callable[[], QualityGates],
    ledger_path: Path,
    desc: str,
) -> dict:
    """Ask fresh prompts, in order, a round at a time, until n answers pass the gates or no prompt is left."""
    total = GenerationRun()
    failed_ids: set[str] = set()
    already = sum(1 for p in prompts if p["id"] in load_ledger(ledger_path))
    rounds = 0
    while True:
        ledger = load_ledger(ledger_path)
        kept, _ = split_by_gates(prompts, ledger, new_gates(), generator, progress=False)
        need = n - len(kept)
        fresh = [p for p in prompts if p["id"] not in ledger and p["id"] not in failed_ids]
        if need <= 0 or not fresh:
            break
        answered = sum(1 for p in prompts if p["id"] in ledger)
        rate = max(len(kept) / answered, MIN_KEEP_RATE) if answered else 1.0
        batch = fresh[: math.ceil(need / rate)]
        run = generator.run(batch, ledger_path, desc=desc)
        rounds += 1
        total.answered += run.answered
        total.failed += run.failed
        total.errors += run.errors
        for key, value in (run.requests or {}).items():
            total.requests[key] = total.requests.get(key, 0) + value if isinstance(value, (int, float)) else value
        done = load_ledger(ledger_path)
        failed_ids |= {p["id"] for p in batch if p["id"] not in done}
    return {"run": total, "already_answered": already, "rounds": rounds, "failed_ids": failed_ids}


def stop_reason(kept: int, n: int, attempts: int, budget: int) -> str:
    if kept >= n:
        return "kept n stories"
    if attempts >= budget:
        return f"max_attempts ({budget}) prompts sent"
    return "prompts failed (rerun the same command to ask them again)"


def drift_report(variety: str, stories: list[dict], rejected: list[dict]) -> dict | None:
    """The share of MSA sentences inside the dialect stories, kept and all answered (None for MSA runs)."""
    if variety == "msa":
        return None
    from arastory.dialect.evaluation import drift_distribution

    def shares(rows: list[dict]) -> list[float]:
        return [
            r["meta"]["gates"]["dialect"]["msa_share"]
            for r in rows
            if "dialect" in (r.get("meta") or {}).get("gates", {})
        ]

    return {"kept": drift_distribution(shares(stories)), "answered": drift_distribution(shares(stories + rejected))}


def dry_run_report(
    base: dict, generator: StoryGenerator, prompts: list[dict], out_dir: Path, started: float, expected_keep_rate: float
) -> dict:
    """Cost of the prompts expected to be sent (n / expected_keep_rate) and of the worst case (max_attempts)."""
    if not 0.0 < expected_keep_rate <= 1.0:
        raise ConfigError("expected_keep_rate", f"must be in (0, 1], got {expected_keep_rate}")
    expected = min(len(prompts), math.ceil(base["requested"] / expected_keep_rate))
    tokens, worst = generator.estimate(prompts[:expected]), generator.estimate(prompts)
    report = {
        **base,
        "dry_run": True,
        "expected_attempts": expected,
        "expected_keep_rate": expected_keep_rate,
        "estimated_tokens": tokens,
        "estimated_cost_usd": estimate_cost(generator.model, **tokens),
        "worst_case": {
            "attempts": len(prompts),
            "estimated_tokens": worst,
            "estimated_cost_usd": estimate_cost(generator.model, **worst),
        },
        "note": "estimate: prompt characters / generator.chars_per_token, completion = expected tokens per "
        "story x prompts, for n / expected_keep_rate prompts (ours); nothing was called",
        "elapsed_s": round(time.perf_counter() - started, 2),
        "files": {"prompts": "prompts.jsonl"},
    }
    atomic_write_json(out_dir / "report.json", report)
    return report

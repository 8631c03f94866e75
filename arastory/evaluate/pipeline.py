"""The evaluation pipeline, top to bottom: checks and API keys → prompts → provenance → generate → perplexity → judge →
metrics → scores, report, W&B → failure budget.

Every step that costs money or minutes is resumable (generations.jsonl, judgments.jsonl are appended as they go)
and every file is written whole (temp file + rename) or by fsynced appends. provenance.json records what made the
stories and the judgments; scores.json reports only numbers those produced.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections import Counter, defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from arastory.errors import ArastoryError, ConfigError
from arastory.evaluate import provenance
from arastory.evaluate.criteria import CRITERIA
from arastory.evaluate.generation import generate_all
from arastory.evaluate.judge import story_key
from arastory.evaluate.prompts import (
    check_disjoint,
    load_prompts,
    prompt_key,
    prompt_set_hash,
    sample_eval_prompts,
    save_prompts,
)
from arastory.evaluate.systems import Sampling, load_run_config
from arastory.io import atomic_write_json, atomic_write_jsonl
from arastory.plain import plain_dict
from arastory.records import VARIETIES
from arastory.text import normalize_for_hash

if TYPE_CHECKING:
    from arastory.evaluate.judge import Judge
    from arastory.evaluate.systems import EvalSystem, StoryGenerator
    from arastory.train.data import TrainingData

log = logging.getLogger(__name__)

PROMPTS, GENERATIONS, JUDGMENTS, STORY_METRICS, SCORES = (
    "prompts.jsonl",
    "generations.jsonl",
    "judgments.jsonl",
    "story_metrics.jsonl",
    "scores.json",
)
ROW_KEYS = ("id", "system", "variety")
# Yes/no story metrics: their means are rates (Wilson intervals). Counts and shares are not, even when all 0 or 1.
RATE_METRICS = ("dialect_correct", "country_named", "place_named", "season_named", "dialogue_present")


class EvaluationIncomplete(ArastoryError):
    """Too much generation or judging failed (over `failure_budget`): the outputs are written, the exit is not 0."""


def evaluate(cfg: DictConfig, out_dir: str | Path) -> dict:
    quiet_http_logs()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    run_cfg = load_run_config(cfg.run) if cfg.run else None
    sampling = check_eval_config(cfg)

    # Everything that can fail cheaply (API keys, paths, names, changed settings) fails here, before a story is made.
    judge: Judge | None = build(cfg.judge)
    system: EvalSystem = build(cfg.system)
    system.check()
    assert system.name is not None  # check() names every system
    check_same_system(out_dir / GENERATIONS, system.name)
    run_data = load_run_data(run_cfg) if run_cfg is not None else None
    prompts = prepare_prompts(cfg, run_cfg, run_data, out_dir, system)
    made_by = generation_provenance(system, sampling, prompts, cfg)
    provenance.check_generation(out_dir, out_dir / GENERATIONS, made_by, made_by["sampling"])
    judge_record = {**judge.identity, "key": judge.key} if judge is not None else None
    record = provenance.write(out_dir, made_by, judge_record)
    log.info(f"evaluating {system.name} on {len(prompts)} prompts → {out_dir}")

    generator = system.open()
    generation = generate_all(
        generator,
        prompts,
        out_dir / GENERATIONS,
        sampling,
        meta={"gen_key": record["generation_key"]},
        limits=_limits(cfg),
    )
    perplexity = held_out_perplexity(generator, run_data, prompts) if cfg.perplexity.enabled else None
    generator.close()
    generations = current_rows(out_dir / GENERATIONS, prompts, record["generation_key"])
    generation.update(generation_audit(generations))

    judging, judgments = None, []
    if judge is not None:
        judging = judge.judge_all(generations, out_dir / JUDGMENTS)
        judgments = current_judgments(out_dir / JUDGMENTS, generations, judge.key)

    metric_rows = story_metric_rows(generations, cfg.metrics)
    atomic_write_jsonl(out_dir / STORY_METRICS, metric_rows)
    scores = build_scores(
        cfg,
        run_cfg,
        system,
        prompts,
        generations,
        judgments,
        metric_rows,
        perplexity,
        {
            "generation": generation,
            "judging": judging,
            "judge_model": judge.model if judge is not None else None,
            "judge_cost_usd": judge_cost(judge, judgments),
            "sampling": made_by["sampling"],
            "provenance": record,
        },
    )
    atomic_write_json(out_dir / SCORES, scores)

    from arastory.evaluate.report import log_to_wandb, write_report

    write_report(out_dir, scores, generations, judgments, metric_rows)
    if cfg.wandb.enabled:
        log_to_wandb(cfg, out_dir, scores, generations, judgments, metric_rows)
    check_failure_budget(scores, float(cfg.failure_budget), out_dir)
    return scores


def quiet_http_logs() -> None:
    """Hydra logs at INFO; one line per HTTP request would bury the progress bars (retries are counted anyway)."""
    import logging

    for name in ("httpx", "httpx2", "httpcore", "openai"):
        logging.getLogger(name).setLevel(logging.WARNING)


def build(node: DictConfig) -> Any:
    """hydra.utils.instantiate, re-raising our one-line errors instead of Hydra's wrapper around them."""
    from hydra.errors import InstantiationException

    try:
        return instantiate(node)
    except InstantiationException as error:
        if isinstance(error.__cause__, ArastoryError):
            raise error.__cause__ from None
        raise


def check_eval_config(cfg: DictConfig) -> Sampling:
    sampling = Sampling(**plain_dict(cfg.sampling, resolve=True))
    if sampling.max_new_tokens <= 0:
        raise ConfigError("sampling.max_new_tokens", f"must be > 0, got {sampling.max_new_tokens}")
    if sampling.do_sample and not sampling.temperature > 0:
        raise ConfigError(
            "sampling.temperature",
            f"must be > 0 when sampling (or sampling.do_sample=false), got {sampling.temperature}",
        )
    if not 0 < sampling.top_p <= 1:
        raise ConfigError("sampling.top_p", f"must be in (0, 1], got {sampling.top_p}")
    chosen_varieties(cfg)  # a bad `dialect=` stops here
    if not 0 <= float(cfg.failure_budget) <= 1:
        raise ConfigError("failure_budget", f"must be a share in [0, 1], got {cfg.failure_budget}")
    return sampling


def _limits(cfg: DictConfig) -> dict:
    return plain_dict(cfg.limits, resolve=True) if cfg.get("limits") else {}


def check_same_system(path: Path, name: str) -> None:
    """One out dir holds one system's stories; resuming with another system would mix them."""
    if path.exists():
        other = next((row.get("system") for _, row in _rows(path) if row.get("system") != name), None)
        if other:
            raise ConfigError(
                "out", f"'{path.parent}' already holds stories of system '{other}', not '{name}'; use another out="
            )


def _rows(path: Path):
    from arastory.io import iter_jsonl

    return iter_jsonl(path, on_error="skip")


# --------------------------------------------------------------------------------------------------------- prompts
def load_run_data(run_cfg: DictConfig) -> TrainingData:
    from arastory.train.data import build_training_data

    stages = sorted({s.data for s in run_cfg.strategy.stages})
    return build_training_data(run_cfg.data, run_cfg.dialect, needed=stages, seed=run_cfg.seed)


def training_prompt_keys(run_data: TrainingData | None) -> set[str]:
    """Normalized prompts of every record the run read (training and held-out): eval prompts must avoid them all."""
    if run_data is None:
        return set()
    records = [r for rs in run_data.train.values() for r in rs] + [r for rs in run_data.val.values() for r in rs]
    return {normalize_for_hash(r.prompt) for r in records}


def chosen_varieties(cfg: DictConfig) -> list[str]:
    """`dialect=egy`, `dialect=[egy,mor]` or `dialect=all` as a list of varieties; empty when unset."""
    value = cfg.get("dialect")
    if value is None:
        return []
    given = [value] if isinstance(value, str) else [str(v) for v in value]
    for variety in given:
        if variety not in (*VARIETIES, "all"):
            raise ConfigError("dialect", f"'{variety}' is not one of: {', '.join(VARIETIES)}, all")
    return list(VARIETIES) if "all" in given else given


def eval_varieties(cfg: DictConfig, run_cfg: DictConfig | None) -> list[str]:
    if chosen := chosen_varieties(cfg):
        return chosen
    if run_cfg is not None:
        from arastory.train.data import selected_varieties

        return list(selected_varieties(run_cfg.dialect))
    return list(VARIETIES)


def prepare_prompts(
    cfg: DictConfig, run_cfg: DictConfig | None, run_data: TrainingData | None, out_dir: Path, system: EvalSystem
) -> list[dict]:
    """The system's own prompts (`system=file`), `prompts=<file>`, or a fresh seeded sample; saved to prompts.jsonl.

    A rerun into an out dir whose prompts.jsonl holds another prompt set stops: its stories answer other prompts.
    """
    saved = out_dir / PROMPTS
    exclude = training_prompt_keys(run_data)
    if system.kind == "file":
        if cfg.prompts:
            raise ConfigError(
                "prompts", "system=file scores the prompts and stories of system.path; leave prompts= unset"
            )
        chosen = chosen_varieties(cfg)
        rows = [r for r in system.prompts() if not chosen or r["variety"] in chosen]
        if not rows:
            raise ConfigError("dialect", f"system.path holds no stories of {', '.join(chosen)}")
        for row in rows:
            row["prompt_key"] = prompt_key(row["variety"], row["prompt"])
        source = str(system.path)
    elif cfg.prompts:
        rows = load_prompts(cfg.prompts)
        source = str(cfg.prompts)
    else:
        rows = sample_eval_prompts(eval_varieties(cfg, run_cfg), cfg.n_per_variety, cfg.seed, exclude, cfg.p_optional)
        source = f"sampled (seed={cfg.seed}, n_per_variety={cfg.n_per_variety})"
    check_disjoint(rows, exclude, source)
    if saved.exists() and (not cfg.prompts or Path(cfg.prompts).resolve() != saved.resolve()):
        before = load_prompts(saved)
        if prompt_set_hash(before) != prompt_set_hash(rows) and (out_dir / GENERATIONS).exists():
            raise ConfigError(
                "out",
                f"'{out_dir}' was evaluated on another prompt set ({len(before)} prompts in "
                f"{saved.name}; now {source}, {len(rows)} prompts); use a new out=",
            )
    if not saved.exists() or prompt_set_hash(load_prompts(saved)) != prompt_set_hash(rows):
        save_prompts(saved, rows)
    for row in rows:
        row["source"] = source
    return rows


def generation_provenance(system: EvalSystem, sampling: Sampling, prompts: list[dict], cfg: DictConfig) -> dict:
    """Identity of the stories: the system, its decoding settings (none for given stories) and the prompt set."""
    is_file = system.kind == "file"
    prompt_set = {
        "hash": prompt_set_hash(prompts),
        "n": len(prompts),
        "source": prompts[0].get("source") if prompts else None,
    }
    return provenance.generation_identity(system.identity(), None if is_file else sampling.as_dict(), prompt_set)


def current_rows(path: Path, prompts: list[dict], gen_key: str | None = None) -> list[dict]:
    """The generations of this prompt set made by these settings (rows from before provenance have no key), in
    prompt order."""
    by_id = {}
    if path.exists():
        for _, row in _rows(path):
            if gen_key is None or row.get("meta", {}).get("gen_key") in (None, gen_key):
                by_id[row["id"]] = row
    return [{**by_id[p["id"]], "prompt_key": p["prompt_key"]} for p in prompts if p["id"] in by_id]


def current_judgments(path: Path, generations: list[dict], judge_key: str) -> list[dict]:
    """This judge's latest judgment of each current story (nothing of another judge or an older story)."""
    if not path.exists():
        return []
    stories = {f"{g['system']}/{g['id']}": story_key(g["story"]) for g in generations}
    latest = {}
    for _, row in _rows(path):
        if row.get("judge_key") == judge_key and stories.get(row.get("id")) == row.get("story_key"):
            latest[row["id"]] = row
    return [latest[i] for i in stories if i in latest]


def generation_audit(generations: list[dict]) -> dict:
    """Why each story stopped: counts of finish reasons, and the stories cut at max_new_tokens per variety."""
    reasons = Counter(str(g.get("meta", {}).get("finish_reason")) for g in generations)
    truncated = Counter(g["variety"] for g in generations if g.get("meta", {}).get("finish_reason") == "length")
    return {
        "finish_reasons": dict(reasons),
        "truncated": {v: truncated.get(v, 0) for v in sorted({g["variety"] for g in generations})},
    }


# --------------------------------------------------------------------------------------------------------- metrics
def held_out_perplexity(generator: StoryGenerator, run_data: TrainingData | None, prompts: list[dict]) -> dict | None:
    """Perplexity, bits per character and per word of the run's held-out stories per evaluated variety, under the
    model just used (None for APIs and given stories)."""
    if run_data is None or generator.kind != "local":
        return None
    varieties = sorted({p["variety"] for p in prompts})
    out = {v: generator.perplexity(run_data.val.get(v, [])) for v in varieties if run_data.val.get(v)}
    return {v: result for v, result in out.items() if result is not None} or None


def story_metric_rows(generations: list[dict], metrics_cfg: DictConfig) -> list[dict]:
    from arastory.dialect.identify import metrics_identifier
    from arastory.evaluate.metrics import story_metrics

    classifier = metrics_identifier(metrics_cfg)
    return [
        {**{k: g[k] for k in ROW_KEYS}, **story_metrics(g["story"], g["variety"], g.get("features") or {}, classifier)}
        for g in generations
    ]


def metric_names(rows: list[dict]) -> list[str]:
    """Numeric per-story values (None allowed), in first-seen order."""
    names: dict[str, None] = {}
    for row in rows:
        for key, value in row.items():
            if key not in ROW_KEYS and (
                value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))
            ):
                names.setdefault(key)
    return [n for n in names if any(row.get(n) is not None for row in rows)]


def judge_cost(judge: Judge | None, judgments: list[dict]) -> float | None:
    """Estimated USD of the judge requests behind these judgments (cached ones were paid for once, earlier); None
    where no price table is known for the judge's endpoint (a local server, a local model)."""
    if judge is None or not judgments or judge.identity.get("backend") != "openai":
        return None
    from arastory.llm import estimate_cost

    paid = [j.get("usage") or {} for j in judgments if not j.get("cached")]
    return estimate_cost(
        judge.model,
        sum(u.get("prompt_tokens", 0) for u in paid),
        sum(u.get("completion_tokens", 0) for u in paid),
        endpoint=judge.identity.get("endpoint"),
    )


def run_summary(run_cfg: DictConfig | None) -> dict | None:
    """The train run settings compare.py plots scores against (translation settings only if a stage trained on them)."""
    if run_cfg is None:
        return None
    select = lambda key: OmegaConf.select(run_cfg, key, default=None)
    translated = "translated" in {s.data for s in run_cfg.strategy.stages}
    filtered = translated and select("data.filter") is not None and select("data.filter.enabled") is not False
    return {
        "strategy": select("strategy.name"),
        "dialect": select("dialect"),
        "model": select("model.name_or_path") or ("tiny" if select("model.tiny") else None),
        "filter_threshold": select("data.filter.threshold") if filtered else None,
        "synthetic_size": select("data.synthetic.size"),
        "translated_size": select("data.translated.size") if translated else None,
    }


def val_fingerprint(run_dir: str | Path) -> str | None:
    """The training run's held-out set fingerprint over all varieties (metrics.json's `val_fingerprint["all"]`)."""
    path = Path(run_dir) / "metrics.json"
    try:
        fingerprint = json.loads(path.read_text(encoding="utf-8")).get("val_fingerprint")
    except (OSError, json.JSONDecodeError, AttributeError):
        return None
    return fingerprint.get("all") if isinstance(fingerprint, dict) else fingerprint


def unreadable_counts(generations: list[dict], judgments: list[dict]) -> dict:
    """{variety: {criterion: stories without a readable score}} (unreadable answers, failed or skipped requests)."""
    judged = {j["prompt_id"]: j.get("criteria") or {} for j in judgments}
    out: dict = defaultdict(lambda: dict.fromkeys(CRITERIA, 0))
    for g in generations:
        for criterion in CRITERIA:
            out[g["variety"]][criterion] += judged.get(g["id"], {}).get(criterion) is None
    return {v: out[v] for v in sorted(out)}


def build_scores(
    cfg: DictConfig,
    run_cfg: DictConfig | None,
    system: EvalSystem,
    prompts: list[dict],
    generations: list[dict],
    judgments: list[dict],
    metric_rows: list[dict],
    perplexity: dict | None,
    extra: dict,
) -> dict:
    from arastory.evaluate.metrics import dialect_drift, diversity_at
    from arastory.evaluate.stats import summarize

    # Grouped on "group", since "variety" is also a criterion's name.
    judge_rows = [{"group": j["variety"], **{c: (j["criteria"] or {}).get(c) for c in CRITERIA}} for j in judgments]
    varieties = sorted({p["variety"] for p in prompts})
    is_run = system.identity().get("kind") == "run"
    k, repeats = int(cfg.diversity.subsample), int(cfg.diversity.repeats)
    return {
        "system": system.name,
        # A baseline evaluated with run= (for its prompts and held-out stories) never takes the run's labels.
        "run": str(cfg.run) if cfg.run and is_run else None,
        "reference_run": str(cfg.run) if cfg.run and not is_run else None,
        "config": run_summary(run_cfg) if is_run else None,
        "val_fingerprint": val_fingerprint(cfg.run) if cfg.run else None,
        "n_prompts": len(prompts),
        "judge": summarize(judge_rows, "group", list(CRITERIA)) if judge_rows else {},
        "metrics": summarize(metric_rows, "variety", metric_names(metric_rows), rates=RATE_METRICS)
        if metric_rows
        else {},
        "dialect_drift": dialect_drift(metric_rows),
        "corpus_metrics": {
            v: diversity_at([g["story"] for g in generations if g["variety"] == v], k, repeats)
            for v in varieties
            if any(g["variety"] == v for g in generations)
        },
        "diversity": {"subsample": k, "repeats": repeats},
        "perplexity": {v: r["perplexity"] for v, r in perplexity.items()} if perplexity else None,
        "bits_per_char": {v: r["bits_per_char"] for v, r in perplexity.items()} if perplexity else None,
        "bits_per_word": {v: r["bits_per_word"] for v, r in perplexity.items()} if perplexity else None,
        "n_generations": len(generations),
        "n_judged": sum(1 for j in judgments if j.get("criteria")),
        "judge_unparsed": sum(1 for j in judgments if not j.get("criteria") and not j.get("skipped")),
        "judge_skipped": sum(1 for j in judgments if j.get("skipped")),
        "judge_unreadable": unreadable_counts(generations, judgments) if extra.get("judge_model") else {},
        **extra,
        "created": dt.datetime.now().isoformat(timespec="seconds"),
    }


def check_failure_budget(scores: dict, budget: float, out_dir: Path) -> None:
    """Exit non-zero (one line) when more than `budget` of the prompts got no story or of the stories no readable
    judgment; everything is written first, and a rerun retries what failed."""
    n_prompts, n_stories = scores["n_prompts"], scores["n_generations"]
    generation = scores.get("generation") or {}
    if n_prompts and (n_prompts - n_stories) / n_prompts > budget:
        raise EvaluationIncomplete(
            f"evaluation incomplete: {n_stories} of {n_prompts} stories generated "
            f"({generation.get('failed', 0)} failed, "
            f"{generation.get('skipped_long', 0)} skipped as too long), over failure_budget={budget}; "
            f"see {out_dir}/report.md and rerun the same command to retry"
        )
    if scores.get("judge_model") and n_stories:
        judging = scores.get("judging") or {}
        unjudged = n_stories - scores["n_judged"]
        if unjudged / n_stories > budget:
            errors = judging.get("errors") or []
            raise EvaluationIncomplete(
                f"judging incomplete: {scores['n_judged']} of {n_stories} stories judged ({scores['judge_unparsed']} "
                f"unreadable, {judging.get('failed', 0)} failed{', e.g. ' + errors[0] if errors else ''}, "
                f"{scores['judge_skipped']} skipped), over failure_budget={budget}; "
                f"see {out_dir}/report.md and rerun to retry"
            )

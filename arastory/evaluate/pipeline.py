"""The evaluation pipeline, top to bottom: checks and API keys → prompts → generate → perplexity → judge → metrics → scores, report, W&B.

Every step that costs money or minutes is resumable (generations.jsonl, judgments.jsonl are appended as they go)
and every file is written whole (temp file + rename) or by fsynced appends.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from arastory.errors import ArastoryError, ConfigError
from arastory.evaluate.generation import generate_all
from arastory.evaluate.judge import CRITERIA
from arastory.evaluate.prompts import check_disjoint, load_prompts, sample_eval_prompts, save_prompts
from arastory.evaluate.systems import Sampling, load_run_config
from arastory.io import atomic_write_json, atomic_write_jsonl
from arastory.records import VARIETIES
from arastory.text import normalize_for_hash

PROMPTS, GENERATIONS, JUDGMENTS, STORY_METRICS, SCORES = (
    "prompts.jsonl", "generations.jsonl", "judgments.jsonl", "story_metrics.jsonl", "scores.json")
ROW_KEYS = ("id", "system", "variety")


def evaluate(cfg: DictConfig, out_dir: str | Path) -> dict:
    quiet_http_logs()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    run_cfg = load_run_config(cfg.run) if cfg.run else None
    sampling = check_eval_config(cfg)

    # Everything that can fail cheaply (API keys, paths, names) fails here, before a story is generated.
    judge = build(cfg.judge)
    system = build(cfg.system)
    system.check()
    check_same_system(out_dir / GENERATIONS, system.name)
    run_data = load_run_data(run_cfg) if run_cfg is not None else None
    prompts = prepare_prompts(cfg, run_cfg, run_data, out_dir)
    print(f"[arastory] evaluating {system.name} on {len(prompts)} prompts → {out_dir}")

    generator = system.open()
    generation = generate_all(generator, prompts, out_dir / GENERATIONS, sampling)
    perplexity = held_out_perplexity(generator, run_data, prompts) if cfg.perplexity.enabled else None
    generator.close()
    generations = current_rows(out_dir / GENERATIONS, prompts)

    judging = None
    if judge is not None:
        judging = judge.judge_all(generations, out_dir / JUDGMENTS)
    judgments = [j for _, j in _rows(out_dir / JUDGMENTS)] if (judge is not None and (out_dir / JUDGMENTS).exists()) else []
    judgments = [j for j in judgments if j["prompt_id"] in {g["id"] for g in generations} and j["system"] == system.name]

    metric_rows = story_metric_rows(generations, cfg.metrics)
    atomic_write_jsonl(out_dir / STORY_METRICS, metric_rows)
    scores = build_scores(cfg, run_cfg, system.name, prompts, generations, judgments, metric_rows, perplexity,
                          {"generation": generation, "judging": judging, "judge_model": getattr(judge, "model", None),
                           "judge_cost_usd": judge_cost(judge, judgments),
                           "sampling": sampling.as_dict()})
    atomic_write_json(out_dir / SCORES, scores)

    from arastory.evaluate.report import log_to_wandb, write_report
    write_report(out_dir, scores, generations, judgments, metric_rows)
    if cfg.wandb.enabled:
        log_to_wandb(cfg, out_dir, scores, generations, judgments, metric_rows)
    return scores


def quiet_http_logs() -> None:
    """Hydra logs at INFO; one line per HTTP request would bury the progress bars (retries are counted anyway)."""
    import logging

    for name in ("httpx", "httpx2", "httpcore", "openai"):
        logging.getLogger(name).setLevel(logging.WARNING)


def build(node: DictConfig):
    """hydra.utils.instantiate, re-raising our one-line errors instead of Hydra's wrapper around them."""
    from hydra.errors import InstantiationException

    try:
        return instantiate(node)
    except InstantiationException as error:
        if isinstance(error.__cause__, ArastoryError):
            raise error.__cause__ from None
        raise


def check_eval_config(cfg: DictConfig) -> Sampling:
    sampling = Sampling(**OmegaConf.to_container(cfg.sampling, resolve=True))
    if sampling.max_new_tokens <= 0:
        raise ConfigError("sampling.max_new_tokens", f"must be > 0, got {sampling.max_new_tokens}")
    if sampling.do_sample and not sampling.temperature > 0:
        raise ConfigError("sampling.temperature", f"must be > 0 when sampling (or sampling.do_sample=false), got {sampling.temperature}")
    if not 0 < sampling.top_p <= 1:
        raise ConfigError("sampling.top_p", f"must be in (0, 1], got {sampling.top_p}")
    for variety in cfg.varieties or []:
        if variety not in VARIETIES:
            raise ConfigError("varieties", f"'{variety}' is not one of: {', '.join(VARIETIES)}")
    return sampling


def check_same_system(path: Path, name: str) -> None:
    """One out dir holds one system's stories; resuming with another system would mix them."""
    if path.exists():
        other = next((row.get("system") for _, row in _rows(path) if row.get("system") != name), None)
        if other:
            raise ConfigError("out", f"'{path.parent}' already holds stories of system '{other}', not '{name}'; use another out=")


def _rows(path: Path):
    from arastory.io import iter_jsonl
    return iter_jsonl(path, on_error="skip")


# --------------------------------------------------------------------------------------------------------- prompts
def load_run_data(run_cfg: DictConfig):
    from arastory.train.data import build_training_data

    stages = sorted({s.data for s in run_cfg.strategy.stages})
    return build_training_data(run_cfg.data, run_cfg.dialect, needed=stages, seed=run_cfg.seed)


def training_prompt_keys(run_data) -> set[str]:
    """Normalized prompts of every record the run read (training and held-out): eval prompts must avoid them all."""
    if run_data is None:
        return set()
    records = [r for rs in run_data.train.values() for r in rs] + [r for rs in run_data.val.values() for r in rs]
    return {normalize_for_hash(r.prompt) for r in records}


def eval_varieties(cfg: DictConfig, run_cfg: DictConfig | None) -> list[str]:
    if cfg.varieties:
        return list(cfg.varieties)
    if run_cfg is not None:
        from arastory.train.data import selected_varieties
        return list(selected_varieties(run_cfg.dialect))
    return list(VARIETIES)


def prepare_prompts(cfg: DictConfig, run_cfg, run_data, out_dir: Path) -> list[dict]:
    """`prompts=<file>` reuses a saved set; else the out dir's own prompts.jsonl (a resumed run); else a fresh sample."""
    saved = out_dir / PROMPTS
    exclude = training_prompt_keys(run_data)
    if cfg.prompts:
        rows = load_prompts(cfg.prompts)
        check_disjoint(rows, exclude, cfg.prompts)
        if not saved.exists() or Path(cfg.prompts).resolve() != saved.resolve():
            save_prompts(saved, rows)
        return rows
    if saved.exists():
        rows = load_prompts(saved)
        check_disjoint(rows, exclude, saved)
        return rows
    rows = sample_eval_prompts(eval_varieties(cfg, run_cfg), cfg.n_per_variety, cfg.seed, exclude, cfg.p_optional)
    save_prompts(saved, rows)
    return rows


def current_rows(path: Path, prompts: list[dict]) -> list[dict]:
    """The generations of this prompt set, in prompt order."""
    by_id = {row["id"]: row for _, row in _rows(path)} if path.exists() else {}
    return [by_id[p["id"]] for p in prompts if p["id"] in by_id]


# --------------------------------------------------------------------------------------------------------- metrics
def held_out_perplexity(generator, run_data, prompts: list[dict]) -> dict | None:
    """Perplexity of the run's held-out stories per evaluated variety, under the model just used (None for APIs)."""
    if run_data is None or generator.kind != "local":
        return None
    varieties = sorted({p["variety"] for p in prompts})
    out = {v: generator.perplexity(run_data.val.get(v, [])) for v in varieties if run_data.val.get(v)}
    return {v: ppl for v, ppl in out.items() if ppl is not None} or None


def story_metric_rows(generations: list[dict], metrics_cfg) -> list[dict]:
    from arastory.dialect.identify import metrics_identifier
    from arastory.evaluate.metrics import story_metrics

    classifier = metrics_identifier(metrics_cfg)
    return [{**{k: g[k] for k in ROW_KEYS}, **story_metrics(g["story"], g["variety"], g.get("features") or {}, classifier)}
            for g in generations]


def metric_names(rows: list[dict]) -> list[str]:
    """Numeric per-story values (None allowed), in first-seen order."""
    names: dict[str, None] = {}
    for row in rows:
        for key, value in row.items():
            if key not in ROW_KEYS and (value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))):
                names.setdefault(key)
    return [n for n in names if any(row.get(n) is not None for row in rows)]


def judge_cost(judge, judgments: list[dict]) -> float | None:
    """Estimated USD of the judge requests behind these judgments (cached ones were paid for once, earlier)."""
    if judge is None or not judgments:
        return None
    from arastory.llm import estimate_cost

    paid = [j.get("usage") or {} for j in judgments if not j.get("cached")]
    return estimate_cost(judge.model, sum(u.get("prompt_tokens", 0) for u in paid),
                         sum(u.get("completion_tokens", 0) for u in paid))


def run_summary(run_cfg: DictConfig | None) -> dict | None:
    """The train run settings compare.py plots scores against (translation settings only when a stage trained on them)."""
    if run_cfg is None:
        return None
    select = lambda key: OmegaConf.select(run_cfg, key, default=None)  # noqa: E731
    translated = "translated" in {s.data for s in run_cfg.strategy.stages}
    filtered = translated and select("data.filter") is not None and select("data.filter.enabled") is not False
    return {"strategy": select("strategy.name"), "dialect": select("dialect"),
            "model": select("model.name_or_path") or ("tiny" if select("model.tiny") else None),
            "filter_threshold": select("data.filter.threshold") if filtered else None,
            "synthetic_size": select("data.synthetic.size"),
            "translated_size": select("data.translated.size") if translated else None}


def build_scores(cfg, run_cfg, system_name: str, prompts, generations, judgments, metric_rows, perplexity, extra) -> dict:
    from arastory.evaluate.metrics import corpus_metrics, dialect_drift
    from arastory.evaluate.stats import summarize

    # Grouped on "group", since "variety" is also a criterion's name.
    judge_rows = [{"group": j["variety"], **{c: (j["criteria"] or {}).get(c) for c in CRITERIA}} for j in judgments]
    varieties = sorted({p["variety"] for p in prompts})
    return {
        "system": system_name,
        "run": str(cfg.run) if cfg.run else None,
        "config": run_summary(run_cfg),
        "n_prompts": len(prompts),
        "judge": summarize(judge_rows, "group", list(CRITERIA)) if judge_rows else {},
        "metrics": summarize(metric_rows, "variety", metric_names(metric_rows)) if metric_rows else {},
        "dialect_drift": dialect_drift(metric_rows),
        "corpus_metrics": {v: corpus_metrics([g["story"] for g in generations if g["variety"] == v])
                           for v in varieties if any(g["variety"] == v for g in generations)},
        "perplexity": perplexity,
        "n_generations": len(generations),
        "n_judged": sum(1 for j in judgments if j.get("criteria")),
        "judge_unparsed": sum(1 for j in judgments if not j.get("criteria")),
        **extra,
        "created": dt.datetime.now().isoformat(timespec="seconds"),
    }

"""report.md with score tables, bar charts per criterion and per variety (PNG), and logging into the training run's W&B run."""

from __future__ import annotations

from pathlib import Path

from arastory.evaluate.judge import CRITERIA
from arastory.io import atomic_write_text

EXAMPLES_PER_VARIETY = 2


def _cell(stat: dict | None, digits: int = 2) -> str:
    if not stat or stat.get("mean") is None:
        return "–"
    return f"{stat['mean']:.{digits}f} [{stat['ci_low']:.{digits}f}, {stat['ci_high']:.{digits}f}] (n={stat['n']})"


def _num(value, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def judge_table(scores: dict) -> list[str]:
    varieties = sorted(scores["judge"])
    lines = ["| variety | " + " | ".join(CRITERIA) + " |", "|---" * (len(CRITERIA) + 1) + "|"]
    for variety in varieties:
        lines.append(f"| {variety} | " + " | ".join(_cell(scores["judge"][variety].get(c)) for c in CRITERIA) + " |")
    return lines


def metrics_table(scores: dict) -> list[str]:
    varieties = sorted(scores["metrics"])
    names = list(dict.fromkeys(n for v in varieties for n in scores["metrics"][v]))
    lines = ["| metric | " + " | ".join(varieties) + " |", "|---" * (len(varieties) + 1) + "|"]
    for name in names:
        lines.append(f"| {name} | " + " | ".join(_cell(scores["metrics"][v].get(name), 3) for v in varieties) + " |")
    for name in ("distinct_1", "distinct_2", "self_bleu"):
        lines.append(f"| {name} (corpus) | " + " | ".join(_num(scores["corpus_metrics"].get(v, {}).get(name))
                                                         for v in varieties) + " |")
    if scores.get("perplexity"):
        lines.append("| held-out perplexity | " + " | ".join(_num(scores["perplexity"].get(v), 2) for v in varieties) + " |")
    return lines


def bar_charts(out_dir: Path, scores: dict) -> list[Path]:
    """One chart per criterion (bars = varieties) and one per variety (bars = criteria), with 95% CI error bars."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    judge = scores["judge"]
    varieties = sorted(judge)
    paths = []
    charts = [(f"criterion_{c}.png", c, varieties, [judge[v].get(c) for v in varieties]) for c in CRITERIA]
    charts += [(f"variety_{v}.png", v, list(CRITERIA), [judge[v].get(c) for c in CRITERIA]) for v in varieties]
    for filename, title, labels, stats in charts:
        means = [s["mean"] if s and s.get("mean") is not None else 0.0 for s in stats]
        errors = [[max(0.0, m - (s["ci_low"] if s and s.get("ci_low") is not None else m)) for m, s in zip(means, stats)],
                  [max(0.0, (s["ci_high"] if s and s.get("ci_high") is not None else m) - m) for m, s in zip(means, stats)]]
        fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(labels), 3.2))
        ax.bar(labels, means, yerr=errors, capsize=4, color="#4C72B0")
        ax.set_ylim(0, 5.3)
        ax.set_ylabel("judge score (1-5), 95% CI")
        ax.set_title(f"{scores['system']}: {title}")
        ax.tick_params(axis="x", labelrotation=20 if len(labels) > 3 else 0)
        fig.tight_layout()
        path = out_dir / filename
        tmp = path.with_name(f".{path.stem}.tmp.png")
        fig.savefig(tmp, dpi=100)
        plt.close(fig)
        tmp.replace(path)
        paths.append(path)
    return paths


def write_report(out_dir: str | Path, scores: dict, generations: list[dict], judgments: list[dict], metric_rows: list[dict]) -> Path:
    out_dir = Path(out_dir)
    charts = bar_charts(out_dir, scores) if scores["judge"] else []
    lines = [f"# Evaluation of {scores['system']}", ""]
    if scores.get("run"):
        lines.append(f"Run: `{scores['run']}`" + (f" — {scores['config']}" if scores.get("config") else ""))
    lines += [f"Prompts: {scores['n_prompts']}; stories: {scores['n_generations']}; judged: {scores['n_judged']}"
              f" (unreadable judge answers: {scores['judge_unparsed']}); judge: {scores.get('judge_model') or 'none'}.",
              "Means with bootstrap 95% confidence intervals and the number of stories.", ""]
    if scores["judge"]:
        lines += ["## Judge scores (1-5)", "", *judge_table(scores), ""]
        lines += [f"![{p.stem}]({p.name})" for p in charts] + [""]
    if scores["metrics"]:
        lines += ["## Automatic metrics", "", *metrics_table(scores), ""]
    lines += ["## Example stories", ""]
    criteria_of = {j["prompt_id"]: j.get("criteria") for j in judgments}
    for variety in sorted({g["variety"] for g in generations}):
        for g in [g for g in generations if g["variety"] == variety][:EXAMPLES_PER_VARIETY]:
            lines += [f"**{g['id']}** ({variety}) — judge: {criteria_of.get(g['id'])}", "",
                      f"> {g['prompt']}", "", '<div dir="rtl" lang="ar">', "", g["story"] or "(empty)", "", "</div>", ""]
    path = out_dir / "report.md"
    atomic_write_text(path, "\n".join(lines))
    return path


def flat_scores(scores: dict, prefix: str) -> dict:
    """scores.json as W&B scalars: eval/<system>/judge/<variety>/<criterion>, .../metric/..., .../ppl/<variety>."""
    flat = {}
    for section in ("judge", "metrics"):
        for variety, values in scores[section].items():
            for name, stat in values.items():
                if stat and stat.get("mean") is not None:
                    flat[f"{prefix}/{section}/{variety}/{name}"] = stat["mean"]
    for variety, values in scores["corpus_metrics"].items():
        flat.update({f"{prefix}/corpus/{variety}/{k}": v for k, v in values.items() if v is not None})
    flat.update({f"{prefix}/ppl/{v}": p for v, p in (scores.get("perplexity") or {}).items()})
    return flat


def log_to_wandb(cfg, out_dir: Path, scores: dict, generations: list[dict], judgments: list[dict], metric_rows: list[dict]) -> str:
    """Into the training run's W&B run (same id, resume="allow") when there is a run; else a run of the eval dir."""
    import wandb

    from arastory.train.tracking import wandb_run_id

    home = Path(cfg.run) if cfg.run else Path(out_dir)
    run = wandb.init(project=cfg.wandb.project, entity=cfg.wandb.entity, id=wandb_run_id(home), resume="allow",
                     dir=str(home), mode=cfg.wandb.mode, job_type="eval" if not cfg.run else None,
                     name=None if cfg.run else f"eval-{scores['system']}", settings=wandb.Settings(silent=True))
    prefix = f"eval/{scores['system']}"
    criteria_of = {j["prompt_id"]: j.get("criteria") or {} for j in judgments}
    metrics_of = {m["id"]: m for m in metric_rows}
    columns = ["id", "variety", "prompt", "story", *CRITERIA, "dialect_correct", "dialect_prob", "words"]
    table = wandb.Table(columns=columns)
    for g in generations:
        crit, met = criteria_of.get(g["id"], {}), metrics_of.get(g["id"], {})
        table.add_data(g["id"], g["variety"], g["prompt"], g["story"], *[crit.get(c) for c in CRITERIA],
                       met.get("dialect_correct"), met.get("dialect_prob"), met.get("words"))
    images = {f"{prefix}/charts/{p.stem}": wandb.Image(str(p)) for p in sorted([*Path(out_dir).glob("criterion_*.png"), *Path(out_dir).glob("variety_*.png")])}
    run.log({**flat_scores(scores, prefix), f"{prefix}/stories": table, **images})
    run.summary.update({f"{prefix}/out_dir": str(out_dir)})
    run_id = run.id
    run.finish()
    return run_id

"""report.md with score tables, bar charts per criterion and per variety (PNG), and logging into the training run's
W&B run."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from arastory.evaluate.criteria import CRITERIA
from arastory.io import atomic_write_text
from arastory.tables import markdown_table

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from omegaconf import DictConfig

EXAMPLES_PER_VARIETY = 2


def _cell(stat: dict | None, digits: int = 2) -> str:
    """mean [95% CI] (n=...); a mean without an interval (too few stories for one) says so."""
    if not stat or stat.get("mean") is None:
        return "–"
    if stat.get("ci_low") is None or stat.get("ci_high") is None:
        return f"{stat['mean']:.{digits}f} (n={stat['n']}, no CI)"
    return f"{stat['mean']:.{digits}f} [{stat['ci_low']:.{digits}f}, {stat['ci_high']:.{digits}f}] (n={stat['n']})"


def _num(value, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def judge_table(scores: dict) -> list[str]:
    rows = [
        [variety, *[_cell(scores["judge"][variety].get(c)) for c in CRITERIA]] for variety in sorted(scores["judge"])
    ]
    return markdown_table(["variety", *CRITERIA], rows).splitlines()


def metrics_table(scores: dict) -> list[str]:
    varieties = sorted(scores["metrics"])
    names = list(dict.fromkeys(n for v in varieties for n in scores["metrics"][v]))
    rows = [[name, *[_cell(scores["metrics"][v].get(name), 3) for v in varieties]] for name in names]
    k = (scores.get("diversity") or {}).get("subsample")
    rows += [
        [
            f"{name} (sets of {k} stories)",
            *[_diversity_cell(scores["corpus_metrics"].get(v, {}).get(name)) for v in varieties],
        ]
        for name in ("distinct_1", "distinct_2", "self_bleu")
    ]
    rows += [
        [label, *[_num(scores[key].get(v), 3) for v in varieties]]
        for key, label in (
            ("perplexity", "held-out perplexity"),
            ("bits_per_char", "held-out bits/char"),
            ("bits_per_word", "held-out bits/word"),
        )
        if scores.get(key)
    ]
    return markdown_table(["metric", *varieties], rows).splitlines()


def _diversity_cell(stat) -> str:
    if isinstance(stat, dict):
        if stat.get("mean") is None:
            return f"– (only {stat.get('of')} stories)"
        return _cell(stat, 3)
    return _num(stat)


def counts_lines(scores: dict) -> list[str]:
    """What could not be scored, said plainly: failed or skipped generations, truncated stories, unjudged stories."""
    generation = scores.get("generation") or {}
    judging = scores.get("judging") or {}
    lines = [
        f"- Stories: {scores['n_generations']} of {scores['n_prompts']} prompts "
        f"({generation.get('failed', 0)} failed, {generation.get('skipped_long', 0)} prompts skipped as too "
        "long)."
    ]
    truncated = generation.get("truncated") or {}
    if truncated:
        lines.append(
            "- Stories cut at max_new_tokens (finish_reason=length): "
            + ", ".join(f"{v}: {n}" for v, n in truncated.items())
            + "."
        )
    if scores.get("judge_model"):
        lines.append(
            f"- Judged: {scores['n_judged']} of {scores['n_generations']} stories; unreadable judge answers: "
            f"{scores['judge_unparsed']}; failed requests: {judging.get('failed', 0)}; "
            f"skipped as too long: {scores.get('judge_skipped', 0)}."
        )
        per = scores.get("judge_unreadable") or {}
        if any(n for counts in per.values() for n in counts.values()):
            lines.append(
                "- Stories without a readable score, per variety and criterion: "
                + "; ".join(f"{v}: " + ", ".join(f"{c} {n}" for c, n in counts.items()) for v, counts in per.items())
                + "."
            )
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
        fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(labels), 3.2))
        draw_score_bars(ax, labels, stats)
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


def draw_score_bars(ax: Axes, labels: list[str], stats: list[dict | None], color: str = "#4C72B0") -> None:
    """Bars on the judge's 1-5 scale (they start at 1, the lowest score); a missing mean is drawn as a marked gap,
    never as a bar of 0 or 1; CIs where there are any."""
    for x, stat in enumerate(stats[: len(labels)]):
        if not stat or stat.get("mean") is None:
            ax.text(x, 1.15, "no score", ha="center", va="bottom", rotation=90, fontsize=8, color="#888")
            continue
        mean = stat["mean"]
        has_ci = stat.get("ci_low") is not None and stat.get("ci_high") is not None
        error = [[max(0.0, mean - stat["ci_low"])], [max(0.0, stat["ci_high"] - mean)]] if has_ci else None
        ax.bar([x], [mean - 1], bottom=1, yerr=error, capsize=4, color=color)
    ax.set_xticks(range(len(labels)), labels)
    ax.set_xlim(-0.6, len(labels) - 0.4)
    ax.set_ylim(1, 5.2)


def write_report(
    out_dir: str | Path, scores: dict, generations: list[dict], judgments: list[dict], metric_rows: list[dict]
) -> Path:
    out_dir = Path(out_dir)
    charts = bar_charts(out_dir, scores) if scores["judge"] else []
    lines = [f"# Evaluation of {scores['system']}", ""]
    if scores.get("run"):
        lines.append(f"Run: `{scores['run']}`" + (f" — {scores['config']}" if scores.get("config") else ""))
    elif scores.get("reference_run"):
        lines.append(f"A baseline; its prompts avoid the data of run `{scores['reference_run']}`.")
    judge = (scores.get("provenance") or {}).get("judge") or {}
    lines += [
        f"Prompts: {scores['n_prompts']}; stories: {scores['n_generations']}; judged: {scores['n_judged']}"
        f" (unreadable judge answers: {scores['judge_unparsed']}); judge: {scores.get('judge_model') or 'none'}"
        + (f" at {judge.get('endpoint')}, rubric {judge.get('rubric')}" if judge.get("endpoint") else "")
        + (f"; sampling: {scores['sampling']}" if scores.get("sampling") else "")
        + ".",
        "Means with 95% confidence intervals (BCa bootstrap; Wilson for 0/1 rates; none below 10 stories) and "
        "the number of stories.",
        "",
        *counts_lines(scores),
        "",
    ]
    if scores["judge"]:
        lines += ["## Judge scores (1-5)", "", *judge_table(scores), ""]
        lines += [f"![{p.stem}]({p.name})" for p in charts] + [""]
    if scores["metrics"]:
        lines += ["## Automatic metrics", "", *metrics_table(scores), ""]
    lines += ["## Example stories", ""]
    criteria_of = {j["prompt_id"]: j.get("criteria") for j in judgments}
    for variety in sorted({g["variety"] for g in generations}):
        for g in [g for g in generations if g["variety"] == variety][:EXAMPLES_PER_VARIETY]:
            lines += [
                f"**{g['id']}** ({variety}) — judge: {criteria_of.get(g['id'])}",
                "",
                f"> {g['prompt']}",
                "",
                '<div dir="rtl" lang="ar">',
                "",
                g["story"] or "(empty)",
                "",
                "</div>",
                "",
            ]
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
        flat.update(
            {
                f"{prefix}/corpus/{variety}/{k}": (v["mean"] if isinstance(v, dict) else v)
                for k, v in values.items()
                if v is not None and (not isinstance(v, dict) or v["mean"] is not None)
            }
        )
    flat.update({f"{prefix}/ppl/{v}": p for v, p in (scores.get("perplexity") or {}).items()})
    flat.update({f"{prefix}/bpc/{v}": p for v, p in (scores.get("bits_per_char") or {}).items() if p is not None})
    return flat


def log_to_wandb(
    cfg: DictConfig,
    out_dir: Path,
    scores: dict,
    generations: list[dict],
    judgments: list[dict],
    metric_rows: list[dict],
) -> str:
    """Into the training run's W&B run (same id, resume="allow") when there is a run; else a run of the eval dir."""
    import wandb

    from arastory.train.tracking import wandb_run_id

    home = Path(cfg.run) if cfg.run else Path(out_dir)
    run = wandb.init(
        project=cfg.wandb.project,
        entity=cfg.wandb.entity,
        id=wandb_run_id(home),
        resume="allow",
        dir=str(home),
        mode=cfg.wandb.mode,
        job_type="eval" if not cfg.run else None,
        name=None if cfg.run else f"eval-{scores['system']}",
        settings=wandb.Settings(silent=True),
    )
    prefix = f"eval/{scores['system']}"
    criteria_of = {j["prompt_id"]: j.get("criteria") or {} for j in judgments}
    metrics_of = {m["id"]: m for m in metric_rows}
    columns: list[str | int] = [
        "id",
        "variety",
        "prompt",
        "story",
        *CRITERIA,
        "dialect_correct",
        "dialect_prob",
        "words",
    ]
    table = wandb.Table(columns=columns)
    for g in generations:
        crit, met = criteria_of.get(g["id"], {}), metrics_of.get(g["id"], {})
        table.add_data(
            g["id"],
            g["variety"],
            g["prompt"],
            g["story"],
            *[crit.get(c) for c in CRITERIA],
            met.get("dialect_correct"),
            met.get("dialect_prob"),
            met.get("words"),
        )
    charts = sorted([*Path(out_dir).glob("criterion_*.png"), *Path(out_dir).glob("variety_*.png")])
    images = {f"{prefix}/charts/{p.stem}": wandb.Image(str(p)) for p in charts}
    run.log({**flat_scores(scores, prefix), f"{prefix}/stories": table, **images})
    run.summary.update({f"{prefix}/out_dir": str(out_dir)})
    run_id = run.id
    run.finish()
    return run_id

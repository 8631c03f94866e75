"""Gather many evaluations (eval dirs or sweep dirs holding scores.json) into one table, plots and paired comparisons.

Paired comparisons pair stories by prompt content (prompt_key: variety + text), never by id, and only between evals
scored by the same judge (endpoint, model, rubric, parameters). What each eval was made with (judge, rubric hash,
sampling, prompt set, n) is shown beside it; differences are flagged loudly, or refused with comparison.strict=true.
Diversity is recomputed for every eval at one fixed subset size.
"""

from __future__ import annotations

import io
import itertools
import json
import logging
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from arastory.errors import ConfigError, DataError
from arastory.evaluate.criteria import CRITERIA
from arastory.evaluate.prompts import prompt_key
from arastory.evaluate.stats import holm_adjust, paired_comparison
from arastory.io import atomic_write_json, atomic_write_text, iter_jsonl
from arastory.tables import markdown_table

log = logging.getLogger(__name__)

CONFIG_KEYS = ("strategy", "dialect", "model", "filter_threshold", "synthetic_size", "translated_size")
TABLE_COLUMNS = (
    "eval",
    "path",
    "system",
    "run",
    *CONFIG_KEYS,
    "judge",
    "rubric",
    "variety",
    "kind",
    "name",
    "mean",
    "ci_low",
    "ci_high",
    "n",
)
HELD_OUT_KINDS = (("perplexity", "perplexity"), ("bits_per_char", "bits/char"), ("bits_per_word", "bits/word"))
# Plotted next to the judge criteria when present: the classifier's variety accuracy.
PLOTTED_METRICS = ("dialect_correct",)
# x axes of the sweep plots: the study's open questions (filter threshold, data size).
SWEEP_AXES = ("filter_threshold", "synthetic_size", "translated_size")


@dataclass
class Evaluation:
    """One eval dir: its scores.json, the train config it came from, and a readable name."""

    path: Path
    scores: dict
    config: dict = field(default_factory=dict)
    name: str = ""

    @property
    def system(self) -> str:
        return str(self.scores.get("system") or self.path.name)

    @property
    def judge(self) -> dict:
        """The judge that produced the scores: provenance when recorded, else the bare model name (older evals)."""
        recorded = (self.scores.get("provenance") or {}).get("judge")
        if recorded:
            return recorded
        model = self.scores.get("judge_model")
        return {"model": model, "key": f"unrecorded:{model}" if model else None}

    @property
    def judge_label(self) -> str:
        judge = self.judge
        if not judge.get("model"):
            return "none"
        where = judge.get("endpoint") or (
            f"local {judge.get('quant') or judge.get('dtype') or ''}".strip()
            if judge.get("backend") == "hf"
            else "endpoint unrecorded"
        )
        return f"{judge['model']} @ {where}"

    @property
    def rubric(self) -> str | None:
        return self.judge.get("rubric")

    @property
    def prompt_set(self) -> str | None:
        generation = (self.scores.get("provenance") or {}).get("generation") or {}
        return (generation.get("prompts") or {}).get("hash")

    @property
    def generation_key(self) -> str | None:
        return (self.scores.get("provenance") or {}).get("generation_key")


def find_evaluations(paths: list[str]) -> list[Path]:
    """Eval dirs among `paths`: a dir with scores.json, or any dir below which scores.json files are found."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise DataError(path, "no such eval dir")
        if path.is_file():
            path = path.parent if path.name == "scores.json" else path
            if not (path / "scores.json").exists():
                raise DataError(raw, "not an eval dir or scores.json")
        if (path / "scores.json").exists():
            hits = [path]
        else:
            hits = sorted(p.parent for p in path.rglob("scores.json"))
        if not hits:
            raise DataError(path, "no scores.json in it or below it (is it an eval dir or a sweep of them?)")
        found.extend(h for h in hits if h.resolve() not in {f.resolve() for f in found})
    return found


def load_evaluation(path: Path) -> Evaluation:
    scores_path = path / "scores.json"
    try:
        scores = json.loads(scores_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(scores_path, f"invalid JSON ({exc.msg})", exc.lineno) from None
    if not isinstance(scores, dict):
        raise DataError(scores_path, "expected a JSON object")
    for section in ("judge", "metrics", "corpus_metrics", "perplexity", "bits_per_char", "bits_per_word"):
        value = scores.get(section)
        if value is not None and not (
            isinstance(value, dict) and all(isinstance(v, (dict, int, float)) for v in value.values())
        ):
            raise DataError(scores_path, f"'{section}' must map each variety to its scores")
    return Evaluation(path=path, scores=scores, config=dict(scores.get("config") or {}))


def _name_evaluations(evals: list[Evaluation]) -> None:
    """System names, made unique with the config values that differ, then with the path."""
    varying = _varying_keys(evals)
    for ev in evals:
        ev.name = ev.system
    if len({ev.name for ev in evals}) == len(evals):
        return
    for ev in evals:
        parts = [f"{k}={ev.config.get(k)}" for k in varying if ev.config.get(k) is not None]
        ev.name = f"{ev.system} [{', '.join(parts)}]" if parts else ev.system
    counts: defaultdict[str, int] = defaultdict(int)
    for ev in evals:
        counts[ev.name] += 1
    root = Path(os.path.commonpath([str(ev.path.resolve()) for ev in evals]))
    for ev in evals:
        if counts[ev.name] > 1:
            ev.name = (
                f"{ev.name} ({ev.path.resolve().relative_to(root) if ev.path.resolve() != root else ev.path.name})"
            )


def _varying_keys(evals: list[Evaluation], keys=CONFIG_KEYS) -> list[str]:
    return [k for k in keys if len({json.dumps(ev.config.get(k)) for ev in evals if ev.config}) > 1]


def score_rows(evals: list[Evaluation], diversity: dict | None = None) -> list[dict]:
    """One row per evaluation x variety x judge criterion / metric / diversity metric / held-out perplexity or bits.

    `diversity` ({eval name: {variety: {metric: stat}}}) holds every eval's diversity at one subset size."""
    diversity = diversity or {}
    rows = []
    for ev in evals:
        base = {
            "eval": ev.name,
            "path": str(ev.path),
            "system": ev.system,
            "run": ev.scores.get("run"),
            **{k: ev.config.get(k) for k in CONFIG_KEYS},
            "judge": ev.judge_label,
            "rubric": ev.rubric,
        }
        for kind in ("judge", "metrics"):
            for variety, per_name in sorted((ev.scores.get(kind) or {}).items()):
                for name, stat in per_name.items():
                    if not isinstance(stat, dict) or "mean" not in stat:
                        raise DataError(
                            ev.path / "scores.json", f"{kind}.{variety}.{name}: expected {{mean, ci_low, ci_high, n}}"
                        )
                    rows.append(
                        {
                            **base,
                            "variety": variety,
                            "kind": kind,
                            "name": name,
                            "mean": stat["mean"],
                            "ci_low": stat.get("ci_low"),
                            "ci_high": stat.get("ci_high"),
                            "n": stat.get("n"),
                        }
                    )
        for variety, per_name in sorted((diversity.get(ev.name) or {}).items()):
            for name, stat in per_name.items():
                rows.append(
                    {
                        **base,
                        "variety": variety,
                        "kind": "corpus",
                        "name": name,
                        "mean": stat["mean"],
                        "ci_low": stat["ci_low"],
                        "ci_high": stat["ci_high"],
                        "n": stat["n"],
                    }
                )
        for kind, label in HELD_OUT_KINDS:
            for variety, value in sorted((ev.scores.get(kind) or {}).items()):
                rows.append(
                    {
                        **base,
                        "variety": variety,
                        "kind": "perplexity",
                        "name": label,
                        "mean": value,
                        "ci_low": None,
                        "ci_high": None,
                        "n": None,
                    }
                )
    return rows


def prompt_keys_of(path: Path) -> dict[str, str]:
    """{prompt id: prompt_key} of an eval dir, from its generations (or prompts) file; {} when it has neither."""
    for name in ("generations.jsonl", "prompts.jsonl"):
        file = path / name
        if file.exists():
            return {
                row["id"]: row.get("prompt_key") or prompt_key(row["variety"], row["prompt"])
                for _, row in iter_jsonl(file, on_error="skip")
                if isinstance(row.get("id"), str) and isinstance(row.get("prompt"), str)
            }
    return {}


@dataclass
class Judged:
    """One eval's readable judge scores by prompt content, and what could not be read."""

    scores: dict = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(dict))
    )  # variety → criterion → key → score
    unreadable: dict = field(default_factory=lambda: dict.fromkeys(CRITERIA, 0))  # criterion → stories
    unkeyed: int = 0  # judged, prompt text unknown


def judgment_scores(ev: Evaluation) -> Judged:
    """The readable scores in judgments.jsonl by this eval's own judge (rows of an earlier judge are left out),
    keyed by prompt content; unreadable answers are skipped and counted per criterion."""
    file = ev.path / "judgments.jsonl"
    out = Judged()
    provenance = ev.scores.get("provenance")
    if not file.exists() or (provenance is not None and not provenance.get("judge")):
        return out  # no judge made this eval's numbers (judge=none), whatever an earlier run left in the file
    keys = prompt_keys_of(ev.path)
    judge_key = ((ev.scores.get("provenance") or {}).get("judge") or {}).get("key")
    latest: dict[str, dict] = {}
    for lineno, row in iter_jsonl(file):
        prompt_id = row.get("prompt_id") or row.get("id")
        if prompt_id is None:
            raise DataError(file, "expected prompt_id", lineno)
        if judge_key and row.get("judge_key") != judge_key:
            continue
        latest[str(prompt_id)] = row
    for prompt_id, row in latest.items():
        criteria = row["criteria"] if isinstance(row.get("criteria"), dict) else {}
        key = row.get("prompt_key") or keys.get(prompt_id)
        out.unkeyed += key is None and bool(criteria)
        for criterion in CRITERIA:
            score = criteria.get(criterion)
            if not isinstance(score, (int, float)) or isinstance(score, bool):
                out.unreadable[criterion] += 1
            elif key is not None:
                out.scores[row.get("variety", "all")][criterion][key] = float(score)
    return out


def paired_rows(
    evals: list[Evaluation], judged: dict[str, Judged], n_boot: int = 2000, seed: int = 0
) -> tuple[list[dict], list[str]]:
    """Paired comparisons per variety (and all varieties pooled) and criterion, on identical prompts only, between
    evals of the same judge; Holm-adjusted p-values over the whole table. Returns (rows, notes on pairs left out)."""
    rows, notes = [], []
    for a, b in itertools.combinations(evals, 2):
        ja, jb = judged[a.name].scores, judged[b.name].scores
        if not ja or not jb:
            continue
        shared_keys = {k for v in ja.values() for c in v.values() for k in c} & {
            k for v in jb.values() for c in v.values() for k in c
        }
        if not shared_keys:
            notes.append(
                f"{a.name} vs {b.name}: no paired comparison, they share no prompts (same ids do not mean "
                "same prompts; evaluate both with prompts=<eval dir>/prompts.jsonl)"
            )
            continue
        if a.judge.get("key") != b.judge.get("key"):
            notes.append(
                f"{a.name} vs {b.name}: not paired, judged by different judges or rubrics "
                f"({a.judge_label}, rubric {a.rubric} vs {b.judge_label}, rubric {b.rubric})"
            )
            continue
        for variety in [*sorted(set(ja) & set(jb)), "all"]:
            for criterion in CRITERIA:
                sa, sb = _scores_for(ja, variety, criterion), _scores_for(jb, variety, criterion)
                if not set(sa) & set(sb) or (variety == "all" and len(set(ja) & set(jb)) < 2):
                    continue
                result = paired_comparison(sa, sb, n_boot=n_boot, seed=seed)
                rows.append({"a": a.name, "b": b.name, "variety": variety, "criterion": criterion, **result})
    for row, adjusted in zip(rows, holm_adjust([r["p_value"] for r in rows]), strict=False):
        row["p_holm"] = adjusted
    return rows, notes


def _scores_for(judged: dict, variety: str, criterion: str) -> dict[str, float]:
    if variety != "all":
        return judged.get(variety, {}).get(criterion, {})
    return {k: v for per_variety in judged.values() for k, v in per_variety.get(criterion, {}).items()}


def current_stories(ev: Evaluation) -> dict[str, list[str]]:
    """{variety: stories} of the eval's own generation settings (latest row per prompt)."""
    file = ev.path / "generations.jsonl"
    if not file.exists():
        return {}
    latest = {}
    for _, row in iter_jsonl(file, on_error="skip"):
        gen_key = (row.get("meta") or {}).get("gen_key")
        if isinstance(row.get("story"), str) and (ev.generation_key is None or gen_key in (None, ev.generation_key)):
            latest[row.get("id")] = row
    out: dict[str, list[str]] = defaultdict(list)
    for row in latest.values():
        out[row.get("variety", "all")].append(row["story"])
    return out


def diversity_rows(evals: list[Evaluation], k: int, seed: int = 0) -> tuple[dict, list[str]]:
    """Every eval's diversity at subsets of k stories per variety, recomputed from its stories; an eval without
    stories keeps what its scores.json holds only when it was measured at the same k."""
    from arastory.evaluate.metrics import diversity_at

    out, notes = {}, []
    for ev in evals:
        stories = current_stories(ev)
        if stories:
            out[ev.name] = {v: diversity_at(texts, k, seed=seed) for v, texts in sorted(stories.items())}
            short = [v for v, texts in stories.items() if len(texts) < k]
            if short:
                notes.append(
                    f"{ev.name}: fewer than {k} stories in {', '.join(sorted(short))}: no diversity value there"
                )
        elif (ev.scores.get("diversity") or {}).get("subsample") == k:
            out[ev.name] = ev.scores.get("corpus_metrics") or {}
        elif ev.scores.get("corpus_metrics"):
            notes.append(f"{ev.name}: diversity left out (no generations.jsonl to measure it at {k} stories)")
    return out, notes


def provenance_flags(evals: list[Evaluation]) -> list[str]:
    """What makes the evaluations' numbers not directly comparable."""
    flags = []
    judged = [ev for ev in evals if ev.judge.get("model")]
    for label, value in (("judges", lambda ev: ev.judge.get("key")), ("rubrics", lambda ev: ev.rubric)):
        groups = defaultdict(list)
        for ev in judged:
            groups[value(ev)].append(ev.name)
        if len(groups) > 1:
            flags.append(
                f"different {label}: "
                + "; ".join(
                    f"{', '.join(names)}: {_judge_text(next(ev for ev in judged if ev.name == names[0]))}"
                    for names in groups.values()
                )
            )
    sets = defaultdict(list)
    for ev in evals:
        sets[ev.prompt_set or "unrecorded"].append(ev.name)
    if len(sets) > 1:
        flags.append("different prompt sets: " + "; ".join(f"{', '.join(names)}: {key}" for key, names in sets.items()))
    fingerprints = {ev.name: ev.scores.get("val_fingerprint") for ev in evals if ev.scores.get("val_fingerprint")}
    if len(set(fingerprints.values())) > 1:
        flags.append(
            "different held-out sets (training val_fingerprint): "
            + ", ".join(f"{name}: {fp}" for name, fp in fingerprints.items())
            + "; perplexity and bits are not comparable"
        )
    return flags


def _judge_text(ev: Evaluation) -> str:
    return f"{ev.judge_label}, rubric {ev.rubric or 'unrecorded'}"


def compare_evaluations(
    paths: list[str],
    out_dir: str | Path,
    n_boot: int = 2000,
    seed: int = 0,
    strict: bool = False,
    diversity_subsample: int = 50,
) -> dict:
    """Write compare.csv, compare.md, paired.csv and the sweep plots to `out_dir`; return what was found and written.

    `strict`: refuse (one line) evaluations of different judges, rubrics or prompt sets instead of flagging them."""
    evals = [load_evaluation(p) for p in find_evaluations([str(p) for p in paths])]
    _name_evaluations(evals)
    flags = provenance_flags(evals)
    if strict and flags:
        raise ConfigError("comparison.strict", f"refusing to compare: {flags[0]}")
    for flag in flags:
        log.warning(flag)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    judged = {ev.name: judgment_scores(ev) for ev in evals}
    diversity, notes = diversity_rows(evals, diversity_subsample, seed)
    rows = score_rows(evals, diversity)
    paired, pair_notes = paired_rows(evals, judged, n_boot=n_boot, seed=seed)
    notes = pair_notes + notes
    atomic_write_text(out / "compare.csv", _csv(rows, TABLE_COLUMNS))
    if paired:
        atomic_write_text(out / "paired.csv", _csv(paired, list(paired[0])))
    plots = _plots(evals, rows, out)
    unreadable = {ev.name: judged[ev.name].unreadable for ev in evals if ev.judge.get("model")}
    atomic_write_text(
        out / "compare.md", _markdown(evals, rows, paired, plots, flags, notes, unreadable, diversity_subsample)
    )
    summary = {
        "evaluations": [
            {
                "name": ev.name,
                "path": str(ev.path),
                "system": ev.system,
                "config": ev.config or None,
                "judge": ev.judge_label,
                "judge_key": ev.judge.get("key"),
                "rubric": ev.rubric,
                "sampling": ev.scores.get("sampling"),
                "prompt_set": ev.prompt_set,
                "n_prompts": ev.scores.get("n_prompts"),
                "n_judged": ev.scores.get("n_judged"),
                "val_fingerprint": ev.scores.get("val_fingerprint"),
            }
            for ev in evals
        ],
        "warnings": flags,
        "notes": notes,
        "unreadable": unreadable,
        "diversity_subsample": diversity_subsample,
        "rows": len(rows),
        "paired": paired,
        "files": {
            "csv": str(out / "compare.csv"),
            "markdown": str(out / "compare.md"),
            "paired": str(out / "paired.csv") if paired else None,
            "plots": [str(p) for p in plots],
        },
    }
    atomic_write_json(out / "compare.json", summary)
    return summary


def _csv(rows: list[dict], columns) -> str:
    import csv

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


# ---- plots -------------------------------------------------------------------------------------------------------


def _panels(rows: list[dict]) -> list[tuple[str, str]]:
    judge = sorted({r["name"] for r in rows if r["kind"] == "judge"}, key=_criterion_order)
    metrics = [m for m in PLOTTED_METRICS if any(r["kind"] == "metrics" and r["name"] == m for r in rows)]
    return [("judge", c) for c in judge] + [("metrics", m) for m in metrics]


def _criterion_order(name: str):
    order = ["fluency", "coherence", "instruction_following", "consistency", "variety"]
    return (order.index(name) if name in order else len(order), name)


def _plots(evals: list[Evaluation], rows: list[dict], out: Path) -> list[Path]:
    """Only the plots the evaluations support: an axis is plotted when its config value differs between them."""
    configured = [ev for ev in evals if ev.config]
    panels = _panels(rows)
    if not panels or len(configured) < 2:
        return []
    written = []
    for axis in SWEEP_AXES:
        with_axis = [ev for ev in configured if ev.config.get(axis) is not None]
        if len({ev.config[axis] for ev in with_axis}) > 1:
            written.append(_plot_sweep(with_axis, rows, panels, axis, out / f"score_vs_{axis}.png"))
    strategies = [ev for ev in configured if ev.config.get("strategy")]
    if len({ev.config["strategy"] for ev in strategies}) > 1:
        written.append(_plot_strategies(strategies, rows, panels, out / "direct_vs_sequential.png"))
    return written


def _series_key(ev: Evaluation, keys: list[str]) -> str:
    return ", ".join(f"{k}={ev.config.get(k)}" for k in keys)


def _stat(rows_by_eval: dict, ev: Evaluation, variety: str, panel: tuple[str, str]) -> dict | None:
    for row in rows_by_eval[ev.name]:
        if row["variety"] == variety and (row["kind"], row["name"]) == panel and row["mean"] is not None:
            return row
    return None


def _figure(n_panels: int):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(3, n_panels)
    rows = -(-n_panels // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.6 * rows), squeeze=False)
    for extra in axes.flat[n_panels:]:
        extra.set_visible(False)
    return plt, fig, list(axes.flat)


def _scale(ax, panel: tuple[str, str]) -> None:
    """Judge scores on their 1-5 scale; 0/1 rates on 0-1."""
    if panel[0] == "judge":
        ax.set_ylim(1, 5.2)
    else:
        ax.set_ylim(0, 1.05)


def _error(stat: dict) -> tuple[float, float]:
    """Error bar lengths; NaN (no bar drawn) for a mean without an interval, so it never looks like a sure value."""
    if stat.get("ci_low") is None or stat.get("ci_high") is None:
        return float("nan"), float("nan")
    return max(0.0, stat["mean"] - stat["ci_low"]), max(0.0, stat["ci_high"] - stat["mean"])


def _plot_sweep(evals: list[Evaluation], rows: list[dict], panels, axis: str, path: Path) -> Path:
    """Score against `axis`, one line per variety (and per other config that varies), 95% CI error bars."""
    rows_by_eval = _rows_by_eval(rows)
    others = [k for k in _varying_keys(evals) if k != axis]
    varieties = sorted({r["variety"] for r in rows if r["eval"] in {ev.name for ev in evals}})
    plt, fig, axes = _figure(len(panels))
    for ax, panel in zip(axes, panels, strict=False):
        for variety in varieties:
            for key in sorted({_series_key(ev, others) for ev in evals}):
                points = []
                for ev in evals:
                    stat = _stat(rows_by_eval, ev, variety, panel)
                    if stat and _series_key(ev, others) == key:
                        points.append((float(ev.config[axis]), stat))
                if not points:
                    continue
                points.sort(key=lambda p: p[0])
                xs = [p[0] for p in points]
                ys = [p[1]["mean"] for p in points]
                errors = list(zip(*[_error(p[1]) for p in points], strict=False))
                label = variety + (f" ({key})" if key else "")
                ax.errorbar(xs, ys, yerr=errors, marker="o", capsize=3, label=label)
        ax.set_title(f"{panel[1]} ({panel[0]})")
        ax.set_xlabel(axis)
        _scale(ax, panel)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"score against {axis} (mean, 95% CI where n allows)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _plot_strategies(evals: list[Evaluation], rows: list[dict], panels, path: Path) -> Path:
    """Grouped bars per variety: one bar per strategy (and per other config that varies), 95% CI error bars."""
    import numpy as np

    rows_by_eval = _rows_by_eval(rows)
    others = [k for k in _varying_keys(evals) if k != "strategy"]
    varieties = sorted({r["variety"] for r in rows if r["eval"] in {ev.name for ev in evals}})
    series = sorted({(ev.config["strategy"], _series_key(ev, others)) for ev in evals})
    plt, fig, axes = _figure(len(panels))
    width = 0.8 / len(series)
    for ax, panel in zip(axes, panels, strict=False):
        for i, (strategy, key) in enumerate(series):
            means, errors = [], []
            for variety in varieties:
                found = [
                    _stat(rows_by_eval, ev, variety, panel)
                    for ev in evals
                    if ev.config["strategy"] == strategy and _series_key(ev, others) == key
                ]
                stats = [s for s in found if s]
                # Several evals in one bar (e.g. repeated seeds): the bar is their mean, the error bar the widest CI.
                means.append(float(np.mean([s["mean"] for s in stats])) if stats else np.nan)
                errors.append(
                    tuple(
                        float(np.nanmax(e)) if not np.all(np.isnan(e)) else np.nan
                        for e in zip(*[_error(s) for s in stats], strict=False)
                    )
                    if stats
                    else (np.nan, np.nan)
                )
            xs = np.arange(len(varieties)) + (i - (len(series) - 1) / 2) * width
            floor = 1.0 if panel[0] == "judge" else 0.0  # bars start at the scale's lowest value
            heights = [m - floor for m in means]
            container = ax.bar(
                xs,
                heights,
                width,
                bottom=floor,
                yerr=list(zip(*errors, strict=False)),
                capsize=3,
                label=strategy + (f" ({key})" if key else ""),
            )
            for x, mean in zip(xs, means, strict=False):  # a missing mean is marked, never drawn as a low bar
                if np.isnan(mean):
                    ax.text(
                        x,
                        floor + 0.05,
                        "no score",
                        ha="center",
                        va="bottom",
                        rotation=90,
                        fontsize=7,
                        color=container.patches[0].get_facecolor() if container.patches else "#888",
                    )
        ax.set_xticks(np.arange(len(varieties)), varieties)
        ax.set_title(f"{panel[1]} ({panel[0]})")
        _scale(ax, panel)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle("direct against sequential per variety (mean, 95% CI where n allows)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _rows_by_eval(rows: list[dict]) -> dict[str, list[dict]]:
    grouped = defaultdict(list)
    for row in rows:
        grouped[row["eval"]].append(row)
    return grouped


# ---- markdown ----------------------------------------------------------------------------------------------------


def _fmt(value, digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _cell(row: dict | None) -> str:
    if row is None or row["mean"] is None:
        return "–"
    if row.get("ci_low") is None:
        return _fmt(row["mean"], 3) + (f" (n={row['n']}, no CI)" if row.get("n") else "")
    return f"{row['mean']:.2f} [{row['ci_low']:.2f}, {row['ci_high']:.2f}]"


def _pivot(rows: list[dict], kind: str) -> str | None:
    selected = [r for r in rows if r["kind"] == kind]
    if not selected:
        return None
    names = sorted({r["name"] for r in selected}, key=_criterion_order)
    index = {(r["eval"], r["variety"], r["name"]): r for r in selected}
    keys = sorted({(r["eval"], r["variety"]) for r in selected})
    body = [[ev, variety] + [_cell(index.get((ev, variety, n))) for n in names] for ev, variety in keys]
    # "variety" is both the prompts' variety (the row) and a judge criterion (a column): label the column apart
    header = ["evaluation", "variety", *[f"{n} (criterion)" if n == "variety" else n for n in names]]
    return markdown_table(header, body)


def _sampling_text(sampling: dict | None) -> str:
    if not sampling:
        return "–"
    if not sampling.get("do_sample", True):
        return f"greedy, max {sampling.get('max_new_tokens')}"
    return f"T={sampling.get('temperature')}, top_p={sampling.get('top_p')}, max {sampling.get('max_new_tokens')}"


def _p(value) -> str:
    return "–" if value is None else f"{value:.3f}"


def _diff_cell(p: dict) -> str:
    if p.get("ci_low") is None:
        return f"{p['mean_diff']:+.2f} (no CI, n<10)"
    return f"{p['mean_diff']:+.2f} [{p['ci_low']:+.2f}, {p['ci_high']:+.2f}]"


def _markdown(
    evals: list[Evaluation],
    rows: list[dict],
    paired: list[dict],
    plots: list[Path],
    flags: list[str],
    notes: list[str],
    unreadable: dict,
    diversity_subsample: int,
) -> str:
    parts = [
        "# Comparison of evaluations",
        "",
        f"{len(evals)} evaluations. Cells: mean [95% CI] (BCa bootstrap; Wilson for 0/1 rates; no CI below 10 "
        f"stories); diversity: mean over random sets of {diversity_subsample} stories [2.5-97.5 percentiles]; "
        "perplexity and bits have no CI. Full table: compare.csv.",
        "",
    ]
    if flags:
        parts += ["## ⚠ WARNING: these numbers are not all comparable", ""] + [f"- **{flag}**" for flag in flags] + [""]
    parts += [
        "## Evaluations",
        "",
        markdown_table(
            ["evaluation", "path", *CONFIG_KEYS, "judge", "rubric", "sampling", "prompt set", "prompts", "judged"],
            [
                [
                    ev.name,
                    str(ev.path),
                    *[_fmt(ev.config.get(k)) for k in CONFIG_KEYS],
                    ev.judge_label,
                    _fmt(ev.rubric),
                    _sampling_text(ev.scores.get("sampling")),
                    _fmt(ev.prompt_set),
                    _fmt(ev.scores.get("n_prompts")),
                    _fmt(ev.scores.get("n_judged")),
                ]
                for ev in evals
            ],
        ),
        "",
    ]
    titles = {
        "judge": "Judge scores (1-5)",
        "metrics": "Story metrics",
        "corpus": f"Diversity at {diversity_subsample} stories per variety",
        "perplexity": "Held-out real stories: perplexity, bits per character and per word",
    }
    for kind, title in titles.items():
        table = _pivot(rows, kind)
        if table:
            parts += [f"## {title}", "", table, ""]
    if unreadable:
        parts += [
            "## Unreadable judge answers (left out of the means and the pairs)",
            "",
            markdown_table(
                ["evaluation", *CRITERIA],
                [[name, *[str(counts[c]) for c in CRITERIA]] for name, counts in unreadable.items()],
            ),
            "",
        ]
    if paired:
        parts += [
            "## Paired comparisons (identical prompts, same judge)",
            "",
            "Difference A - B of judge scores on the prompts (same variety and text) both were scored on, with a "
            "paired BCa bootstrap CI; win/tie/loss: share of prompts where A scored higher / the same / lower; "
            "p: sign-flip test; p (Holm): adjusted over every row of this table.",
            "",
            markdown_table(
                [
                    "A",
                    "B",
                    "variety",
                    "criterion",
                    "n pairs",
                    "mean A",
                    "mean B",
                    "A - B [95% CI]",
                    "win/tie/loss",
                    "p",
                    "p (Holm)",
                ],
                [
                    [
                        p["a"],
                        p["b"],
                        p["variety"],
                        p["criterion"],
                        str(p["n_pairs"]),
                        _fmt(p["mean_a"]),
                        _fmt(p["mean_b"]),
                        _diff_cell(p),
                        f"{p['win_rate']:.2f}/{p['tie_rate']:.2f}/{p['loss_rate']:.2f}",
                        _p(p["p_value"]),
                        _p(p["p_holm"]),
                    ]
                    for p in paired
                ],
            ),
            "",
        ]
    if notes:
        parts += ["## Notes", ""] + [f"- {note}" for note in notes] + [""]
    if plots:
        parts += ["## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots] + [""]
    return "\n".join(parts)

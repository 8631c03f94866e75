"""Gather many evaluations (eval dirs or sweep dirs holding scores.json) into one table, plots and paired comparisons."""

from __future__ import annotations

import io
import itertools
import json
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from arastory.errors import DataError
from arastory.evaluate.stats import paired_comparison
from arastory.io import atomic_write_json, atomic_write_text, iter_jsonl

CONFIG_KEYS = ("strategy", "dialect", "model", "filter_threshold", "synthetic_size", "translated_size")
TABLE_COLUMNS = ("eval", "path", "system", "run", *CONFIG_KEYS, "variety", "kind", "name", "mean", "ci_low",
                 "ci_high", "n")
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
    for section in ("judge", "metrics", "corpus_metrics", "perplexity"):
        value = scores.get(section)
        if value is not None and not (isinstance(value, dict) and all(isinstance(v, (dict, int, float))
                                                                        for v in value.values())):
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
    counts = defaultdict(int)
    for ev in evals:
        counts[ev.name] += 1
    root = Path(os.path.commonpath([str(ev.path.resolve()) for ev in evals]))
    for ev in evals:
        if counts[ev.name] > 1:
            ev.name = f"{ev.name} ({ev.path.resolve().relative_to(root) if ev.path.resolve() != root else ev.path.name})"


def _varying_keys(evals: list[Evaluation], keys=CONFIG_KEYS) -> list[str]:
    return [k for k in keys if len({json.dumps(ev.config.get(k)) for ev in evals if ev.config}) > 1]


def score_rows(evals: list[Evaluation]) -> list[dict]:
    """One row per evaluation x variety x judge criterion / metric / corpus metric / perplexity."""
    rows = []
    for ev in evals:
        base = {"eval": ev.name, "path": str(ev.path), "system": ev.system, "run": ev.scores.get("run"),
                **{k: ev.config.get(k) for k in CONFIG_KEYS}}
        for kind in ("judge", "metrics"):
            for variety, per_name in sorted((ev.scores.get(kind) or {}).items()):
                for name, stat in per_name.items():
                    if not isinstance(stat, dict) or "mean" not in stat:
                        raise DataError(ev.path / "scores.json", f"{kind}.{variety}.{name}: expected {{mean, ci_low, ci_high, n}}")
                    rows.append({**base, "variety": variety, "kind": kind, "name": name, "mean": stat["mean"],
                                 "ci_low": stat.get("ci_low"), "ci_high": stat.get("ci_high"), "n": stat.get("n")})
        for variety, per_name in sorted((ev.scores.get("corpus_metrics") or {}).items()):
            for name, value in per_name.items():
                rows.append({**base, "variety": variety, "kind": "corpus", "name": name, "mean": value,
                             "ci_low": None, "ci_high": None, "n": None})
        for variety, value in sorted((ev.scores.get("perplexity") or {}).items()):
            rows.append({**base, "variety": variety, "kind": "perplexity", "name": "perplexity", "mean": value,
                         "ci_low": None, "ci_high": None, "n": None})
    return rows


def judgment_scores(path: Path) -> dict[str, dict[str, dict[str, float]]]:
    """{variety: {criterion: {prompt_id: score}}} from judgments.jsonl (empty when the eval has none)."""
    file = path / "judgments.jsonl"
    out: dict = defaultdict(lambda: defaultdict(dict))
    if not file.exists():
        return out
    for lineno, row in iter_jsonl(file):
        prompt_id = row.get("prompt_id") or row.get("id")
        criteria = row.get("criteria")
        if prompt_id is None or not isinstance(criteria, dict):
            raise DataError(file, "expected prompt_id and a criteria object", lineno)
        for criterion, score in criteria.items():
            if isinstance(score, (int, float)):
                out[row.get("variety", "all")][criterion][prompt_id] = float(score)
    return out


def paired_rows(evals: list[Evaluation], n_boot: int = 2000, seed: int = 0) -> list[dict]:
    """Paired comparisons per variety (and all varieties pooled) and criterion, for each pair sharing prompt ids."""
    judged = {ev.name: judgment_scores(ev.path) for ev in evals}
    rows = []
    for a, b in itertools.combinations(evals, 2):
        ja, jb = judged[a.name], judged[b.name]
        for variety in sorted(set(ja) & set(jb)) + ["all"]:
            for criterion in sorted({c for v in ja.values() for c in v} & {c for v in jb.values() for c in v}):
                sa, sb = _scores_for(ja, variety, criterion), _scores_for(jb, variety, criterion)
                if not set(sa) & set(sb) or (variety == "all" and len(set(ja) & set(jb)) < 2):
                    continue
                result = paired_comparison(sa, sb, n_boot=n_boot, seed=seed)
                rows.append({"a": a.name, "b": b.name, "variety": variety, "criterion": criterion, **result})
    return rows


def _scores_for(judged: dict, variety: str, criterion: str) -> dict[str, float]:
    if variety != "all":
        return judged.get(variety, {}).get(criterion, {})
    return {k: v for per_variety in judged.values() for k, v in per_variety.get(criterion, {}).items()}


def compare_evaluations(paths: list[str], out_dir, n_boot: int = 2000, seed: int = 0) -> dict:
    """Write compare.csv, compare.md, paired.csv and the sweep plots to `out_dir`; return what was found and written."""
    evals = [load_evaluation(p) for p in find_evaluations([str(p) for p in paths])]
    _name_evaluations(evals)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = score_rows(evals)
    paired = paired_rows(evals, n_boot=n_boot, seed=seed)
    atomic_write_text(out / "compare.csv", _csv(rows, TABLE_COLUMNS))
    if paired:
        atomic_write_text(out / "paired.csv", _csv(paired, list(paired[0])))
    plots = _plots(evals, rows, out)
    atomic_write_text(out / "compare.md", _markdown(evals, rows, paired, plots))
    summary = {
        "evaluations": [{"name": ev.name, "path": str(ev.path), "system": ev.system, "config": ev.config or None}
                        for ev in evals],
        "rows": len(rows),
        "paired": paired,
        "files": {"csv": str(out / "compare.csv"), "markdown": str(out / "compare.md"),
                  "paired": str(out / "paired.csv") if paired else None, "plots": [str(p) for p in plots]},
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


def _error(stat: dict) -> tuple[float, float]:
    if stat.get("ci_low") is None or stat.get("ci_high") is None:
        return 0.0, 0.0
    return max(0.0, stat["mean"] - stat["ci_low"]), max(0.0, stat["ci_high"] - stat["mean"])


def _plot_sweep(evals: list[Evaluation], rows: list[dict], panels, axis: str, path: Path) -> Path:
    """Score against `axis`, one line per variety (and per other config that varies), 95% CI error bars."""
    rows_by_eval = _rows_by_eval(rows)
    others = [k for k in _varying_keys(evals) if k != axis]
    varieties = sorted({r["variety"] for r in rows if r["eval"] in {ev.name for ev in evals}})
    plt, fig, axes = _figure(len(panels))
    for ax, panel in zip(axes, panels):
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
                errors = list(zip(*[_error(p[1]) for p in points]))
                label = variety + (f" ({key})" if key else "")
                ax.errorbar(xs, ys, yerr=errors, marker="o", capsize=3, label=label)
        ax.set_title(f"{panel[1]} ({panel[0]})")
        ax.set_xlabel(axis)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"score against {axis} (mean, 95% bootstrap CI)")
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
    for ax, panel in zip(axes, panels):
        for i, (strategy, key) in enumerate(series):
            means, errors = [], []
            for variety in varieties:
                stats = [_stat(rows_by_eval, ev, variety, panel) for ev in evals
                         if ev.config["strategy"] == strategy and _series_key(ev, others) == key]
                stats = [s for s in stats if s]
                # Several evals in one bar (e.g. repeated seeds): the bar is their mean, the error bar the widest CI.
                means.append(float(np.mean([s["mean"] for s in stats])) if stats else np.nan)
                errors.append(tuple(max(e) for e in zip(*[_error(s) for s in stats])) if stats else (0.0, 0.0))
            xs = np.arange(len(varieties)) + (i - (len(series) - 1) / 2) * width
            ax.bar(xs, means, width, yerr=list(zip(*errors)), capsize=3,
                   label=strategy + (f" ({key})" if key else ""))
        ax.set_xticks(np.arange(len(varieties)), varieties)
        ax.set_title(f"{panel[1]} ({panel[0]})")
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle("direct against sequential per variety (mean, 95% bootstrap CI)")
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
        return _fmt(row["mean"], 3)
    return f"{row['mean']:.2f} [{row['ci_low']:.2f}, {row['ci_high']:.2f}]"


def _table(header: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    return "\n".join(lines)


def _pivot(rows: list[dict], kind: str) -> str | None:
    selected = [r for r in rows if r["kind"] == kind]
    if not selected:
        return None
    names = sorted({r["name"] for r in selected}, key=_criterion_order)
    index = {(r["eval"], r["variety"], r["name"]): r for r in selected}
    keys = sorted({(r["eval"], r["variety"]) for r in selected})
    body = [[ev, variety] + [_cell(index.get((ev, variety, n))) for n in names] for ev, variety in keys]
    # "variety" is both the prompts' variety (the row) and a judge criterion (a column): label the column apart
    return _table(["evaluation", "variety", *[f"{n} (criterion)" if n == "variety" else n for n in names]], body)


def _markdown(evals: list[Evaluation], rows: list[dict], paired: list[dict], plots: list[Path]) -> str:
    parts = ["# Comparison of evaluations", "",
             f"{len(evals)} evaluations. Cells: mean [95% percentile bootstrap CI]; corpus metrics and perplexity "
             "have no CI. Full table: compare.csv.", ""]
    parts += ["## Evaluations", "", _table(["evaluation", "path", *CONFIG_KEYS, "prompts"], [
        [ev.name, str(ev.path), *[_fmt(ev.config.get(k)) for k in CONFIG_KEYS], _fmt(ev.scores.get("n_prompts"))]
        for ev in evals]), ""]
    titles = {"judge": "Judge scores (1-5)", "metrics": "Story metrics", "corpus": "Diversity (corpus metrics)",
              "perplexity": "Perplexity of held-out real stories"}
    for kind, title in titles.items():
        table = _pivot(rows, kind)
        if table:
            parts += [f"## {title}", "", table, ""]
    if paired:
        parts += ["## Paired comparisons (same prompts)", "",
                  "Difference A - B of judge scores on the prompts both were scored on, with a paired bootstrap CI; "
                  "win/tie/loss: share of prompts where A scored higher / the same / lower; p: sign-flip test.", "",
                  _table(["A", "B", "variety", "criterion", "n", "mean A", "mean B", "A - B [95% CI]", "win/tie/loss",
                          "p"],
                         [[p["a"], p["b"], p["variety"], p["criterion"], str(p["n"]), _fmt(p["mean_a"]),
                           _fmt(p["mean_b"]), f"{p['mean_diff']:+.2f} [{p['ci_low']:+.2f}, {p['ci_high']:+.2f}]",
                           f"{p['win_rate']:.2f}/{p['tie_rate']:.2f}/{p['loss_rate']:.2f}", f"{p['p_value']:.3f}"]
                          for p in paired]), ""]
    if plots:
        parts += ["## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots] + [""]
    return "\n".join(parts)

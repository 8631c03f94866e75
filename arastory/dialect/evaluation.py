"""Measure a dialect identifier on labelled stories: accuracy, confusion, calibration, the gate's error rates, drift.

`python -m arastory.dialect evaluate input=<labelled stories> out=<dir>` writes report.json, predictions.jsonl and
PNGs (confusion_matrix, calibration, gate_tradeoff, drift). Gate rates follow the synthesis gate's rule: a story
offered as variety v is kept when P(v) >= threshold[v].
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from arastory.dialect.lexicon import lexicon_features
from arastory.dialect.markers import markers_in
from arastory.dialect.thresholds import gate_threshold
from arastory.io import atomic_write_json, atomic_write_jsonl
from arastory.records import VARIETIES, StoryRecord

if TYPE_CHECKING:
    from arastory.dialect.classifier import DialectAnalysis
    from arastory.dialect.identify import DialectIdentifier

DIALECTS = ("egy", "mor")
HISTOGRAM_BINS = 10


def evaluate_records(
    records: list[StoryRecord],
    identifier: DialectIdentifier,
    out_dir: str | Path,
    thresholds: dict[str, float] | float | None = None,
    calibration_bins: int = 10,
    about: dict | None = None,
) -> dict:
    """Score `records` (labelled by `variety`) with `identifier`; write the report, predictions and plots."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    analyses = identifier.analyze_many([r.story for r in records], [r.variety for r in records])
    classes = list(VARIETIES)
    probs = np.array([[a.probabilities.get(c, 0.0) for c in classes] for a in analyses])
    truth = [r.variety for r in records]
    predicted = [a.predicted for a in analyses]
    present = [v for v in classes if v in truth]
    gate_thresholds = {v: gate_threshold(identifier, v, thresholds) for v in classes}

    report = {
        **(about or {}),
        "n": {v: truth.count(v) for v in present},
        **classification(truth, predicted, present),
        "calibration": calibration(truth, probs, classes, calibration_bins),
        "gate": gate_rates(truth, probs, classes, gate_thresholds),
        "drift": {
            v: drift_distribution([a.msa_share for a, t in zip(analyses, truth, strict=False) if t == v])
            for v in present
            if v != "msa"
        },
        "no_dialect_words": no_dialect_words(records, present),
    }
    rows = [
        {
            "id": r.id,
            "variety": r.variety,
            "predicted": a.predicted,
            "probabilities": a.probabilities,
            "msa_share": round(a.msa_share, 4),
            "sentences": a.sentences,
            "gate_kept": a.probabilities.get(r.variety, 0.0) >= gate_thresholds[r.variety],
        }
        for r, a in zip(records, analyses, strict=False)
    ]
    atomic_write_jsonl(out_dir / "predictions.jsonl", rows)
    report["plots"] = write_plots(out_dir, report, truth, probs, classes, analyses, gate_thresholds)
    atomic_write_json(out_dir / "report.json", report)
    return report


def classification(truth: list[str], predicted: list[str], present: list[str]) -> dict:
    labels = present + sorted({p for p in predicted if p not in present})
    precision, recall, f1, _support = precision_recall_fscore_support(truth, predicted, labels=present, zero_division=0)
    matrix = confusion_matrix(truth, predicted, labels=labels)
    return {
        # story-level, per true variety
        "accuracy": {v: round(float(r), 4) for v, r in zip(present, recall, strict=False)},
        "accuracy_overall": round(float(np.mean([t == p for t, p in zip(truth, predicted, strict=False)])), 4),
        "precision": {v: round(float(p), 4) for v, p in zip(present, precision, strict=False)},
        "recall": {v: round(float(r), 4) for v, r in zip(present, recall, strict=False)},
        "f1": {v: round(float(f), 4) for v, f in zip(present, f1, strict=False)},
        "macro_f1": round(float(np.mean(f1)), 4),
        "confusion": {
            "labels": labels,
            "rows": "true variety",
            "columns": "predicted",
            "matrix": matrix[: len(present)].tolist(),
        },
    }


def calibration(truth: list[str], probs: np.ndarray, classes: list[str], bins: int) -> dict:
    """Expected calibration error of the top label, multiclass Brier score, and per-class reliability bins."""
    onehot = np.array([[t == c for c in classes] for t in truth], dtype=float)
    confidence, top = probs.max(axis=1), probs.argmax(axis=1)
    correct = onehot[np.arange(len(truth)), top]
    edges = np.linspace(0, 1, bins + 1)
    index = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    ece = sum(
        abs(correct[index == b].mean() - confidence[index == b].mean()) * (index == b).mean()
        for b in range(bins)
        if (index == b).any()
    )
    per_class = {}
    for k, c in enumerate(classes):
        which = np.clip(np.digitize(probs[:, k], edges[1:-1]), 0, bins - 1)
        rows = [
            (float(probs[which == b, k].mean()), float(onehot[which == b, k].mean()), int((which == b).sum()))
            for b in range(bins)
            if (which == b).any()
        ]
        per_class[c] = {
            "mean_predicted": [round(r[0], 4) for r in rows],
            "fraction_positive": [round(r[1], 4) for r in rows],
            "count": [r[2] for r in rows],
        }
    return {
        "ece": round(float(ece), 4),
        "brier": round(float(((probs - onehot) ** 2).sum(axis=1).mean()), 4),
        "bins": bins,
        "per_class": per_class,
    }


def gate_rates(truth: list[str], probs: np.ndarray, classes: list[str], thresholds: dict[str, float]) -> dict:
    """false_reject[v]: genuine v stories the gate drops; false_accept[v]: stories of another variety it keeps
    when offered as v (for a dialect, MSA stories; for MSA, dialect stories); other dialect counted apart."""
    truth_arr = np.array(truth)
    rates = {"thresholds": thresholds, "false_reject": {}, "false_accept": {}, "false_accept_other_dialect": {}}
    for k, target in enumerate(classes):
        p = probs[:, k]
        genuine = truth_arr == target
        impostors = (truth_arr == "msa") if target != "msa" else (truth_arr != "msa")
        if genuine.any():
            rates["false_reject"][target] = round(float((p[genuine] < thresholds[target]).mean()), 4)
        if impostors.any():
            rates["false_accept"][target] = round(float((p[impostors] >= thresholds[target]).mean()), 4)
        other = [d for d in DIALECTS if d != target]
        if target in DIALECTS and (truth_arr == other[0]).any():
            rates["false_accept_other_dialect"][target] = round(
                float((p[truth_arr == other[0]] >= thresholds[target]).mean()), 4
            )
    return rates


def drift_distribution(shares: list[float]) -> dict:
    """The distribution of the (weighted) share of MSA sentences in dialect stories."""
    if not shares:
        return {"n": 0}
    values = np.array(shares, dtype=float)
    quantiles = np.percentile(values, [10, 25, 50, 75, 90])
    counts, _ = np.histogram(values, bins=HISTOGRAM_BINS, range=(0, 1))
    return {
        "n": len(values),
        "mean": round(float(values.mean()), 4),
        **{f"p{q}": round(float(v), 4) for q, v in zip((10, 25, 50, 75, 90), quantiles, strict=False)},
        "share_mostly_msa": round(float((values > 0.5).mean()), 4),  # more than half the sentences in MSA
        "histogram": {"bin_edges": np.linspace(0, 1, HISTOGRAM_BINS + 1).round(2).tolist(), "counts": counts.tolist()},
    }


def no_dialect_words(records: list[StoryRecord], present: list[str]) -> dict:
    """Per variety, stories with not one dialect word (lexicon or published markers): MSA whatever the label says."""
    out = {}
    for variety in present:
        rows = [r for r in records if r.variety == variety]
        bare = sum(
            1
            for r in rows
            if not any(lexicon_features(r.story)[0::2])
            and not markers_in(r.story)["egy"]
            and not markers_in(r.story)["mor"]
        )
        out[variety] = {"stories": bare, "share": round(bare / len(rows), 4)}
    return out


def write_plots(
    out_dir: Path,
    report: dict,
    truth: list[str],
    probs: np.ndarray,
    classes: list[str],
    analyses: list[DialectAnalysis],
    thresholds: dict[str, float],
) -> dict:
    """The report's PNGs; returns {plot: file name}."""
    import matplotlib

    matplotlib.use("Agg")

    files = {
        "confusion": _confusion_plot(out_dir, report["confusion"]),
        "calibration": _calibration_plot(out_dir, report["calibration"]),
        "gate": _gate_plot(out_dir, report["gate"], np.array(truth), probs, classes, thresholds),
    }
    dialects = [v for v in report["drift"] if report["drift"][v].get("n")]
    if dialects:
        files["drift"] = _drift_plot(
            out_dir, {v: [a.msa_share for a, t in zip(analyses, truth, strict=False) if t == v] for v in dialects}
        )
    return files


def _confusion_plot(out_dir: Path, confusion: dict) -> str:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.6, 4))
    matrix = np.array(confusion["matrix"])
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(confusion["labels"])), confusion["labels"])
    ax.set_yticks(range(len(matrix)), confusion["labels"][: len(matrix)])
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(j, i, str(value), ha="center", va="center", color="white" if value > matrix.max() / 2 else "black")
    ax.set(xlabel="predicted", ylabel="true variety", title="story-level confusion")
    return _save(fig, out_dir / "confusion_matrix.png")


def _calibration_plot(out_dir: Path, calibration_report: dict) -> str:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.6, 4))
    ax.plot([0, 1], [0, 1], ls=":", color="grey")
    for c, curve in calibration_report["per_class"].items():
        ax.plot(curve["mean_predicted"], curve["fraction_positive"], marker="o", label=c)
    ax.set(
        xlabel="predicted probability",
        ylabel="observed frequency",
        title=f"calibration (ECE {calibration_report['ece']:.3f})",
    )
    ax.legend()
    return _save(fig, out_dir / "calibration.png")


def _gate_plot(out_dir: Path, gate: dict, truth: np.ndarray, probs, classes, thresholds) -> str:
    """False rejects and false accepts against the threshold, one panel per target variety."""
    import matplotlib.pyplot as plt

    grid = np.linspace(0, 1, 101)
    targets = [v for v in classes if v in gate["false_reject"]] or classes[:1]
    fig, axes = plt.subplots(1, len(targets), figsize=(4 * len(targets), 3.4), squeeze=False)
    for ax, target in zip(axes[0], targets, strict=False):
        p = probs[:, classes.index(target)]
        impostors = (truth == "msa") if target != "msa" else (truth != "msa")
        ax.plot(
            grid,
            [(p[truth == target] < t).mean() if (truth == target).any() else 0 for t in grid],
            label="false reject",
        )
        if impostors.any():
            ax.plot(grid, [(p[impostors] >= t).mean() for t in grid], label="false accept")
        ax.axvline(thresholds[target], color="grey", ls="--", label=f"threshold {thresholds[target]:.2f}")
        ax.set(title=f"offered as {target}", xlabel=f"threshold on P({target})")
        ax.legend(fontsize=7)
    return _save(fig, out_dir / "gate_tradeoff.png")


def _drift_plot(out_dir: Path, shares: dict[str, list[float]]) -> str:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.4))
    for variety, values in shares.items():
        ax.hist(values, bins=HISTOGRAM_BINS, range=(0, 1), alpha=0.6, label=variety)
    ax.set(xlabel="share of MSA sentences in the story", ylabel="stories", title="dialect drift")
    ax.legend()
    return _save(fig, out_dir / "drift.png")


def _save(fig, path: Path) -> str:
    import matplotlib.pyplot as plt

    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)
    tmp.replace(path)
    return path.name

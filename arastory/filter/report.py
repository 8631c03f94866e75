"""The filter's report: counts at every step, score statistics, plots (PNG) and, when asked, a W&B run."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from arastory.filter.pipeline import Filter


def build_report(flt: Filter, decided: dict, scores: np.ndarray, codes: np.ndarray, labels: dict) -> dict:
    report = {
        "input": str(flt.path),
        "out": str(flt.out),
        "data_fingerprint": flt.data_fingerprint,
        "encoder": {"name": flt.encoder_name, "id": flt.encoder_id},
        "threshold": flt.settings.threshold,
        "counts": decided["counts"],
        "dedup_index": decided["index"],
        "dedup_recall": decided["recall"],  # IVF only: sampled against an exact search (None for flat)
        "eval_items": len(flt.eval_records),
        "cache": flt.cache_report,
        "similarity": _stats(scores),
        "kept_vs_threshold": decided["curve"],
        "input_error_examples": flt.error_examples,
        "seconds": flt.seconds,
    }
    if "flawed" in labels:
        report["labels"] = {
            name: {
                "n": g["n"],
                "kept": g["kept"],
                "rejected": g["n"] - g["kept"],
                "mean_similarity": round(g["score_sum"] / g["n"], 4),
                "by_reason": g["by_reason"],
            }
            for name, g in labels.items()
        }
    return report


def _stats(values: np.ndarray) -> dict:
    if len(values) == 0:
        return {}
    q = np.percentile(values, [10, 50, 90])
    return {
        "mean": round(float(values.mean()), 4),
        "p10": round(float(q[0]), 4),
        "p50": round(float(q[1]), 4),
        "p90": round(float(q[2]), 4),
    }


def write_plots(out: Path, passed_scores: np.ndarray, curve: list, threshold: float) -> dict:
    """similarity_hist.png (pairs that passed the checks, threshold marked) and kept_vs_threshold.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = {"histogram": out / "similarity_hist.png", "kept_vs_threshold": out / "kept_vs_threshold.png"}
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist(passed_scores, bins=50, range=(0, 1), color="#4c72b0")
    ax.axvline(threshold, color="#c44e52", linestyle="--", label=f"threshold {threshold}")
    ax.set(xlabel="similarity", ylabel="pairs", title="Similarity of pairs that passed the checks")
    ax.legend()
    _save(fig, paths["histogram"])
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ts, kept = zip(*curve, strict=False)
    ax.plot(ts, kept, color="#4c72b0")
    ax.axvline(threshold, color="#c44e52", linestyle="--", label=f"threshold {threshold}")
    ax.set(xlabel="threshold", ylabel="pairs kept (before dedup)", title="Kept pairs vs threshold")
    ax.legend()
    _save(fig, paths["kept_vs_threshold"])
    return {k: p.name for k, p in paths.items()}


def _save(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.subplots_adjust(left=0.12, right=0.97, bottom=0.15, top=0.9)  # fixed margins: tight_layout costs ~0.1 s a plot
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)


def log_to_wandb(out: Path, report: dict, wandb_cfg: dict) -> str:
    """One W&B run (job_type filter; offline unless asked) with the counts, the curve and the plots."""
    import wandb

    run = wandb.init(
        project=wandb_cfg.get("project", "arastory"),
        entity=wandb_cfg.get("entity"),
        mode=wandb_cfg.get("mode", "offline"),
        dir=str(out),
        job_type="filter",
        name=wandb_cfg.get("name") or f"filter-{report['threshold']}",
        config={"threshold": report["threshold"], "encoder": report["encoder"], "input": report["input"]},
    )
    run.log(wandb_payload(out, report))
    run.finish()
    return run.id


def wandb_payload(out: Path, report: dict) -> dict:
    """The counts, the kept-vs-threshold curve and the plots, as one W&B log call (also used inside training runs)."""
    import wandb

    flat: dict[str, Any] = {f"filter/{k}": v for k, v in report["counts"].items() if isinstance(v, (int, float))}
    flat.update({f"filter/rejected/{k}": v for k, v in report["counts"]["rejected_by_check"].items()})
    table = wandb.Table(data=report["kept_vs_threshold"], columns=["threshold", "kept"])
    flat["filter/kept_vs_threshold"] = wandb.plot.line(table, "threshold", "kept", title="Kept pairs vs threshold")
    for name, file in report.get("plots", {}).items():
        flat[f"filter/{name}"] = wandb.Image(str(Path(out) / file))
    return flat

"""Human evaluation: export blind rating sheets (CSV + right-to-left HTML, one shuffled order per rater), import filled
sheets, judge-human and rater-rater agreement with CIs (kappa, Spearman, Krippendorff's alpha).

Systems are rated on the same prompts only when the prompts are identical (prompt_key: variety + text), not when
their ids match."""

from __future__ import annotations

import csv
import functools
import io
import itertools
import json
import math
import random
import re
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Any, Literal

import numpy as np

from arastory.errors import ConfigError, DataError
from arastory.evaluate.criteria import CRITERION_INFO
from arastory.evaluate.prompts import prompt_key
from arastory.evaluate.stats import (
    bootstrap_ci,
    cohen_kappa,
    holm_adjust,
    krippendorff_alpha,
    paired_comparison,
    percentile_ci,
    spearman,
)
from arastory.io import (
    atomic_write_json,
    atomic_write_jsonl,
    atomic_write_text,
    fingerprint,
    iter_csv_records,
    iter_jsonl,
)
from arastory.tables import markdown_table

# The judge's five criteria with the names and questions raters see (arastory/evaluate/criteria.py).
CRITERIA: dict[str, dict] = CRITERION_INFO
VARIETY_NAMES = {
    "msa": ("العربية الفصحى", "Modern Standard Arabic"),
    "egy": ("اللهجة المصرية", "Egyptian Arabic"),
    "mor": ("الدارجة المغربية", "Moroccan Arabic"),
}
SHEET_COLUMNS = ["item_id", "required_variety", "prompt", "story", *CRITERIA, "comment", "rater"]
BOM = "\ufeff"  # so spreadsheet programs open the UTF-8 Arabic text correctly
SCORE = re.compile(r"^[1-5]$")


# ---- export ------------------------------------------------------------------------------------------------------


def _read_generations(eval_dir: Path) -> tuple[str, dict[str, dict]]:
    """(system name, {prompt id: generation row}) of one eval dir."""
    path = eval_dir / "generations.jsonl"
    rows: dict[str, dict] = {}
    system = None
    for lineno, row in iter_jsonl(path):
        for key in ("id", "variety", "prompt", "story"):
            if not isinstance(row.get(key), str):
                raise DataError(path, f"'{key}' missing or not a string", lineno)
        system = system or row.get("system")
        rows[row["id"]] = {**row, "prompt_key": prompt_key(row["variety"], row["prompt"])}
    if not rows:
        raise DataError(path, "no generations")
    if not system and (eval_dir / "scores.json").exists():
        system = json.loads((eval_dir / "scores.json").read_text(encoding="utf-8")).get("system")
    return str(system or eval_dir.name), rows


def _balanced_sample(ids: list[str], varieties: dict[str, str], k: int | None, rng: random.Random) -> list[str]:
    """k ids, spread evenly over varieties (round-robin over seeded shuffles); all ids when k is None."""
    by_variety: dict[str, list[str]] = defaultdict(list)
    for pid in sorted(ids):
        by_variety[varieties[pid]].append(pid)
    for group in by_variety.values():
        rng.shuffle(group)
    interleaved = [
        pid
        for group in itertools.zip_longest(*[by_variety[v] for v in sorted(by_variety)])
        for pid in group
        if pid is not None
    ]
    return interleaved if k is None else interleaved[:k]


def export_sheet(
    eval_dirs: list[str], out_dir: str | Path, per_system: int | None = None, seed: int = 0, raters: int = 1
) -> dict:
    """Write blind rating sheets of stories from several eval dirs and key.json (for you only).

    When the systems answered identical prompts, every system is rated on the same prompts (so human scores pair up).
    Items are named item-001, item-002, ... in a seeded shuffle, so nothing in a sheet tells the systems apart; with
    `raters` > 1 each rater gets sheet-<k>.csv / sheet-<k>.html with the same items in their own shuffled order (one
    order for everybody would tie order effects to items).
    """
    if not eval_dirs:
        raise ConfigError("human.export", "give at least one eval dir")
    if per_system is not None and int(per_system) < 1:
        raise ConfigError("human.per_system", f"must be a positive number of stories, got {per_system}")
    if int(raters) < 1:
        raise ConfigError("human.raters", f"must be a positive number of raters, got {raters}")
    systems: list[dict[str, Any]] = []
    for index, raw in enumerate(eval_dirs):
        name, rows = _read_generations(Path(raw))
        by_key: dict[str, dict] = {}
        for row in rows.values():
            by_key.setdefault(row["prompt_key"], row)  # one story per prompt text
        systems.append({"eval_index": index, "eval_dir": str(raw), "system": name, "rows": by_key})
    _disambiguate(systems)
    rng = random.Random(seed)
    shared = set.intersection(*[set(s["rows"]) for s in systems])
    chosen_shared = (
        _balanced_sample(list(shared), {key: systems[0]["rows"][key]["variety"] for key in shared}, per_system, rng)
        if shared
        else None
    )
    items = []
    for system in systems:
        rows = system["rows"]
        chosen = (
            chosen_shared
            if chosen_shared is not None
            else _balanced_sample(list(rows), {key: r["variety"] for key, r in rows.items()}, per_system, rng)
        )
        items += [(system, rows[key]) for key in chosen]
    rng.shuffle(items)
    width = max(3, len(str(len(items))))
    sheet, key = [], {}
    for number, (system, row) in enumerate(items, start=1):
        item_id = f"item-{number:0{width}d}"
        sheet.append(
            {
                "item_id": item_id,
                "required_variety": row["variety"],
                "prompt": row["prompt"],
                "story": row["story"],
                **dict.fromkeys(CRITERIA, ""),
                "comment": "",
                "rater": "",
            }
        )
        key[item_id] = {
            "system": system["system"],
            "prompt_id": row["id"],
            "prompt_key": row["prompt_key"],
            "variety": row["variety"],
            "eval_index": system["eval_index"],
        }
    out = Path(out_dir)
    names = ["sheet"] if int(raters) == 1 else [f"sheet-{k}" for k in range(1, int(raters) + 1)]
    orders, written = {}, []
    for number, name in enumerate(names, start=1):
        order = list(sheet) if number == 1 else random.Random(f"{seed}:rater:{number}").sample(sheet, len(sheet))
        sheet_id = fingerprint(sorted(key.items()), seed, [r["item_id"] for r in order])
        atomic_write_text(out / f"{name}.csv", sheet_csv(order))
        atomic_write_text(out / f"{name}.html", sheet_html(order, sheet_id))
        orders[name] = {"sheet_id": sheet_id, "order": [r["item_id"] for r in order]}
        written.append(out / f"{name}.html")
    atomic_write_json(
        out / "key.json",
        {
            "sheet_id": orders[names[0]]["sheet_id"],
            "seed": seed,
            "criteria": list(CRITERIA),
            "eval_dirs": [s["eval_dir"] for s in systems],
            "systems": [s["system"] for s in systems],
            "sheets": orders,
            "shared_prompts": chosen_shared is not None,
            "items": key,
        },
    )
    return {
        "items": len(sheet),
        "systems": [s["system"] for s in systems],
        "shared_prompts": chosen_shared is not None,
        "sheet_csv": str(out / f"{names[0]}.csv"),
        "sheet_html": str(out / f"{names[0]}.html"),
        "sheets_html": [str(p) for p in written],
        "sheets_csv": [str(p.with_suffix(".csv")) for p in written],
        "key": str(out / "key.json"),
    }


def _disambiguate(systems: list[dict]) -> None:
    """Two eval dirs of the same system name (e.g. two runs) get the dir name appended in the key."""
    counts: dict[str, int] = defaultdict(int)
    for system in systems:
        counts[system["system"]] += 1
    for system in systems:
        if counts[system["system"]] > 1:
            system["system"] = f"{system['system']}@{Path(system['eval_dir']).name}#{system['eval_index']}"


def sheet_csv(rows: list[dict]) -> str:
    """The sheet as CSV, exactly as the HTML page's download button writes it (BOM, CRLF, minimal quoting)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=SHEET_COLUMNS, lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(rows)
    return BOM + buffer.getvalue()


def sheet_html(rows: list[dict], sheet_id: str) -> str:
    """A self-contained right-to-left page (templates/rating_page.html.j2, its CSS and JS inlined): one card per story,
    1-5 radio buttons per criterion, CSV download."""
    from markupsafe import Markup

    data = {
        "sheet": sheet_id,
        "columns": SHEET_COLUMNS,
        "criteria": list(CRITERIA),
        "items": [{k: r[k] for k in ("item_id", "required_variety", "prompt", "story")} for r in rows],
    }
    # "</" would close the <script> element early; JSON allows the escaped form.
    payload = json.dumps(data, ensure_ascii=False).replace("</", "<\\/")
    page = _templates()
    return page.get_template("rating_page.html.j2").render(
        items=rows,
        criteria=CRITERIA,
        varieties=VARIETY_NAMES,
        payload=Markup(payload),
        style=Markup(_asset(page, "rating_page.css")),
        script=Markup(_asset(page, "rating_page.js")),
    )


@functools.cache
def _templates():
    """The Jinja2 environment over arastory/evaluate/templates (package data); HTML-escapes every value."""
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("arastory.evaluate", "templates"),
        autoescape=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )


def _asset(environment, name: str) -> str:
    """A template dir file inlined as-is (not rendered: CSS and JS braces are not template syntax)."""
    return environment.loader.get_source(environment, name)[0]


# ---- import ------------------------------------------------------------------------------------------------------


def read_key(key_file: str | Path) -> dict:
    path = Path(key_file)
    try:
        key = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(path, "key file not found (the key.json written by human.export)") from None
    except json.JSONDecodeError as exc:
        raise DataError(path, f"invalid JSON ({exc.msg})", exc.lineno) from None
    if not isinstance(key, dict) or not isinstance(key.get("items"), dict):
        raise DataError(path, "not a key.json written by human.export (no 'items')")
    return key


def read_sheet(path: str | Path, items: dict) -> tuple[str | None, dict[str, dict[str, int]]]:
    """(rater name from the sheet or None, {item id: {criterion: score}}) from one filled sheet.csv."""
    path = Path(path)
    records = iter_csv_records(path)
    _, header = next(records, (1, None))
    if header is None:
        raise DataError(path, "empty file")
    header = [h.strip() for h in _sheet_values(header)]
    missing = [c for c in ("item_id", *CRITERIA) if c not in header]
    if missing:
        raise DataError(path, f"missing column(s): {', '.join(missing)} (expected the header of sheet.csv)", 1)
    column = {name: header.index(name) for name in header}
    scores: dict[str, dict[str, int]] = {}
    raters = set()
    for start, values in records:
        fields = _sheet_values(values)
        if not any(f.strip() for f in fields):
            continue
        if len(fields) > len(header):
            raise DataError(path, f"{len(fields)} fields, the header has {len(header)}", start)
        fields += [""] * (len(header) - len(fields))  # some programs drop trailing empty cells
        item_id = fields[column["item_id"]].strip()
        if item_id not in items:
            raise DataError(path, f"item_id '{item_id}' is not in the key (a sheet from another export?)", start)
        if item_id in scores:
            raise DataError(path, f"item_id '{item_id}' appears twice", start)
        scores[item_id] = _row_scores(path, fields, column, start)
        if "rater" in column and fields[column["rater"]].strip():
            raters.add(fields[column["rater"]].strip())
    if not any(scores.values()):
        raise DataError(path, "no scores filled in")
    if len(raters) > 1:
        raise DataError(path, f"several rater names in one sheet: {', '.join(sorted(raters))} (one sheet per rater)")
    return (raters.pop() if raters else None), scores


def _sheet_values(values: list[str] | DataError) -> list[str]:
    """A record's values; a line that is not UTF-8 (or too long) stops the import, naming its line: a rater's scores
    are not guessed at."""
    if isinstance(values, DataError):
        raise values
    return values


def _row_scores(path: Path, fields: list[str], column: dict[str, int], line: int) -> dict[str, int]:
    scores = {}
    for criterion in CRITERIA:
        value = fields[column[criterion]].strip()
        if value == "":
            continue
        if not SCORE.match(value):
            raise DataError(path, f"{criterion}: '{value}' is not a score from 1 to 5", line)
        scores[criterion] = int(value)
    return scores


def _judge_scores(eval_dirs: list[str]) -> list[dict[str, dict[str, float]]]:
    """Per eval dir: {prompt id: {criterion: judge score}} from judgments.jsonl."""
    out = []
    for eval_dir in eval_dirs:
        path = Path(eval_dir) / "judgments.jsonl"
        per_prompt: dict[str, dict[str, float]] = {}
        for lineno, row in iter_jsonl(path):
            prompt_id = row.get("prompt_id") or row.get("id")
            if prompt_id is None:
                raise DataError(path, "no prompt_id", lineno)
            criteria = row.get("criteria") or {}
            per_prompt[prompt_id] = {
                c: float(v) for c, v in criteria.items() if c in CRITERIA and isinstance(v, (int, float))
            }
        out.append(per_prompt)
    return out


def _half_up(value: float) -> int:
    """Round a mean score to the 1-5 scale, .5 upwards (numpy's round-half-even would send 2.5 down, 3.5 up)."""
    return math.floor(value + 0.5)


def agreement(x: list[float], y: list[float]) -> dict:
    """Spearman's rho (scipy) and Cohen's kappa, unweighted and quadratic-weighted (sklearn), on the 1-5 scale."""
    from scipy.stats import spearmanr
    from sklearn.metrics import cohen_kappa_score

    out: dict[str, Any] = {"n": len(x), "spearman": None, "spearman_p": None, "kappa": None, "kappa_quadratic": None}
    if len(x) < 2:
        return out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant input: undefined, reported as None
        rho = spearmanr(x, y)
        a, b = [_half_up(v) for v in x], [_half_up(v) for v in y]
        kappa = cohen_kappa_score(a, b, labels=[1, 2, 3, 4, 5])
        weighted = cohen_kappa_score(a, b, labels=[1, 2, 3, 4, 5], weights="quadratic")
    out.update(
        spearman=_finite(rho.statistic),
        spearman_p=_finite(rho.pvalue),
        kappa=_finite(kappa),
        kappa_quadratic=_finite(weighted),
        **agreement_cis(x, y),
    )
    return out


def agreement_cis(x: list[float], y: list[float], n_boot: int = 1000, seed: int = 0) -> dict:
    """95% percentile bootstrap CIs over items of Spearman's rho and both kappas (none below 10 items)."""
    xs, ys = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    a, b = np.array([_half_up(v) for v in x]), np.array([_half_up(v) for v in y])
    statistics = {
        "spearman_ci": lambda i: spearman(xs[i], ys[i]),
        "kappa_ci": lambda i: cohen_kappa(a[i], b[i]),
        "kappa_quadratic_ci": lambda i: cohen_kappa(a[i], b[i], weights="quadratic"),
    }
    return {
        name: _interval(percentile_ci(statistic, len(x), n_boot=n_boot, seed=seed))
        for name, statistic in statistics.items()
    }


def _interval(bounds: tuple[float | None, float | None]) -> list[float] | None:
    low, high = bounds
    return None if low is None or high is None else [round(low, 6), round(high, 6)]


def rater_alpha(
    raters: dict[str, dict[str, dict[str, int]]], criterion: str, n_boot: int = 1000, seed: int = 0
) -> dict:
    """Krippendorff's alpha over all raters (ordinal and interval, 1-5) on one criterion, with a 95% percentile
    bootstrap CI over items; items rated by fewer than two raters do not count."""
    items = sorted({i for scores in raters.values() for i, s in scores.items() if criterion in s})
    matrix = np.array(
        [[scores.get(i, {}).get(criterion, np.nan) for i in items] for scores in raters.values()], dtype=float
    )
    matrix = matrix[:, np.sum(np.isfinite(matrix), axis=0) >= 2] if len(items) else matrix
    n = matrix.shape[1] if matrix.ndim == 2 else 0
    out: dict[str, Any] = {"raters": len(raters), "n_items": int(n)}
    levels: tuple[Literal["ordinal", "interval"], ...] = ("ordinal", "interval")
    for level in levels:
        out.update(_alpha(matrix, level, n_boot, seed) if n else {f"alpha_{level}": None, f"alpha_{level}_ci": None})
    return out


def _alpha(matrix: np.ndarray, level: Literal["ordinal", "interval"], n_boot: int, seed: int) -> dict:
    """Krippendorff's alpha at one level of measurement, with its bootstrap CI over the matrix's columns (items)."""
    bounds = percentile_ci(lambda i: krippendorff_alpha(matrix[:, i], level), matrix.shape[1], n_boot=n_boot, seed=seed)
    return {f"alpha_{level}": _finite(krippendorff_alpha(matrix, level)), f"alpha_{level}_ci": _interval(bounds)}


def _finite(value) -> float | None:
    value = float(value)
    return None if math.isnan(value) else round(value, 6)


def import_sheets(
    sheet_files: list[str], key_file: str | Path, eval_dirs: list[str] | None, out_dir: str | Path
) -> dict:
    """Unblind filled sheets with key.json and measure judge-human agreement per criterion (and rater-rater).

    Human score of an item = mean over the raters who scored it; kappa compares it rounded half up to 1-5.
    Writes agreement.json, agreement.md and human_scores.jsonl (one unblinded row per rated item).
    """
    if not sheet_files:
        raise ConfigError("human.ratings", "give at least one filled sheet")
    key = read_key(key_file)
    items = key["items"]
    eval_dirs = list(eval_dirs or key.get("eval_dirs") or [])
    if len(eval_dirs) != len(key.get("eval_dirs", [])):
        raise ConfigError(
            "human.evals",
            f"the key was exported from {len(key.get('eval_dirs', []))} eval dirs "
            f"({', '.join(key.get('eval_dirs', []))}); got {len(eval_dirs)}",
        )
    judged = _judge_scores(eval_dirs)
    raters: dict[str, dict[str, dict[str, int]]] = {}
    for sheet in sheet_files:
        name, scores = read_sheet(sheet, items)
        name = name or Path(sheet).stem
        if name in raters:
            name = f"{name} ({Path(sheet).name})"
        raters[name] = scores
    rows = _item_rows(items, raters, judged)
    result: dict[str, Any] = {
        "key": str(key_file),
        "sheets": [str(s) for s in sheet_files],
        "raters": list(raters),
        "n_items": len(rows),
        "criteria": {},
        "rater_agreement": {},
        "rater_alpha": {},
        "systems": {},
    }
    for criterion in CRITERIA:
        pairs = [
            (r["judge"][criterion], r["human"][criterion])
            for r in rows
            if criterion in r["judge"] and criterion in r["human"]
        ]
        stats = agreement([p[0] for p in pairs], [p[1] for p in pairs])
        stats["judge_mean"] = _mean([p[0] for p in pairs])
        stats["human_mean"] = _mean([p[1] for p in pairs])
        result["criteria"][criterion] = stats
        if len(raters) > 1:
            result["rater_agreement"][criterion] = _rater_pairs(raters, criterion)
            result["rater_alpha"][criterion] = rater_alpha(raters, criterion)
    for system in key.get("systems") or sorted({i["system"] for i in items.values()}):
        mine = [r for r in rows if r["system"] == system]
        result["systems"][system] = {
            c: {
                "human": bootstrap_ci([r["human"].get(c) for r in mine]),
                "judge": bootstrap_ci([r["judge"].get(c) for r in mine if c in r["human"]]),
            }
            for c in CRITERIA
        }
    result["paired"] = _human_pairs(rows, list(result["systems"]))
    out = Path(out_dir)
    atomic_write_jsonl(out / "human_scores.jsonl", rows)
    atomic_write_json(out / "agreement.json", result)
    atomic_write_text(out / "agreement.md", agreement_markdown(result))
    return result


def _item_rows(items: dict, raters: dict, judged: list[dict]) -> list[dict]:
    rows = []
    for item_id in sorted(items):
        per_rater = {name: scores[item_id] for name, scores in raters.items() if scores.get(item_id)}
        if not per_rater:
            continue
        human = {c: _mean([s[c] for s in per_rater.values() if c in s]) for c in CRITERIA}
        info = items[item_id]
        rows.append(
            {
                "item_id": item_id,
                "system": info["system"],
                "prompt_id": info["prompt_id"],
                "prompt_key": info.get("prompt_key"),
                "variety": info.get("variety"),
                "human": {c: v for c, v in human.items() if v is not None},
                "raters": per_rater,
                "judge": judged[info["eval_index"]].get(info["prompt_id"], {}),
            }
        )
    return rows


def _human_pairs(rows: list[dict], systems: list[str]) -> list[dict]:
    """Per pair of systems and criterion, a paired comparison of human scores on the identical prompts (prompt_key)
    both were rated on; Holm-adjusted p-values over all of them. A key without prompt keys pairs nothing."""
    out = []
    for a, b in itertools.combinations(systems, 2):
        for criterion in CRITERIA:
            sa = {
                r["prompt_key"]: r["human"][criterion]
                for r in rows
                if r["system"] == a and criterion in r["human"] and r.get("prompt_key")
            }
            sb = {
                r["prompt_key"]: r["human"][criterion]
                for r in rows
                if r["system"] == b and criterion in r["human"] and r.get("prompt_key")
            }
            if set(sa) & set(sb):
                out.append({"a": a, "b": b, "criterion": criterion, **paired_comparison(sa, sb)})
    for row, adjusted in zip(out, holm_adjust([r["p_value"] for r in out]), strict=True):
        row["p_holm"] = adjusted
    return out


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _rater_pairs(raters: dict, criterion: str) -> list[dict]:
    out = []
    for (a, sa), (b, sb) in itertools.combinations(raters.items(), 2):
        shared = sorted(i for i in set(sa) & set(sb) if criterion in sa[i] and criterion in sb[i])
        scores_a, scores_b = [sa[i][criterion] for i in shared], [sb[i][criterion] for i in shared]
        out.append({"raters": [a, b], **agreement(scores_a, scores_b)})
    return out


def agreement_markdown(result: dict) -> str:
    lines = [
        "# Judge-human agreement",
        "",
        f"{result['n_items']} rated items, raters: {', '.join(result['raters'])}. Human score = mean over raters; "
        "kappa compares it rounded half up to 1-5 with the judge's score. Brackets: 95% bootstrap CIs over items "
        "(none below 10 items).",
        "",
        markdown_table(
            ["criterion", "n", "Spearman rho", "p", "kappa", "kappa (quadratic)", "judge mean", "human mean"],
            [
                [
                    criterion,
                    s["n"],
                    _ci(s["spearman"], s.get("spearman_ci")),
                    _fmt(s["spearman_p"]),
                    _ci(s["kappa"], s.get("kappa_ci")),
                    _ci(s["kappa_quadratic"], s.get("kappa_quadratic_ci")),
                    _fmt(s["judge_mean"]),
                    _fmt(s["human_mean"]),
                ]
                for criterion, s in result["criteria"].items()
            ],
        ),
    ]
    if result.get("rater_alpha"):
        lines += [
            "",
            "## All raters: Krippendorff's alpha",
            "",
            markdown_table(
                ["criterion", "raters", "items", "alpha (ordinal)", "alpha (interval)"],
                [
                    [
                        criterion,
                        a["raters"],
                        a["n_items"],
                        _ci(a["alpha_ordinal"], a["alpha_ordinal_ci"]),
                        _ci(a["alpha_interval"], a["alpha_interval_ci"]),
                    ]
                    for criterion, a in result["rater_alpha"].items()
                ],
            ),
        ]
    if result["rater_agreement"]:
        lines += [
            "",
            "## Rater against rater",
            "",
            markdown_table(
                ["criterion", "raters", "n", "Spearman rho", "kappa", "kappa (quadratic)"],
                [
                    [
                        criterion,
                        " / ".join(p["raters"]),
                        p["n"],
                        _ci(p["spearman"], p.get("spearman_ci")),
                        _ci(p["kappa"], p.get("kappa_ci")),
                        _ci(p["kappa_quadratic"], p.get("kappa_quadratic_ci")),
                    ]
                    for criterion, pairs in result["rater_agreement"].items()
                    for p in pairs
                ],
            ),
        ]
    lines += [
        "",
        "## Scores per system (mean [95% CI], on the rated items)",
        "",
        markdown_table(
            ["system", "criterion", "human", "judge"],
            [
                [system, criterion, _score_cell(s["human"]), _score_cell(s["judge"])]
                for system, per_criterion in result["systems"].items()
                for criterion, s in per_criterion.items()
            ],
        ),
    ]
    if result.get("paired"):
        lines += [
            "",
            "## Human scores, system against system (identical prompts)",
            "",
            markdown_table(
                ["A", "B", "criterion", "n pairs", "A - B [95% CI]", "win/tie/loss", "p", "p (Holm)"],
                [
                    [
                        p["a"],
                        p["b"],
                        p["criterion"],
                        p["n_pairs"],
                        _diff(p),
                        f"{p['win_rate']:.2f}/{p['tie_rate']:.2f}/{p['loss_rate']:.2f}",
                        f"{p['p_value']:.3f}",
                        f"{p['p_holm']:.3f}",
                    ]
                    for p in result["paired"]
                ],
            ),
        ]
    return "\n".join(lines) + "\n"


def _fmt(value) -> str:
    return "–" if value is None else (f"{value:.3f}" if isinstance(value, float) else str(value))


def _ci(value, interval) -> str:
    return _fmt(value) + (f" [{interval[0]:.2f}, {interval[1]:.2f}]" if interval else "")


def _diff(p: dict) -> str:
    no_ci = p["ci_low"] is None
    return f"{p['mean_diff']:+.2f}" + (" (no CI)" if no_ci else f" [{p['ci_low']:+.2f}, {p['ci_high']:+.2f}]")


def _score_cell(s: dict) -> str:
    if s["mean"] is None:
        return "–"
    if s["ci_low"] is None:
        return f"{s['mean']:.2f} (n={s['n']}, no CI)"
    return f"{s['mean']:.2f} [{s['ci_low']:.2f}, {s['ci_high']:.2f}] (n={s['n']})"

"""Human evaluation round trip: blind export (CSV + RTL HTML), raters fill it in, import, judge-human agreement."""

import csv
import io
import json
import random
import re
import shutil
import subprocess

import pytest
from scipy.stats import spearmanr
from sklearn.metrics import cohen_kappa_score

from arastory.data.bundled import load_bundled_stories
from arastory.errors import DataError
from arastory.evaluate.human import CRITERIA, export_sheet, import_sheets, read_sheet
from arastory.io import atomic_write_jsonl
from tests.conftest import run_cli
from tests.markdown import table_rows

SYSTEMS = ["acegpt-7b-chat", "direct-run-egy"]


@pytest.fixture()
def evals(tmp_path):
    """Two eval dirs that generated for the same 24 prompts; the judge scored every story (seeded)."""
    records = load_bundled_stories()[::8]
    rng = random.Random(0)
    dirs, judged = [], {}
    for system in SYSTEMS:
        path = tmp_path / "evals" / system
        generations = [
            {
                "id": r.id,
                "system": system,
                "variety": r.variety,
                "prompt": r.prompt,
                "features": r.features,
                "story": r.story,
                "meta": {},
            }
            for r in records
        ]
        judgments = [
            {
                "id": f"{system}:{g['id']}",
                "system": system,
                "prompt_id": g["id"],
                "variety": g["variety"],
                "criteria": {c: rng.randint(1, 5) for c in CRITERIA},
                "raw": ["{}"],
                "judge": "j",
                "attempts": 1,
            }
            for g in generations
        ]
        atomic_write_jsonl(path / "generations.jsonl", generations)
        atomic_write_jsonl(path / "judgments.jsonl", judgments)
        judged[system] = {j["prompt_id"]: j["criteria"] for j in judgments}
        dirs.append(str(path))
    return dirs, judged


def fill(sheet_path, out_path, scorer, rater, newline="\r\n"):
    """What a rater does in a spreadsheet: fill the score columns and save (LF or CRLF, no BOM)."""
    with open(sheet_path, encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        for criterion in CRITERIA:
            value = scorer(row["item_id"], criterion)
            row[criterion] = "" if value is None else str(value)
        row["rater"] = rater
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator=newline)
    writer.writeheader()
    writer.writerows(rows)
    out_path.write_text(buffer.getvalue(), encoding="utf-8", newline="")
    return {row["item_id"]: {c: row[c] for c in CRITERIA} for row in rows}


def half_up(value):
    return int(value + 0.5)


def test_export_is_blind_shuffled_and_paired(evals, tmp_path):
    dirs, _ = evals
    result = export_sheet(dirs, tmp_path / "sheet", per_system=6, seed=1)
    assert result["items"] == 12 and result["shared_prompts"]
    key = json.loads((tmp_path / "sheet" / "key.json").read_text())
    items = key["items"]
    # both systems rated on the same 6 prompts, spread over the varieties
    by_system = {s: sorted(i["prompt_id"] for i in items.values() if i["system"] == s) for s in SYSTEMS}
    assert by_system[SYSTEMS[0]] == by_system[SYSTEMS[1]] and len(by_system[SYSTEMS[0]]) == 6
    assert {i["variety"] for i in items.values()} == {"msa", "egy", "mor"}
    order = [items[k]["system"] for k in sorted(items)]
    assert order != sorted(order) and order != sorted(order, reverse=True)  # shuffled, not grouped by system
    other = export_sheet(dirs, tmp_path / "sheet2", per_system=6, seed=2)
    assert json.loads((tmp_path / "sheet2" / "key.json").read_text())["items"] != items and other["items"] == 12
    for name in ("sheet.csv", "sheet.html"):
        text = (tmp_path / "sheet" / name).read_text(encoding="utf-8")
        assert not any(s in text for s in [*SYSTEMS, "acegpt", "direct-run"]), f"{name} names a system"
        assert not any(p in text for p in by_system[SYSTEMS[0]]), f"{name} shows prompt ids"
    with open(tmp_path / "sheet" / "sheet.csv", encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["item_id"] for r in rows] == sorted(items) and all(r[c] == "" for r in rows for c in CRITERIA)


def test_html_is_a_usable_rtl_form(evals, tmp_path):
    dirs, _ = evals
    export_sheet(dirs, tmp_path / "sheet", per_system=4, seed=0)
    page = (tmp_path / "sheet" / "sheet.html").read_text(encoding="utf-8")
    assert '<html lang="ar" dir="rtl">' in page and "Noto Naskh Arabic" in page
    assert page.count('<section class="card"') == 8
    radios = re.findall(r'<input type="radio" name="(item-\d+)__(\w+)" value="([1-5])">', page)
    assert len(radios) == 8 * len(CRITERIA) * 5 and {r[1] for r in radios} == set(CRITERIA)
    for names in CRITERIA.values():
        assert names["ar"] in page and names["en"] in page
    assert 'id="download"' in page and "new Blob(" in page
    assert not re.search(r"<(script|link)[^>]+(src|href)=", page), "the page must not load anything from outside"


def test_round_trip_agreement_matches_scipy_and_sklearn(evals, tmp_path):
    dirs, judged = evals
    export_sheet(dirs, tmp_path / "sheet", per_system=8, seed=3)
    key = json.loads((tmp_path / "sheet" / "key.json").read_text())["items"]
    rng = random.Random(7)

    def judge(item, criterion):
        return judged[key[item]["system"]][key[item]["prompt_id"]][criterion]

    def rater_near_judge(item, criterion):
        return min(5, max(1, judge(item, criterion) + rng.choice([-1, 0, 0, 1])))

    def rater_noisy(item, criterion):
        if item.endswith("1") and criterion == "fluency":
            return None  # a few cells left empty
        return rng.randint(1, 5)

    filled_a = fill(tmp_path / "sheet" / "sheet.csv", tmp_path / "amal.csv", rater_near_judge, "Amal")
    filled_b = fill(tmp_path / "sheet" / "sheet.csv", tmp_path / "b.csv", rater_noisy, "", newline="\n")
    result = import_sheets(
        [str(tmp_path / "amal.csv"), str(tmp_path / "b.csv")],
        tmp_path / "sheet" / "key.json",
        [],
        tmp_path / "agreement",
    )
    assert result["raters"] == ["Amal", "b"] and result["n_items"] == 16

    for criterion in CRITERIA:
        judge_scores, human = [], []
        for item in sorted(key):
            given = [int(f[item][criterion]) for f in (filled_a, filled_b) if f[item][criterion]]
            judge_scores.append(judge(item, criterion))
            human.append(sum(given) / len(given))
        got = result["criteria"][criterion]
        assert got["n"] == 16
        assert got["spearman"] == pytest.approx(spearmanr(judge_scores, human).statistic, abs=1e-6)
        rounded = [half_up(h) for h in human]
        assert got["kappa"] == pytest.approx(cohen_kappa_score(judge_scores, rounded, labels=[1, 2, 3, 4, 5]), abs=1e-6)
        assert got["kappa_quadratic"] == pytest.approx(
            cohen_kappa_score(judge_scores, rounded, labels=[1, 2, 3, 4, 5], weights="quadratic"), abs=1e-6
        )
        pair = result["rater_agreement"][criterion][0]
        shared = [i for i in sorted(key) if filled_a[i][criterion] and filled_b[i][criterion]]
        assert pair["n"] == len(shared) and pair["raters"] == ["Amal", "b"]
        a = [int(filled_a[i][criterion]) for i in shared]
        b = [int(filled_b[i][criterion]) for i in shared]
        assert pair["kappa_quadratic"] == pytest.approx(
            cohen_kappa_score(a, b, labels=[1, 2, 3, 4, 5], weights="quadratic"), abs=1e-6
        )
    # the rater who tracks the judge agrees with it more than the random one
    solo = import_sheets([str(tmp_path / "amal.csv")], tmp_path / "sheet" / "key.json", dirs, tmp_path / "solo")
    assert all(solo["criteria"][c]["spearman"] > 0.5 for c in CRITERIA) and solo["rater_agreement"] == {}
    assert set(result["systems"]) == set(SYSTEMS) and result["systems"][SYSTEMS[0]]["coherence"]["human"]["n"] == 8
    pair = next(p for p in result["paired"] if p["criterion"] == "consistency")
    humans = {}
    for item, info in key.items():
        given = [int(f[item]["consistency"]) for f in (filled_a, filled_b)]
        humans.setdefault(info["system"], {})[info["prompt_id"]] = sum(given) / len(given)
    assert pair["n_pairs"] == 8 and pair["mean_diff"] == pytest.approx(
        sum(humans[pair["a"]][k] - humans[pair["b"]][k] for k in humans[pair["a"]]) / 8
    )
    assert (
        result["criteria"]["fluency"]["kappa_ci"][0]
        <= result["criteria"]["fluency"]["kappa"]
        <= result["criteria"]["fluency"]["kappa_ci"][1]
    )
    assert all("p_holm" in p and p["p_holm"] >= p["p_value"] for p in result["paired"])
    saved = json.loads((tmp_path / "agreement" / "agreement.json").read_text())
    assert saved["criteria"] == result["criteria"]
    assert ["fluency", "16"] in [row[:2] for row in table_rows((tmp_path / "agreement" / "agreement.md").read_text())]
    unblinded = (tmp_path / "agreement" / "human_scores.jsonl").read_text().splitlines()
    assert len(unblinded) == 16 and json.loads(unblinded[0])["system"] in SYSTEMS


def test_malformed_sheets_name_file_and_line(evals, tmp_path):
    dirs, _ = evals
    export_sheet(dirs, tmp_path / "sheet", per_system=2, seed=0)
    items = json.loads((tmp_path / "sheet" / "key.json").read_text())["items"]
    with open(tmp_path / "sheet" / "sheet.csv", encoding="utf-8-sig", newline="") as handle:
        sheet = handle.read()
    header, rest = sheet.split("\r\n", 1)
    first_item = sorted(items)[0]
    with open(tmp_path / "sheet" / "sheet.csv", encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle))
    rows[1]["coherence"] = "7"
    bad = tmp_path / "bad.csv"
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    bad.write_text(buffer.getvalue(), encoding="utf-8")
    # the second record starts after the header and the first (multi-line) story
    second_start = 2 + rows[0]["story"].count("\n") + rows[0]["prompt"].count("\n") + 1
    with pytest.raises(DataError, match=rf"bad.csv:{second_start}: coherence: '7' is not a score from 1 to 5"):
        read_sheet(bad, items)
    (tmp_path / "cols.csv").write_text("item_id,fluency\nitem-001,3\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"cols.csv:1: missing column\(s\): coherence"):
        read_sheet(tmp_path / "cols.csv", items)
    (tmp_path / "other.csv").write_text(
        header.replace("\ufeff", "") + "\r\nitem-999,,,,3,3,3,3,3\r\n", encoding="utf-8"
    )
    with pytest.raises(DataError, match=r"other.csv:2: item_id 'item-999' is not in the key"):
        read_sheet(tmp_path / "other.csv", items)
    (tmp_path / "empty.csv").write_text(sheet, encoding="utf-8")
    with pytest.raises(DataError, match=r"empty.csv: no scores filled in"):
        read_sheet(tmp_path / "empty.csv", items)
    assert first_item in rest


def test_cli_import_error_is_one_line(evals, tmp_path):
    dirs, _ = evals
    export_sheet(dirs, tmp_path / "sheet", per_system=2, seed=0)
    (tmp_path / "r.csv").write_text("item_id,fluency\n", encoding="utf-8")
    proc = run_cli(
        [
            "evaluate.py",
            f"human.ratings=[{tmp_path / 'r.csv'}]",
            f"human.key={tmp_path / 'sheet' / 'key.json'}",
            f"out={tmp_path / 'agreement'}",
        ]
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "r.csv:1: missing column(s)" in proc.stderr


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed: cannot run the page's JavaScript")
def test_page_javascript_writes_the_csv_import_reads(evals, tmp_path):
    """The download button's code, run under Node: empty answers give sheet.csv byte for byte; filled ones import."""
    dirs, _judged = evals
    export_sheet(dirs, tmp_path / "sheet", per_system=3, seed=5)
    page = (tmp_path / "sheet" / "sheet.html").read_text(encoding="utf-8")
    script = re.search(r'<script id="sheet-logic">(.*?)</script>', page, re.S).group(1)
    payload = re.search(r'<script type="application/json" id="sheet-data">(.*?)</script>', page, re.S).group(1)
    data = json.loads(payload)
    answers = {
        item["item_id"]: {c: str(1 + (n + i) % 5) for i, c in enumerate(CRITERIA)}
        for n, item in enumerate(data["items"])
    }
    answers[data["items"][0]["item_id"]]["comment"] = 'قصة "جميلة"، لكن\nطويلة'
    runner = (
        script
        + """
const fs = require("fs");
const data = JSON.parse(fs.readFileSync(process.argv[1], "utf8"));
const answers = JSON.parse(process.argv[2]);
fs.writeFileSync(process.argv[3], toCsv(data.columns, sheetRows(data, {}, "")));
fs.writeFileSync(process.argv[4], toCsv(data.columns, sheetRows(data, answers, "سارة")));
"""
    )
    (tmp_path / "data.json").write_text(payload.replace("<\\/", "</"), encoding="utf-8")
    subprocess.run(
        [
            "node",
            "-e",
            runner,
            str(tmp_path / "data.json"),
            json.dumps(answers),
            str(tmp_path / "empty.csv"),
            str(tmp_path / "filled.csv"),
        ],
        check=True,
        timeout=60,
    )
    assert (tmp_path / "empty.csv").read_bytes() == (tmp_path / "sheet" / "sheet.csv").read_bytes()
    result = import_sheets([str(tmp_path / "filled.csv")], tmp_path / "sheet" / "key.json", dirs, tmp_path / "agr")
    assert result["raters"] == ["سارة"] and result["n_items"] == 6
    rows = [json.loads(line) for line in (tmp_path / "agr" / "human_scores.jsonl").read_text().splitlines()]
    for row in rows:
        assert row["raters"]["سارة"] == {c: int(v) for c, v in answers[row["item_id"]].items() if c in CRITERIA}


BROWSER = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
# Injected after the page's own script: a rater's clicks, and the download captured instead of saved.
RATER_CLICKS = """<script>
(function () {
  const captured = [];
  const RealBlob = window.Blob;
  window.Blob = function (parts, options) { captured.push(parts.join("")); return new RealBlob(parts, options); };
  window.confirm = () => true;
  HTMLAnchorElement.prototype.click = function () {
    const out = document.createElement("pre");
    out.id = "captured";
    out.textContent = JSON.stringify({file: this.download, csv: captured[captured.length - 1]});
    document.body.appendChild(out);
  };
  document.getElementById("rater").value = "هدى";
  document.querySelectorAll("section.card").forEach((card, n) => {
    card.querySelectorAll("fieldset").forEach((fieldset, i) => {
      fieldset.querySelector('input[value="' + (1 + (n + i) % 5) + '"]').checked = true;
    });
  });
  document.getElementById("sheet").dispatchEvent(new Event("change"));
  document.getElementById("download").click();
})();
</script>
</body>"""


@pytest.mark.skipif(BROWSER is None, reason="no headless Chromium installed: cannot click through the page")
def test_page_in_a_real_browser_downloads_an_importable_csv(evals, tmp_path):
    import html as html_lib

    dirs, _ = evals
    export_sheet(dirs, tmp_path / "sheet", per_system=2, seed=4)
    page = (tmp_path / "sheet" / "sheet.html").read_text(encoding="utf-8")
    harness = tmp_path / "sheet" / "clicked.html"
    harness.write_text(page.replace("</body>", RATER_CLICKS), encoding="utf-8")
    proc = subprocess.run(
        [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", harness.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    captured = re.search(r'<pre id="captured">(.*?)</pre>', proc.stdout, re.S)
    assert captured, proc.stderr[-2000:]
    download = json.loads(html_lib.unescape(captured.group(1)))
    assert download["file"] == "sheet-هدى.csv"
    assert (
        re.search(r'<b id="progress" dir="ltr">4 / 4</b>', proc.stdout) and proc.stdout.count('class="card done"') == 4
    )
    (tmp_path / "huda.csv").write_bytes(download["csv"].encode("utf-8"))
    result = import_sheets([str(tmp_path / "huda.csv")], tmp_path / "sheet" / "key.json", dirs, tmp_path / "agr")
    assert result["raters"] == ["هدى"] and result["n_items"] == 4
    rows = {
        json.loads(line)["item_id"]: json.loads(line)
        for line in (tmp_path / "agr" / "human_scores.jsonl").read_text().splitlines()
    }
    for n, item in enumerate(sorted(rows)):
        assert rows[item]["raters"]["هدى"] == {c: 1 + (n + i) % 5 for i, c in enumerate(CRITERIA)}


# ---- issue 10: pairing by content, one order per rater, Krippendorff's alpha -------------------------------------


def write_generations(path, system, prompts):
    """An eval dir with one story per (id, variety, prompt text)."""
    atomic_write_jsonl(
        path / "generations.jsonl",
        [
            {
                "id": pid,
                "system": system,
                "variety": "egy",
                "prompt": text,
                "features": {},
                "story": f"{system} {text}",
                "meta": {},
            }
            for pid, text in prompts
        ],
    )
    atomic_write_jsonl(
        path / "judgments.jsonl",
        [
            {
                "id": f"{system}/{pid}",
                "system": system,
                "prompt_id": pid,
                "variety": "egy",
                "criteria": dict.fromkeys(CRITERIA, 3),
            }
            for pid, _ in prompts
        ],
    )
    return str(path)


def test_export_pairs_systems_by_prompt_text_not_by_id(tmp_path):
    same_ids = [(f"eval-egy-{i:04d}", f"نص {i}") for i in range(6)]
    other_texts = [(f"eval-egy-{i:04d}", f"نص آخر {i}") for i in range(6)]  # another seed: same ids, other prompts
    renamed = [(f"other-{i}", f"نص {i}") for i in range(6)]  # other ids, the same prompts
    a = write_generations(tmp_path / "a", "sys-a", same_ids)
    result = export_sheet([a, write_generations(tmp_path / "b", "sys-b", other_texts)], tmp_path / "s1", per_system=3)
    assert not result["shared_prompts"]
    result = export_sheet([a, write_generations(tmp_path / "c", "sys-c", renamed)], tmp_path / "s2", per_system=3)
    items = json.loads((tmp_path / "s2" / "key.json").read_text())["items"]
    texts = {s: sorted(i["prompt_key"] for i in items.values() if i["system"] == s) for s in ("sys-a", "sys-c")}
    assert result["shared_prompts"] and texts["sys-a"] == texts["sys-c"] and len(texts["sys-a"]) == 3


def test_each_rater_gets_the_same_items_in_their_own_order_and_alpha_is_reported(evals, tmp_path):
    import krippendorff
    import numpy as np

    dirs, judged = evals
    result = export_sheet(dirs, tmp_path / "sheet", per_system=8, seed=3, raters=3)
    assert [p.split("/")[-1] for p in result["sheets_html"]] == ["sheet-1.html", "sheet-2.html", "sheet-3.html"]
    key = json.loads((tmp_path / "sheet" / "key.json").read_text())
    orders = [key["sheets"][f"sheet-{k}"]["order"] for k in (1, 2, 3)]
    assert all(sorted(o) == sorted(key["items"]) for o in orders) and len({tuple(o) for o in orders}) == 3
    for k, order in enumerate(orders, start=1):
        with open(tmp_path / "sheet" / f"sheet-{k}.csv", encoding="utf-8-sig", newline="") as handle:
            assert [row["item_id"] for row in csv.DictReader(handle)] == order
    items = key["items"]
    rng = random.Random(1)
    truth = {i: {c: judged[items[i]["system"]][items[i]["prompt_id"]][c] for c in CRITERIA} for i in items}
    sheets = []
    for k, name in enumerate(("Amal", "Omar", "Sara"), start=1):
        noisy = lambda item, c: min(5, max(1, truth[item][c] + rng.choice([-1, 0, 0, 1])))
        filled = fill(tmp_path / "sheet" / f"sheet-{k}.csv", tmp_path / f"{name}.csv", noisy, name)
        sheets.append(filled)
    agreement = import_sheets(
        [str(tmp_path / f"{n}.csv") for n in ("Amal", "Omar", "Sara")],
        tmp_path / "sheet" / "key.json",
        dirs,
        tmp_path / "agreement",
    )
    for criterion in CRITERIA:
        matrix = np.array([[float(f[i][criterion]) for i in sorted(items)] for f in sheets])
        alpha = agreement["rater_alpha"][criterion]
        assert alpha["raters"] == 3 and alpha["n_items"] == 16
        assert alpha["alpha_ordinal"] == pytest.approx(
            krippendorff.alpha(reliability_data=matrix, level_of_measurement="ordinal", value_domain=[1, 2, 3, 4, 5]),
            abs=1e-6,
        )
        assert alpha["alpha_ordinal_ci"][0] <= alpha["alpha_ordinal"] <= alpha["alpha_ordinal_ci"][1]
    assert "Krippendorff's alpha" in (tmp_path / "agreement" / "agreement.md").read_text()


# ---- issue 15: the page from template files, sheets read through the byte-safe CSV reader ------------------------


def test_the_page_is_its_template_with_the_css_and_js_files_inlined(evals, tmp_path):
    from importlib.resources import files

    dirs, _ = evals
    export_sheet(dirs, tmp_path / "sheet", per_system=1, seed=0)
    page = (tmp_path / "sheet" / "sheet.html").read_text(encoding="utf-8")
    assets = files("arastory.evaluate") / "templates"
    script = re.search(r'<script id="sheet-logic">\n(.*?)</script>', page, re.S).group(1)
    style = re.search(r"<style>\n(.*?)</style>", page, re.S).group(1)
    assert script == (assets / "rating_page.js").read_text(encoding="utf-8")
    assert style == (assets / "rating_page.css").read_text(encoding="utf-8")
    source = (files("arastory.evaluate") / "human.py").read_text(encoding="utf-8")
    assert "<section" not in source and "function " not in source and "font-family" not in source


def test_a_sheet_that_is_not_utf8_text_names_the_line_and_a_directory_is_one_line(evals, tmp_path):
    dirs, _ = evals
    export_sheet(dirs, tmp_path / "sheet", per_system=2, seed=0)
    items = json.loads((tmp_path / "sheet" / "key.json").read_text())["items"]
    filled = tmp_path / "filled.csv"
    fill(tmp_path / "sheet" / "sheet.csv", filled, lambda item, criterion: 3, "Mona", newline="\n")
    lines = filled.read_bytes().split(b"\n")
    last = len(lines) - 1  # the last physical line (holding the rater column); the error names that line
    lines[last - 1] = lines[last - 1].replace(b"Mona", b"Mon\xe9")  # saved as Latin-1 by a spreadsheet program
    (tmp_path / "latin1.csv").write_bytes(b"\n".join(lines))
    with pytest.raises(DataError, match=rf"latin1.csv:{last}: not valid UTF-8 \(byte 0xe9"):
        read_sheet(tmp_path / "latin1.csv", items)
    (tmp_path / "utf16.csv").write_bytes(filled.read_text(encoding="utf-8").encode("utf-16"))
    with pytest.raises(DataError, match=r"utf16.csv:1: is UTF-16 or UTF-32 encoded; save it as UTF-8"):
        read_sheet(tmp_path / "utf16.csv", items)
    (tmp_path / "folder.csv").mkdir()
    with pytest.raises(DataError, match=r"folder.csv: is a directory, not a file"):  # was an IsADirectoryError
        read_sheet(tmp_path / "folder.csv", items)

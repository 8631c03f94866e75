// The human rating page's logic (rating_page.html.j2): saves answers in the browser, downloads the filled sheet as CSV.
"use strict";
// Pure functions first (no page access): the test suite runs them under Node to check the CSV format.
function csvField(value) {
  const text = value === undefined || value === null ? "" : String(value);
  return /[",\r\n]/.test(text) ? '"' + text.replace(/"/g, '""') + '"' : text;
}
function toCsv(columns, rows) {
  const lines = [columns.map(csvField).join(",")];
  for (const row of rows) lines.push(columns.map((c) => csvField(row[c])).join(","));
  return "\ufeff" + lines.join("\r\n") + "\r\n";
}
function sheetRows(data, answers, rater) {
  return data.items.map((item) => {
    const given = answers[item.item_id] || {};
    const row = {item_id: item.item_id, required_variety: item.required_variety, prompt: item.prompt,
                 story: item.story, comment: given.comment || "", rater: rater || ""};
    for (const c of data.criteria) row[c] = given[c] || "";
    return row;
  });
}
function missingScores(data, answers) {
  let missing = 0;
  for (const item of data.items) for (const c of data.criteria) if (!(answers[item.item_id] || {})[c]) missing++;
  return missing;
}

if (typeof document !== "undefined") {
  const data = JSON.parse(document.getElementById("sheet-data").textContent);
  const storageKey = "arastory-sheet-" + data.sheet;
  const form = document.getElementById("sheet");
  const raterInput = document.getElementById("rater");

  function collect() {
    const answers = {};
    for (const item of data.items) {
      const given = {};
      for (const c of data.criteria) {
        const checked = form.querySelector('input[name="' + item.item_id + "__" + c + '"]:checked');
        if (checked) given[c] = checked.value;
      }
      const comment = form.querySelector('textarea[name="' + item.item_id + '__comment"]').value.trim();
      if (comment) given.comment = comment;
      answers[item.item_id] = given;
    }
    return answers;
  }
  function refresh() {
    const answers = collect();
    let done = 0;
    for (const item of data.items) {
      const complete = data.criteria.every((c) => (answers[item.item_id] || {})[c]);
      document.getElementById(item.item_id).classList.toggle("done", complete);
      if (complete) done++;
    }
    document.getElementById("progress").textContent = done + " / " + data.items.length;
    // Saved in the browser as the rater goes, so closing the tab loses nothing (where the browser allows storage).
    try { localStorage.setItem(storageKey, JSON.stringify({rater: raterInput.value, answers: answers})); } catch (e) { }
  }
  function restore() {
    let saved = null;
    try { saved = JSON.parse(localStorage.getItem(storageKey) || "null"); } catch (e) { saved = null; }
    if (!saved) return;
    raterInput.value = saved.rater || "";
    for (const [itemId, given] of Object.entries(saved.answers || {})) {
      for (const [key, value] of Object.entries(given)) {
        if (key === "comment") {
          const box = form.querySelector('textarea[name="' + itemId + '__comment"]');
          if (box) box.value = value;
        } else {
          const input = form.querySelector('input[name="' + itemId + "__" + key + '"][value="' + value + '"]');
          if (input) input.checked = true;
        }
      }
    }
  }
  function download() {
    const answers = collect();
    const missing = missingScores(data, answers);
    if (!raterInput.value.trim()) { alert("اكتب اسمك أولًا / Please enter your name first."); raterInput.focus(); return; }
    if (missing && !confirm("لم تُقيَّم " + missing + " خانة بعد. هل تريد التنزيل؟ / " + missing + " scores are still empty. Download anyway?")) return;
    const csvText = toCsv(data.columns, sheetRows(data, answers, raterInput.value.trim()));
    const blob = new Blob([csvText], {type: "text/csv;charset=utf-8"});
    const link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    link.download = "sheet-" + raterInput.value.trim().replace(/[^\w\u0600-\u06FF-]+/g, "_") + ".csv";
    document.body.appendChild(link);
    link.click();
    link.remove();
    URL.revokeObjectURL(link.href);
  }
  restore();
  form.addEventListener("change", refresh);
  form.addEventListener("input", refresh);
  document.getElementById("download").addEventListener("click", download);
  refresh();
}

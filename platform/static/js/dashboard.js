// The dashboard's behaviours, wired by data- attributes (the CSP allows scripts from 'self' only,
// so no inline handlers): the variable editor, charts, and nothing else that a server-rendered
// page could do itself. htmx does the live parts (polling partials).
(() => {
  "use strict";

  // --- the variable editor: rows <-> the JSON in <textarea name="variables"> ------------------
  // Without JavaScript the textarea is the editor. With it, the textarea is hidden and each
  // variable is a row; keys a row does not show (min/max, pattern, ...) are kept as they were.
  const ROW_KEYS = ["name", "type", "label", "required", "choices", "default", "public"];

  function parseVariables(text) {
    try {
      const value = JSON.parse(text || "[]");
      return Array.isArray(value) ? value : null;
    } catch (error) {
      return null;
    }
  }

  function fillRow(row, variable) {
    const field = (name) => row.querySelector(`[data-field="${name}"]`);
    field("name").value = variable.name || "";
    field("type").value = variable.type || "text";
    field("label").value = variable.label || "";
    field("required").checked = variable.required !== false;
    field("choices").value = Array.isArray(variable.choices) ? variable.choices.join(", ") : "";
    field("default").value =
      variable.default === undefined || variable.default === null ? "" : String(variable.default);
    field("public").checked = variable.public === true;
    row.dataset.original = JSON.stringify(variable);
    syncRowType(row);
  }

  function syncRowType(row) {
    const type = row.querySelector('[data-field="type"]').value;
    row.querySelector('[data-field="choices"]').disabled = type !== "choice";
    row.querySelector('[data-field="default"]').disabled = type === "image";
  }

  function readRow(row) {
    const original = JSON.parse(row.dataset.original || "{}");
    const variable = { ...original };
    const field = (name) => row.querySelector(`[data-field="${name}"]`);
    const type = field("type").value;
    variable.name = field("name").value.trim();
    variable.type = type;
    const label = field("label").value.trim();
    if (label) variable.label = label; else delete variable.label;
    // Keys left out mean the default: write them only when they differ from it or were there.
    const required = field("required").checked;
    if (!required || "required" in original) variable.required = required;
    const isPublic = field("public").checked;
    if (isPublic || "public" in original) variable.public = isPublic;
    if (type === "choice") {
      variable.choices = field("choices").value.split(/[,，]/).map((c) => c.trim()).filter(Boolean);
    } else {
      delete variable.choices;
    }
    const raw = field("default").value.trim();
    if (raw === "" || type === "image") {
      delete variable.default;
    } else if (type === "number" && raw !== "" && !Number.isNaN(Number(raw))) {
      variable.default = Number(raw);
    } else {
      variable.default = raw;
    }
    for (const key of Object.keys(variable)) {
      if (!ROW_KEYS.includes(key) && !(key in original)) delete variable[key];
    }
    return variable;
  }

  function initVariableEditor(editor) {
    if (editor.dataset.ready) return;
    const textarea = editor.querySelector("[data-variables-json]");
    const table = editor.querySelector("[data-variable-table]");
    const rows = editor.querySelector("[data-variable-rows]");
    const rowTemplate = editor.querySelector("[data-variable-row-template]");
    const variables = parseVariables(textarea.value);
    if (variables === null) return; // not a list: leave the JSON for the person to fix
    editor.dataset.ready = "1";

    const serialise = () => {
      const list = Array.from(rows.children).map(readRow);
      textarea.value = JSON.stringify(list, null, 1);
    };
    const addRow = (variable) => {
      const row = rowTemplate.content.firstElementChild.cloneNode(true);
      rows.appendChild(row);
      fillRow(row, variable);
      return row;
    };

    variables.forEach((variable) => addRow(variable));
    textarea.hidden = true;
    const fallbackLabel = editor.querySelector("[data-variables-fallback]");
    if (fallbackLabel) fallbackLabel.hidden = true;
    table.hidden = false;

    editor.querySelector("[data-add-variable]").addEventListener("click", () => {
      const row = addRow({ name: "", type: "text" });
      row.querySelector('[data-field="name"]').focus();
      serialise();
    });
    rows.addEventListener("click", (event) => {
      const remove = event.target.closest("[data-remove-variable]");
      if (!remove) return;
      remove.closest("tr").remove();
      serialise();
    });
    rows.addEventListener("change", (event) => {
      const row = event.target.closest("tr");
      if (row && event.target.matches('[data-field="type"]')) syncRowType(row);
      serialise();
    });
    rows.addEventListener("input", serialise);
    const form = editor.closest("form");
    if (form) form.addEventListener("submit", serialise);
    // The shots preview posts this form through htmx: send the rows as they are now.
    document.body.addEventListener("htmx:configRequest", (event) => {
      if (!form || !form.contains(event.detail.elt)) return;
      serialise();
      event.detail.parameters.variables = textarea.value;
    });
  }

  // --- charts (Chart.js, vendored) ------------------------------------------------------------
  // <canvas data-chart="doughnut" data-chart-labels='["a"]' data-chart-values='[1]'>
  function initChart(canvas) {
    if (canvas.dataset.ready || typeof window.Chart !== "function") return;
    canvas.dataset.ready = "1";
    const palette = ["#107c41", "#0172ad", "#9a6700", "#6f42c1", "#b42318", "#5c6370", "#d63384", "#20c997", "#fd7e14"];
    new window.Chart(canvas, {
      type: canvas.dataset.chart,
      data: {
        labels: JSON.parse(canvas.dataset.chartLabels || "[]"),
        datasets: [{ data: JSON.parse(canvas.dataset.chartValues || "[]"), backgroundColor: palette }],
      },
      options: {
        maintainAspectRatio: false,
        animation: false,
        plugins: { legend: { display: false } }, // the numbers are listed beside the chart
      },
    });
  }

  function init(root) {
    root.querySelectorAll("[data-variable-editor]").forEach(initVariableEditor);
    root.querySelectorAll("canvas[data-chart]").forEach(initChart);
  }

  // htmx.onLoad runs for the page and for every partial htmx swaps in (live batch pages).
  if (window.htmx) {
    window.htmx.onLoad(init);
  } else {
    init(document);
  }
})();

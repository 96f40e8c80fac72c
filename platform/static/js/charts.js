// The billing page's usage charts, drawn with the vendored Chart.js (static/vendor/chartjs).
// The numbers come from <script type="application/json" id="usage-charts"> (Django's
// json_script): data, never executed, so the CSP ('self' scripts only) allows it. Each
// <canvas data-chart="name"> gets the chart of that name.
(() => {
  const source = document.getElementById("usage-charts");
  if (!source || typeof window.Chart === "undefined") return;
  const specs = JSON.parse(source.textContent);
  const lang = document.documentElement.lang || "en";
  const number = new Intl.NumberFormat(lang, { maximumFractionDigits: 1 });
  const palette = ["#1060c9", "#107c41", "#9a6700", "#b42318", "#6e40c9", "#0e7490", "#be185d", "#4d7c0f"];
  const muted = getComputedStyle(document.documentElement).getPropertyValue("--pico-muted-color").trim() || "#646b79";

  function config(spec) {
    const doughnut = spec.type === "doughnut";
    const datasets = spec.datasets.map((set, index) => ({
      label: set.label,
      data: set.data,
      backgroundColor: doughnut ? spec.labels.map((_, i) => palette[i % palette.length]) : palette[index % palette.length],
      borderWidth: doughnut ? 1 : 0,
      borderRadius: doughnut ? 0 : 3,
      maxBarThickness: 36,
    }));
    const tooltip = { callbacks: { label: (item) => `${item.dataset.label}: ${number.format(item.parsed[spec.horizontal ? "x" : "y"] ?? item.parsed)}` } };
    const options = {
      responsive: true,
      maintainAspectRatio: false,
      animation: { duration: 300 },
      plugins: { legend: { display: doughnut, position: "right", labels: { color: muted } }, tooltip },
    };
    if (!doughnut) {
      const valueAxis = { beginAtZero: true, ticks: { color: muted, callback: (value) => number.format(value) }, title: { display: true, text: spec.unit, color: muted } };
      const categoryAxis = { ticks: { color: muted, autoSkip: true, maxRotation: 0 }, grid: { display: false } };
      options.indexAxis = spec.horizontal ? "y" : "x";
      options.scales = spec.horizontal ? { x: valueAxis, y: categoryAxis } : { x: categoryAxis, y: valueAxis };
    }
    return { type: doughnut ? "doughnut" : "bar", data: { labels: spec.labels, datasets }, options };
  }

  for (const canvas of document.querySelectorAll("canvas[data-chart]")) {
    const spec = specs[canvas.getAttribute("data-chart")];
    if (spec) new window.Chart(canvas, config(spec));
  }
})();

// LeafWatch's built-in dashboard: polls /api/v1/dashboard/data and draws it with Plotly.
// Each chart container reports how many points it draws in `data-points` (0: "no data yet").
(function () {
  "use strict";

  const DATA_URL = "/api/v1/dashboard/data";
  const STATUS_COLOURS = { "2xx": "#2e7d32", "3xx": "#1565c0", "4xx": "#ef8f00", "5xx": "#c62828" };
  const PALETTE = ["#2e7d32", "#1565c0", "#8e24aa", "#ef8f00", "#00838f", "#6d4c41", "#c62828"];
  const CONFIG = { displayModeBar: false, responsive: true };
  const BASE_LAYOUT = {
    margin: { l: 48, r: 12, t: 8, b: 36 },
    paper_bgcolor: "rgba(0,0,0,0)",
    plot_bgcolor: "rgba(0,0,0,0)",
    font: { family: "system-ui, sans-serif", size: 12, color: "#1f2a1f" },
    legend: { orientation: "h", y: -0.18 },
    hovermode: "closest",
  };

  // ?refresh=N sets the period in seconds (1 to 300); 5 by default.
  function refreshSeconds() {
    const asked = Number(new URLSearchParams(window.location.search).get("refresh"));
    return Number.isFinite(asked) && asked >= 1 && asked <= 300 ? asked : 5;
  }

  function layout(extra) {
    return Object.assign({}, BASE_LAYOUT, extra);
  }

  function localTime(iso) {
    const when = new Date(iso);
    const pad = (value) => String(value).padStart(2, "0");
    return (
      `${when.getFullYear()}-${pad(when.getMonth() + 1)}-${pad(when.getDate())} ` +
      `${pad(when.getHours())}:${pad(when.getMinutes())}:${pad(when.getSeconds())}`
    );
  }

  // Whole-number ticks for counts: a chart of one refused upload should not read 0.2, 0.4...
  function countAxis(values) {
    const highest = Math.max(0, ...values);
    return { rangemode: "tozero", tick0: 0, dtick: niceStep(highest / 4) };
  }

  // The smallest of 1, 2, 5, 10, 20, 50... at least `rough`.
  function niceStep(rough) {
    let step = 1;
    while (step < rough) {
      for (const factor of [2, 2.5, 2]) {
        step *= factor;
        if (step >= rough) break;
      }
    }
    return step;
  }

  function countPoints(traces) {
    let points = 0;
    for (const trace of traces) {
      for (const value of trace.y || []) {
        if (value !== null && value !== undefined) points += 1;
      }
    }
    return points;
  }

  // Draw a chart, or say why there is nothing to draw yet.
  function draw(id, traces, extraLayout, emptyText) {
    const element = document.getElementById(id);
    const points = traces === null ? 0 : countPoints(traces);
    element.dataset.points = String(points);
    if (points === 0) {
      if (element.dataset.drawn === "1") window.Plotly.purge(element);
      element.dataset.drawn = "0";
      element.replaceChildren();
      const note = document.createElement("p");
      note.className = "empty";
      note.textContent = emptyText;
      element.appendChild(note);
      return;
    }
    if (element.dataset.drawn !== "1") element.replaceChildren();
    element.dataset.drawn = "1";
    window.Plotly.react(element, traces, layout(extraLayout), CONFIG);
  }

  function drawTraffic(traffic) {
    const points = traffic.points;
    const x = points.map((point) => localTime(point.at));
    const waiting = "No data yet: rates need two refreshes with requests between them.";
    const timeAxis = { type: "date", tickformat: "%H:%M:%S", hoverformat: "%Y-%m-%d %H:%M:%S", nticks: 5 };
    const requests = points.length
      ? Object.keys(STATUS_COLOURS).map((status) => ({
          name: status,
          x: x,
          y: points.map((point) => point.by_status[status] || 0),
          type: "scatter",
          mode: "lines",
          stackgroup: "status",
          line: { color: STATUS_COLOURS[status], width: 1 },
        }))
      : null;
    draw("chart-requests", requests,
      { xaxis: timeAxis, yaxis: { title: { text: "req/s" }, rangemode: "tozero" } }, waiting);
    const errors = points.map((point) => point.error_rate);
    // At least 0 to 5%, so a healthy service shows a flat line on the floor, not a zoomed-in one.
    const worst = Math.max(0.05, ...errors.filter((value) => value !== null).map((value) => value * 1.2));
    draw(
      "chart-errors",
      [{ name: "5xx share", x: x, y: errors, type: "scatter", mode: "lines+markers",
         line: { color: STATUS_COLOURS["5xx"] }, connectgaps: false }],
      { xaxis: timeAxis, yaxis: { tickformat: ".0%", range: [0, Math.min(1, worst)] }, showlegend: false },
      waiting,
    );
    const latency = [
      ["p50", "p50_ms", "#2e7d32"],
      ["p95", "p95_ms", "#ef8f00"],
      ["p99", "p99_ms", "#c62828"],
    ].map(([name, key, colour]) => ({
      name: name,
      x: x,
      y: points.map((point) => point[key]),
      type: "scatter",
      mode: "lines+markers",
      line: { color: colour },
    }));
    draw("chart-latency", latency,
      { xaxis: timeAxis, yaxis: { title: { text: "ms" }, rangemode: "tozero" } }, waiting);
  }

  function drawClasses(windows) {
    const total = windows.reduce(
      (sum, window) => sum + Object.values(window.counts).reduce((a, b) => a + b, 0), 0);
    const traces = total
      ? windows.map((window, index) => ({
          name: window.window,
          x: Object.keys(window.counts),
          y: Object.values(window.counts),
          type: "bar",
          marker: { color: PALETTE[index] },
        }))
      : null;
    const counts = traces ? traces.flatMap((trace) => trace.y) : [];
    draw("chart-classes", traces,
      { barmode: "group", yaxis: countAxis(counts), xaxis: { tickangle: 0, tickfont: { size: 11 } } },
      "No data yet: no predictions in the last 7 days.");
  }

  function drawAccuracy(rows) {
    const versions = [...new Set(rows.map((row) => row.model_version))];
    const traces = [];
    versions.forEach((version, index) => {
      const mine = rows.filter((row) => row.model_version === version);
      const x = mine.map((row) => row.window);
      traces.push({
        name: `v${version} realized`,
        x: x,
        y: mine.map((row) => row.accuracy),
        text: mine.map((row) => `${row.correct}/${row.reviewed} right`),
        type: "scatter",
        mode: "markers",
        marker: { size: 10, color: PALETTE[index % PALETTE.length] },
        cliponaxis: false,
        error_y: {
          type: "data",
          symmetric: false,
          array: mine.map((row) => (row.accuracy === null ? null : row.upper - row.accuracy)),
          arrayminus: mine.map((row) => (row.accuracy === null ? null : row.accuracy - row.lower)),
        },
      });
      traces.push({
        name: `v${version} estimated`,
        x: x,
        y: mine.map((row) => row.estimated),
        type: "scatter",
        mode: "markers",
        marker: { size: 11, symbol: "diamond-open", line: { width: 2 }, color: PALETTE[(index + 3) % PALETTE.length] },
      });
    });
    draw(
      "chart-accuracy",
      traces,
      {
        yaxis: { range: [0, 1.06], tickformat: ".0%" },
        xaxis: { type: "category", categoryorder: "array", categoryarray: ["1h", "24h", "7d", "30d"] },
      },
      "No data yet: no prediction in the last 30 days.",
    );
  }

  function drawDrift(report) {
    const when = document.getElementById("drift-when");
    if (report === null) {
      when.textContent = "latest run";
      draw("chart-drift", null, {}, "No data yet: no drift run has been stored.");
      return;
    }
    when.textContent = `${report.status}, run ${localTime(report.run_at)} on v${report.model_version}`;
    const names = Object.keys(report.scores).filter((name) => report.scores[name] !== null);
    const traces = [{
      x: names.map((name) => name.replace(/_/g, "<br>")),
      y: names.map((name) => report.scores[name]),
      text: names.map((name) => report.scores[name].toFixed(2)),
      textposition: "outside",
      cliponaxis: false,
      type: "bar",
      marker: { color: report.drifted ? "#c62828" : "#2e7d32" },
    }];
    draw("chart-drift", traces, { yaxis: { range: [0, 1] }, showlegend: false },
      `No data yet: the latest run (${report.status}) had too few predictions to score.`);
  }

  function drawRejected(reasons) {
    const names = Object.keys(reasons).sort();
    const total = names.reduce((sum, name) => sum + reasons[name], 0);
    const traces = total
      ? [{ y: names.map((name) => name.replace(/_/g, " ")), x: names.map((name) => reasons[name]),
           type: "bar", orientation: "h", marker: { color: "#ef8f00" } }]
      : null;
    draw("chart-rejected", traces,
      { showlegend: false, margin: { l: 120, r: 12, t: 8, b: 36 },
        xaxis: countAxis(names.map((name) => reasons[name])), yaxis: { automargin: true } },
      "No data yet: no upload has been refused since the service started.");
  }

  function drawUsage(windows) {
    const made = windows.reduce((sum, window) => sum + window.predictions, 0);
    const traces = made
      ? windows.map((window, index) => ({
          name: window.window,
          x: ["Predictions", "Active users", "With feedback"],
          y: [window.predictions, window.active_users, window.reviewed],
          type: "bar",
          marker: { color: PALETTE[index + 1] },
        }))
      : null;
    // Log scale: a thousand predictions and a handful of users both stay readable.
    draw("chart-usage", traces, { barmode: "group", yaxis: { type: "log", dtick: 1 } },
      "No data yet: no predictions in the last 7 days.");
  }

  function setText(id, text) {
    document.getElementById(id).textContent = text;
  }

  function drawFacts(data) {
    const day = data.usage.find((window) => window.window === "24h");
    const week = data.usage.find((window) => window.window === "7d");
    setText("fact-model", data.model_version === null ? "none loaded" : `${data.model_name} v${data.model_version}`);
    setText("fact-predictions", day ? String(day.predictions) : "–");
    setText("fact-users", day && week ? `${day.active_users} / ${week.active_users}` : "–");
    setText("fact-feedback",
      week && week.feedback_rate !== null ? `${(100 * week.feedback_rate).toFixed(1)}%` : "–");
    setText("fact-updated", localTime(data.generated_at));
  }

  function render(data) {
    drawFacts(data);
    drawTraffic(data.traffic);
    drawClasses(data.predictions_by_class);
    drawAccuracy(data.accuracy);
    drawDrift(data.drift);
    drawRejected(data.rejected_uploads);
    drawUsage(data.usage);
  }

  async function refresh() {
    const status = document.getElementById("status");
    try {
      const answer = await fetch(DATA_URL, { headers: { Accept: "application/json" }, cache: "no-store" });
      if (!answer.ok) throw new Error(`${answer.status} ${answer.statusText}`);
      render(await answer.json());
      status.textContent = `Refreshes every ${refreshSeconds()} s.`;
      status.classList.remove("failing");
    } catch (error) {
      // Keep the last charts on screen, and say the figures are stale.
      status.textContent = `Could not refresh (${error.message}); trying again.`;
      status.classList.add("failing");
    } finally {
      window.setTimeout(refresh, refreshSeconds() * 1000);
    }
  }

  document.addEventListener("DOMContentLoaded", refresh);
})();

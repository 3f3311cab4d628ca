/**
 * The dashboard page: plain HTML, inline CSS and JS, an SVG chart; no build step, no external
 * resource (it works on an air-gapped login node). It listens to /events and redraws.
 */
export const DASHBOARD_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>hsmfleet — live throughput</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #1d2330; background: #f7f8fa; }
  h1 { font-size: 1.3em; margin: 0 0 .6em; }
  h2 { font-size: 1.05em; margin: 1.4em 0 .4em; }
  .tiles { display: flex; gap: 1em; flex-wrap: wrap; }
  .tile { background: #fff; border: 1px solid #d9dde5; border-radius: 6px; padding: .6em 1em; min-width: 11em; }
  .tile .v { font-size: 1.6em; font-weight: 600; }
  .tile .l { color: #5a6478; font-size: .85em; }
  svg { background: #fff; border: 1px solid #d9dde5; border-radius: 6px; }
  table { border-collapse: collapse; background: #fff; min-width: 40em; }
  th, td { border-bottom: 1px solid #e6e9ef; padding: .3em .8em; text-align: left; }
  td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
  .bar { height: .7em; background: #2b6cb0; border-radius: 2px; }
  .bad { color: #b42318; font-weight: 600; }
  tr.errs td { font-size: 12px; padding-top: 0; font-family: ui-monospace, monospace; }
  #status { color: #5a6478; font-size: .85em; }
</style>
</head>
<body>
<h1>hsmfleet — live throughput <span id="status">connecting…</span></h1>
<div class="tiles">
  <div class="tile"><div class="v" id="total" data-bps="0">–</div><div class="l">fleet throughput</div></div>
  <div class="tile"><div class="v" id="share">–</div><div class="l">of the ceiling (<span id="ceiling">–</span>)</div></div>
  <div class="tile"><div class="v" id="nworkers">–</div><div class="l"><span id="workers-word">workers</span> on <span id="nvms">–</span></div></div>
  <div class="tile"><div class="v" id="errors">–</div><div class="l"><span id="errors-word">errors</span> (jobs shown)</div></div>
</div>
<h2>Throughput over time</h2>
<svg id="chart" width="900" height="280" viewBox="0 0 900 280" role="img" aria-label="throughput over time">
  <g id="grid"></g>
  <polyline id="series" fill="none" stroke="#2b6cb0" stroke-width="2" points=""></polyline>
  <line id="ceiling-line" x1="84" x2="890" y1="0" y2="0" stroke="#b42318" stroke-width="2" stroke-dasharray="8 5"></line>
  <text id="ceiling-label" x="888" y="0" text-anchor="end" fill="#b42318" font-size="12"></text>
</svg>
<h2>Per VM</h2>
<table id="vms"><thead><tr><th>VM</th><th class="n">workers</th><th class="n">throughput</th><th>share of fleet</th><th class="n">moved</th></tr></thead><tbody></tbody></table>
<h2>Jobs</h2>
<table id="jobs"><thead><tr><th>job</th><th>kind</th><th>state</th><th class="n">progress</th><th class="n">moved / found</th><th class="n">files</th><th class="n">rate</th><th class="n">ETA</th><th class="n">errors</th></tr></thead><tbody></tbody></table>
<div id="policies" hidden>
<h2>Policies</h2>
<table id="watermarks"><thead><tr><th>policy</th><th>target</th><th class="n">used</th><th class="n">high / low</th><th>usage</th></tr></thead><tbody></tbody></table>
<table id="runs"><thead><tr><th>policy</th><th>last run</th><th>trigger</th><th class="n">done</th><th class="n">failed</th><th class="n">bytes</th><th>stopped by</th></tr></thead><tbody></tbody></table>
<p id="report"></p>
</div>
<h2>Per worker</h2>
<table id="workers"><thead><tr><th>worker</th><th>VM</th><th class="n">throughput</th><th class="n">in flight / concurrency</th><th class="n">items done</th><th class="n">moved</th></tr></thead><tbody></tbody></table>
<script>
"use strict";
const UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
const bytes = (n) => { let i = 0; while (n >= 1024 && i < UNITS.length - 1) { n /= 1024; i++; } return (i ? n.toFixed(n < 10 ? 2 : 1) : String(Math.round(n))) + " " + UNITS[i]; };
const rate = (n) => bytes(n) + "/s";
const dur = (s) => s == null ? "–" : s < 90 ? Math.round(s) + " s" : s < 5400 ? Math.round(s / 60) + " min" : (s / 3600).toFixed(1) + " h";
const plural = (n, one, many) => n === 1 ? one : many;
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => "&#" + c.charCodeAt(0) + ";");
const $ = (id) => document.getElementById(id);
const L = 84, R = 890, T = 14, B = 250;

function drawChart(s) {
  const now = s.atMs, span = 5 * 60 * 1000;
  const pts = s.history.filter(([t]) => now - t <= span);
  // The scale follows the data (tracker.ts chartScale); an off-scale ceiling is marked at the top.
  const top = s.chart.topBytesPerSecond;
  const x = (t) => L + (R - L) * (1 - (now - t) / span);
  const y = (v) => B - (B - T) * (v / top);
  $("series").setAttribute("points", pts.map(([t, v]) => x(t).toFixed(1) + "," + y(v).toFixed(1)).join(" "));
  const on = s.chart.ceilingOnScale;
  const cy = (on ? y(s.ceilingBytesPerSecond) : T).toFixed(1);
  const cl = $("ceiling-line"); cl.setAttribute("y1", cy); cl.setAttribute("y2", cy);
  cl.setAttribute("stroke-opacity", on ? "1" : "0.35");
  const lab = $("ceiling-label"); lab.setAttribute("y", String(Number(cy) + (on ? -5 : 14)));
  lab.textContent = "ceiling " + rate(s.ceilingBytesPerSecond) + (on ? "" : " ↑ above this scale");
  let g = "";
  for (let i = 0; i <= 4; i++) {
    const v = (top * i) / 4, gy = y(v).toFixed(1);
    g += '<line x1="' + L + '" x2="' + R + '" y1="' + gy + '" y2="' + gy + '" stroke="#eef0f4"/>' +
         '<text x="' + (L - 6) + '" y="' + gy + '" text-anchor="end" font-size="11" fill="#5a6478" dy="4">' + esc(rate(v)) + "</text>";
  }
  for (let m = 0; m <= 5; m++) {
    const gx = (L + ((R - L) * m) / 5).toFixed(1);
    g += '<text x="' + gx + '" y="' + (B + 18) + '" text-anchor="middle" font-size="11" fill="#5a6478">' + (m === 5 ? "now" : "-" + (5 - m) + " min") + "</text>";
  }
  $("grid").innerHTML = g;
}

function render(s) {
  $("status").textContent = "updated " + new Date(s.atMs).toLocaleTimeString();
  $("total").textContent = rate(s.bytesPerSecond);
  $("total").dataset.bps = String(s.bytesPerSecond);
  $("share").textContent = (100 * s.shareOfCeiling).toFixed(1) + " %";
  $("ceiling").textContent = rate(s.ceilingBytesPerSecond);
  $("nworkers").textContent = String(s.workers.length);
  $("workers-word").textContent = plural(s.workers.length, "worker", "workers");
  $("nvms").textContent = s.vms.length + " " + plural(s.vms.length, "VM", "VMs");
  $("errors").textContent = String(s.errors);
  $("errors-word").textContent = plural(s.errors, "error", "errors");
  $("errors").className = "v" + (s.errors > 0 ? " bad" : "");
  drawChart(s);
  $("vms").tBodies[0].innerHTML = s.vms.map((v) => {
    const share = s.bytesPerSecond > 0 ? v.bytesPerSecond / s.bytesPerSecond : 0;
    return '<tr data-vm="' + esc(v.vmName) + '" data-bps="' + v.bytesPerSecond + '"><td>' + esc(v.vmName) + '</td><td class="n">' + v.workers +
      '</td><td class="n">' + rate(v.bytesPerSecond) + '</td><td><div class="bar" style="width:' + (share * 12).toFixed(2) + 'em"></div></td><td class="n">' + bytes(v.bytesMoved) + "</td></tr>";
  }).join("");
  $("jobs").tBodies[0].innerHTML = s.jobs.map((j) =>
    '<tr data-job="' + esc(j.jobId) + '"><td>' + esc(j.jobId) + "</td><td>" + esc(j.kind) + "</td><td>" + esc(j.state) +
    '</td><td class="n">' + (j.progress == null ? "–" : (100 * j.progress).toFixed(1) + " %") +
    '</td><td class="n">' + bytes(j.bytesDone) + " / " + bytes(j.bytesFound) + (j.walking ? "+" : "") +
    '</td><td class="n">' + j.filesDone + " / " + j.filesFound + '</td><td class="n">' + rate(j.bytesPerSecond) +
    '</td><td class="n">' + (j.walking && j.etaSeconds != null ? "≥ " : "") + dur(j.etaSeconds) +
    '</td><td class="n' + (j.errors > 0 ? " bad" : "") + '">' + j.errors + "</td></tr>" +
    (j.errorMessages.length > 0
      ? '<tr class="errs" data-errors-of="' + esc(j.jobId) + '"><td colspan="9">' +
        j.errorMessages.map((m) => '<div class="bad">' + esc(m) + "</div>").join("") +
        (j.errors > j.errorMessages.length ? "<div>… " + (j.errors - j.errorMessages.length) + " more (hsmfleet status " + esc(j.jobId) + ")</div>" : "") +
        "</td></tr>"
      : "")).join("");
  const p = s.policies;
  $("policies").hidden = !p;
  if (p) {
    $("watermarks").tBodies[0].innerHTML = p.watermarks.map((w) =>
      '<tr data-policy="' + esc(w.policy) + '"><td>' + esc(w.policy) + "</td><td>" + esc(w.target) + '</td><td class="n' + (w.percent > w.highPercent ? " bad" : "") + '">' +
      w.percent.toFixed(1) + ' %</td><td class="n">' + w.highPercent + " / " + w.lowPercent + ' %</td><td><div class="bar" style="width:' + (w.percent * 0.12).toFixed(2) + 'em"></div></td></tr>').join("");
    $("runs").tBodies[0].innerHTML = p.runs.map((r) =>
      "<tr><td>" + esc(r.policy) + " (" + esc(r.action) + ")</td><td>" + esc(new Date(r.endMs).toISOString()) + "</td><td>" + esc(r.trigger) +
      '</td><td class="n">' + r.done + '</td><td class="n' + (r.failed > 0 ? " bad" : "") + '">' + r.failed + '</td><td class="n">' + bytes(r.bytes) +
      "</td><td" + (r.suspended ? ' class="bad"' : "") + ">" + esc(r.suspended ? "SUSPENDED" : r.stoppedBy) + "</td></tr>").join("");
    $("report").textContent = p.report
      ? "last report (" + new Date(p.report.atMs).toISOString() + ", " + p.report.root + "): " + p.report.files.count + " files, " + bytes(p.report.files.bytes) + "; " +
        Object.entries(p.report.byState).map(([k, v]) => k + " " + v.count).join(", ")
      : "no report yet (hsmfleet report PATH)";
  }
  $("workers").tBodies[0].innerHTML = s.workers.map((w) =>
    '<tr data-worker="' + esc(w.workerId) + '"><td>' + esc(w.workerId) + "</td><td>" + esc(w.vmName) + '</td><td class="n">' + rate(w.bytesPerSecond) +
    '</td><td class="n">' + w.itemsInFlight + " / " + w.concurrency + '</td><td class="n">' + w.itemsDone + '</td><td class="n">' + bytes(w.bytesMoved) + "</td></tr>").join("");
}

const events = new EventSource("events");
events.onmessage = (e) => render(JSON.parse(e.data));
events.onerror = () => { $("status").textContent = "disconnected; retrying…"; };
</script>
</body>
</html>
`;

// Dashboard: runs, budget, queue and pace (answers per minute per annotator, queue and budget
// in minutes of work), the live mIoU vs labeled pixels curve, per-class IoU; refreshes itself.

import { describeError } from "./api.js";
import { renderChart } from "./chart.js";
import { inkFor } from "./palette.js";
import { setupSignIn } from "./signin.js";

const REFRESH_MS = 3000;
const $ = (id) => document.getElementById(id);
const fmt = (n) => (n == null ? "–" : Number(n).toLocaleString());

let api = null;
let auth = null;
let timer = null;
let busy = false;
let failures = 0;
let again = false; // a refresh was asked for while one ran

function wantedRunId() {
  const m = /run=(\d+)/.exec(window.location.hash);
  return m ? Number(m[1]) : null;
}

function cell(text, className) {
  const td = document.createElement("td");
  if (className) td.className = className;
  td.textContent = text;
  return td;
}

function meter(parts) {
  const bar = document.createElement("div");
  bar.className = "bar";
  for (const [cls, frac] of parts) {
    const seg = document.createElement("span");
    seg.className = `seg ${cls}`;
    seg.style.width = `${Math.max(0, Math.min(100, 100 * frac)).toFixed(2)}%`;
    bar.append(seg);
  }
  return bar;
}

function renderRuns(runs, current) {
  const list = $("runs");
  list.replaceChildren();
  for (const run of runs) {
    const li = document.createElement("li");
    const a = document.createElement("a");
    a.href = `#run=${run.id}`;
    a.dataset.testid = `run-${run.id}`;
    if (current && run.id === current.id) a.setAttribute("aria-current", "page");
    const name = document.createElement("span");
    name.textContent = run.name;
    const meta = document.createElement("small");
    meta.textContent = `#${run.id} · ${run.status} · ${run.strategy}`;
    a.append(name, meta);
    li.append(a);
    list.append(li);
  }
  if (!runs.length) list.innerHTML = "<li class='muted'>No runs yet.</li>";
}

function renderBudget(b) {
  const total = Math.max(1, b.expected);
  $("bar-answered").style.width = `${Math.min(100, (100 * b.answered) / total)}%`;
  $("bar-reserved").style.width = `${Math.min(100, (100 * b.reserved) / total)}%`;
  $("budget-bar").setAttribute("aria-label",
    `${b.answered} answered, ${b.reserved} reserved, ${b.remaining} remaining of ${b.expected}`);
  for (const k of ["answered", "reserved", "remaining", "skipped", "cant_tell", "expected"]) {
    $(`b-${k}`).textContent = fmt(b[k]);
  }
  $("b-seconds").textContent = minutes((b.spent_seconds ?? 0) / 60); // answers and skips
  const rows = Object.entries(b.groups ?? {}).filter(([, g]) => g.answered || g.reserved);
  const body = $("groups");
  body.replaceChildren();
  for (const [name, g] of rows) {
    const tr = document.createElement("tr");
    tr.dataset.group = name;
    tr.append(cell(name), cell(fmt(g.answered), "num"), cell(fmt(g.reserved), "num"));
    const td = cell("", "wide");
    td.append(meter([["answered", g.answered / total], ["reserved", g.reserved / total]]));
    tr.append(td);
    body.append(tr);
  }
  if (!rows.length) body.innerHTML = "<tr><td colspan='4' class='muted'>No queries yet.</td></tr>";
}

/** Minutes as "45 s", "12 min" or "3 h 20 min"; "–" while the server has no rate. */
function minutes(m) {
  if (m == null) return "–";
  if (m < 1) return `${Math.round(m * 60)} s`;
  if (m < 60) return `${Math.round(m)} min`;
  return `${Math.floor(m / 60)} h ${Math.round(m % 60)} min`;
}

/** GET /pace: the server's measured answers per minute, queue and budget in minutes. */
function renderPace(p) {
  $("s-pending").textContent = fmt(p.pending);
  $("s-leased").textContent = fmt(p.leased);
  $("s-annotators").textContent = fmt(p.active_annotators);
  $("s-rate").textContent = p.answers_per_minute.toFixed(1);
  $("s-queue-minutes").textContent = minutes(p.queue_minutes);
  $("s-eta").textContent = p.budget_left === 0 ? "done" : minutes(p.eta_minutes);
  $("pace-window").textContent = `(last ${Math.round(p.window_s / 60)} min)`;
  const body = $("annotators");
  body.replaceChildren();
  for (const a of p.annotators) {
    const tr = document.createElement("tr");
    tr.dataset.annotator = a.name;
    tr.append(cell(a.name), cell(fmt(a.answered), "num"), cell(fmt(a.skipped), "num"),
      cell(a.answers_per_minute.toFixed(1), "num"));
    body.append(tr);
  }
  if (!p.annotators.length) {
    body.innerHTML = "<tr><td colspan='4' class='muted'>Nobody has answered yet.</td></tr>";
  }
}

/** IoU values may come as fractions (0..1) or percent; show percent. */
function percentScale(metrics) {
  const values = metrics.flatMap((m) => [m.miou, ...(m.per_class_iou ?? [])]).filter((v) => v != null);
  return values.length && Math.max(...values) <= 1 ? 100 : 1;
}

/** The evaluations against time since the first (minutes, or seconds within the first two
 * minutes): a session that trains on the same labels for a while shows every evaluation
 * there, where the labels chart stacks them. Returns [series, unit]. */
function timeSeries(metrics, k) {
  const times = metrics.map((m) => Date.parse(m.created_at));
  const t0 = Math.min(...times);
  const [scale, unit] = Math.max(...times) - t0 < 120000 ? [1000, "s"] : [60000, "min"];
  const bySplit = new Map();
  metrics.forEach((m, i) => {
    const split = m.split || "target";
    const t = (times[i] - t0) / scale;
    if (!bySplit.has(split)) bySplit.set(split, []);
    bySplit.get(split).push({ x: +t.toFixed(3), y: m.miou * k,
      title: `${t.toFixed(1)} ${unit}: mIoU ${(m.miou * k).toFixed(1)} at ` +
        `${fmt(m.labeled_pixels)} labeled pixels, iteration ${m.iteration} (${split})` });
  });
  return [[...bySplit].map(([name, points]) => ({ name, points })), unit];
}

/** The evaluations against annotator-hours: the answers' lead times summed up to each
 * evaluation (MetricOut.annotator_seconds, computed by the server). */
function hoursSeries(metrics, k) {
  const bySplit = new Map();
  for (const m of metrics) {
    const split = m.split || "target";
    const h = (m.annotator_seconds ?? 0) / 3600;
    if (!bySplit.has(split)) bySplit.set(split, []);
    bySplit.get(split).push({ x: +h.toFixed(6), y: m.miou * k,
      title: `${(h * 60).toFixed(1)} annotator-minutes: mIoU ${(m.miou * k).toFixed(1)} at ` +
        `${fmt(m.labeled_pixels)} labeled pixels, iteration ${m.iteration} (${split})` });
  }
  return [...bySplit].map(([name, points]) => ({ name, points }));
}

function renderMetrics(run, metrics) {
  const k = percentScale(metrics);
  const bySplit = new Map();
  for (const m of metrics) {
    const split = m.split || "target";
    if (!bySplit.has(split)) bySplit.set(split, []);
    bySplit.get(split).push({ x: m.labeled_pixels, y: m.miou * k,
      title: `iteration ${m.iteration}: mIoU ${(m.miou * k).toFixed(1)} at ` +
        `${fmt(m.labeled_pixels)} labeled pixels (${split})` });
  }
  const series = [...bySplit].map(([name, points]) => ({ name, points }));
  const width = Math.max(320, Math.round($("chart").clientWidth || 640));
  const height = Math.round(Math.min(340, Math.max(240, width * 0.55)));
  renderChart($("chart"), series, { xLabel: "labeled pixels", yLabel: "mIoU (%)", width, height });
  const [timed, unit] = timeSeries(metrics, k);
  renderChart($("chart-time"), timed, { xLabel: `${unit === "s" ? "seconds" : "minutes"} since ` +
    "the first evaluation", yLabel: "mIoU (%)", width, height, pointId: "time-point" });
  renderChart($("chart-hours"), hoursSeries(metrics, k), { xLabel: "annotator-hours",
    yLabel: "mIoU (%)", width, height, pointId: "hours-point" });

  const latest = metrics[metrics.length - 1];
  const body = $("iou");
  body.replaceChildren();
  $("iou-when").textContent = latest ? `iteration ${latest.iteration}, ${latest.split ?? ""}` : "";
  if (!latest) {
    body.innerHTML = "<tr><td colspan='3' class='muted'>No metrics posted yet.</td></tr>";
    return;
  }
  const classes = [...run.classes].sort((a, b) => a.id - b.id);
  (latest.per_class_iou ?? []).forEach((v, i) => {
    const cls = classes[i] ?? { name: `class ${i}`, color: [128, 128, 128] };
    const tr = document.createElement("tr");
    tr.dataset.classId = String(cls.id ?? i);
    const name = cell(cls.name);
    const sw = document.createElement("span");
    sw.className = "swatch";
    sw.style.background = `rgb(${cls.color.join(",")})`;
    sw.style.color = inkFor(cls.color);
    name.prepend(sw);
    tr.append(name, cell(v == null ? "–" : (v * k).toFixed(1), "num"));
    const td = cell("", "wide");
    if (v != null) td.append(meter([["iou", (v * k) / 100]]));
    tr.append(td);
    body.append(tr);
  });
}

function renderRun(run, budget, metrics, pace) {
  $("run-empty").hidden = true;
  $("run-body").hidden = false;
  $("run-name").textContent = run.name;
  const seconds = run.budget_seconds == null ? "" :
    ` and ${fmt(+(run.budget_seconds / 3600).toFixed(2))} annotator-hours`;
  $("run-meta").textContent = `#${run.id} · ${run.status} · strategy ${run.strategy} · ` +
    `budget ${fmt(run.budget_total)} px (${(100 * run.budget_rate).toFixed(2)}% of ` +
    `${fmt(run.target_pixels)})${seconds} · ` +
    `created ${new Date(run.created_at).toLocaleString()}`;
  renderBudget(budget);
  renderPace(pace);
  renderMetrics(run, metrics);
}

function setRefresh(text, kind = "ok") {
  $("refresh-state").textContent = text;
  $("refresh-state").dataset.kind = kind;
}

async function refresh() {
  if (busy) {
    again = true;
    return;
  }
  clearTimeout(timer);
  busy = true;
  try {
    const runs = await api.get("/api/v1/runs");
    const wanted = wantedRunId();
    const run = runs.find((r) => r.id === wanted) ?? runs.find((r) => r.status === "active") ?? runs[0];
    renderRuns(runs, run);
    if (run) {
      const base = `/api/v1/runs/${run.id}`;
      const [budget, metrics, pace] = await Promise.all([
        api.get(`${base}/budget`), api.get(`${base}/metrics`), api.get(`${base}/pace`)]);
      renderRun(run, budget, metrics.metrics, pace);
    }
    failures = 0;
    setRefresh(`Updated ${new Date().toLocaleTimeString()}`);
  } catch (err) {
    if (err.status === 401) {
      busy = false;
      return auth.expire();
    }
    failures += 1;
    const delay = Math.min(30000, REFRESH_MS * 2 ** (failures - 1));
    setRefresh(`${describeError(err)} Retrying in ${Math.round(delay / 1000)} s.`, "warn");
  }
  busy = false;
  if (again) {
    again = false;
    return refresh();
  }
  timer = setTimeout(refresh, failures ? Math.min(30000, REFRESH_MS * 2 ** (failures - 1)) : REFRESH_MS);
}

window.addEventListener("hashchange", () => api && refresh());
auth = setupSignIn({
  roles: ["viewer", "admin", "trainer", "annotator"],
  onSignedIn: (client) => {
    api = client;
    refresh();
  },
});

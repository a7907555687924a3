// Annotator view: what is on screen apart from the palette (status, notices, progress, query).

import { drawInset, drawTarget, pixelColor } from "./draw.js";

const $ = (id) => document.getElementById(id);

/** The one-line state of the work (queue empty, budget spent, server down ...). */
export function setStatus(text, kind = "info") {
  const el = $("status");
  el.textContent = text;
  el.dataset.kind = kind;
  el.hidden = !text;
}

/**
 * A notice in the list under the status line. Notices with a `key` replace each other and can
 * be cleared with `clearNotice(key)`; the others fade after `ttl` ms.
 */
export function notice(text, kind = "info", { key = null, ttl = 6000 } = {}) {
  const list = $("notices");
  let item = key ? list.querySelector(`[data-key="${CSS.escape(key)}"]`) : null;
  if (!item) {
    item = document.createElement("li");
    if (key) item.dataset.key = key;
    list.append(item);
  }
  item.textContent = text;
  item.dataset.kind = kind;
  if (!key && ttl) setTimeout(() => item.remove(), ttl);
  while (list.children.length > 4) list.firstElementChild.remove();
}

export function clearNotice(key) {
  $("notices").querySelector(`[data-key="${CSS.escape(key)}"]`)?.remove();
}

/** Show the query's image with its crosshair and inset; returns nothing. */
export function showQuery(bitmap, query, { correction = null } = {}) {
  $("stage-empty").hidden = true;
  $("target").hidden = false;
  drawTarget($("target"), bitmap, query.x, query.y);
  drawInset($("inset"), bitmap, query.x, query.y);
  const [r, g, b] = pixelColor(bitmap, query.x, query.y);
  $("pixel-swatch").style.background = `rgb(${r}, ${g}, ${b})`;
  $("q-pixel").textContent = `x ${query.x}, y ${query.y}`;
  $("q-image").textContent = `#${query.image_id} (${bitmap.width}×${bitmap.height})`;
  $("q-group").textContent = query.score == null ? query.group : `${query.group} · ${Number(query.score).toFixed(2)}`;
  $("q-id").textContent = `#${query.id}`;
  $("stage").dataset.queryId = String(query.id);
  const banner = $("correction-banner");
  banner.hidden = correction === null;
  if (correction !== null) {
    banner.textContent =
      `The trainer has already read your answer (${correction}). ` +
      "Pick the right class to store a correction, or press Esc to keep it.";
  }
}

/** No query on screen: say why in the image area. */
export function showEmpty(text) {
  $("target").hidden = true;
  $("stage-empty").hidden = false;
  $("stage-empty").textContent = text;
  $("stage").dataset.queryId = "";
  $("correction-banner").hidden = true;
  for (const id of ["q-pixel", "q-image", "q-group", "q-id"]) $(id).textContent = "–";
  const inset = $("inset");
  inset.getContext("2d").clearRect(0, 0, inset.width, inset.height);
  $("pixel-swatch").style.background = "transparent";
}

/** Budget of the run (GET /budget) as a bar and numbers. */
export function showBudget(budget) {
  const total = Math.max(1, budget.expected);
  const pct = (n) => `${Math.min(100, (100 * n) / total).toFixed(2)}%`;
  $("bar-answered").style.width = pct(budget.answered);
  $("bar-reserved").style.width = pct(budget.reserved);
  $("b-answered").textContent = budget.answered.toLocaleString();
  $("b-reserved").textContent = budget.reserved.toLocaleString();
  $("b-remaining").textContent = budget.remaining.toLocaleString();
  $("b-expected").textContent = budget.expected.toLocaleString();
  $("budget").setAttribute(
    "aria-label",
    `${budget.answered} of ${budget.expected} pixels answered, ${budget.reserved} waiting`,
  );
}

/** This annotator's numbers in the run (rate: per minute as the server measures it). */
export function showMine({ count, skipped, rate, unsaved }) {
  $("m-count").textContent = String(Math.max(0, count));
  $("m-skipped").textContent = String(Math.max(0, skipped));
  $("m-rate").textContent = rate ? rate.toFixed(1) : "–";
  $("m-unsaved").textContent = unsaved ? `${unsaved} saving…` : "all saved";
  $("m-unsaved").dataset.kind = unsaved ? "warn" : "ok";
}

/** Fill the run picker; returns the id chosen by default (stored, else newest active). */
export function fillRuns(select, runs, storedId) {
  select.replaceChildren();
  for (const run of runs) {
    const option = document.createElement("option");
    option.value = String(run.id);
    option.textContent = `${run.name} (#${run.id}, ${run.status})`;
    select.append(option);
  }
  const stored = runs.find((r) => String(r.id) === storedId && r.status === "active");
  const chosen = stored ?? runs.find((r) => r.status === "active") ?? runs[0];
  if (chosen) select.value = String(chosen.id);
  return chosen ?? null;
}

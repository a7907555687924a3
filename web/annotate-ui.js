// Annotator view: what is on screen apart from the palette (status, notices, progress, query).

import { drawInset, drawTarget, pixelColor } from "./draw.js";
import { regionPixels } from "./region.js";

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

const ZOOMS = [1, 2, 4, 8]; // the frame's zoom levels; 1 shows the whole frame
const ZOOM_KEY = "adamcu.zoom"; // the level the person chose, kept across queries and reloads
let zoomAt = Math.max(0, Math.min(ZOOMS.length - 1, Number(localStorage.getItem(ZOOM_KEY)) || 0));
let onScreen = null; // {bitmap, query} shown now: drawn again when the zoom changes
const FILL_KEY = "adamcu.regionFill"; // a region query's fill on or off, kept like the zoom
let regionFill = localStorage.getItem(FILL_KEY) !== "off";

/** Draw the query on screen again (the zoom or the region's fill changed). */
function redraw() {
  if (!onScreen) return;
  const { bitmap, query } = onScreen;
  drawTarget($("target"), bitmap, query.x, query.y, ZOOMS[zoomAt], query.region, regionFill);
}

/** Show or hide a region query's fill (its outline stays): the key / and the Fill button. */
export function toggleFill() {
  regionFill = !regionFill;
  localStorage.setItem(FILL_KEY, regionFill ? "on" : "off");
  $("fill-btn").setAttribute("aria-pressed", String(regionFill));
  redraw();
}

/** Why the model asks, in words, by the query's group (group and score in the tooltip). */
const GROUP_WORDS = {
  high: "The model is unsure here: one of the pixels it is least sure of.",
  medium: "The model is fairly unsure here.",
  random: "Picked at random, to check the model.",
  entropy: "The model is unsure here: its guess is spread over several classes.",
  ripu: "The model is unsure here, where several classes meet.",
  other: "Asked by the trainer.",
};

export function groupWords(group) {
  return GROUP_WORDS[group] ?? GROUP_WORDS.other;
}

/** Set the frame's zoom level (index into ZOOMS, clamped) and draw the frame again. */
export function zoomTo(index) {
  zoomAt = Math.max(0, Math.min(ZOOMS.length - 1, index));
  localStorage.setItem(ZOOM_KEY, String(zoomAt));
  const z = ZOOMS[zoomAt];
  const words = z === 1 ? "whole frame" : `${z}×`;
  $("zoom").value = String(zoomAt);
  $("zoom").setAttribute("aria-valuetext", words);
  $("zoom-value").textContent = words;
  $("zoom-out").disabled = zoomAt === 0;
  $("zoom-in").disabled = zoomAt === ZOOMS.length - 1;
  redraw();
}

export const zoomBy = (step) => zoomTo(zoomAt + step);

/** Wire the zoom control (buttons and slider); the keys are the annotator's (+ and -). */
export function installZoom() {
  $("zoom-in").addEventListener("click", () => zoomBy(1));
  $("zoom-out").addEventListener("click", () => zoomBy(-1));
  $("zoom").addEventListener("input", (e) => zoomTo(Number(e.target.value)));
  $("fill-btn").addEventListener("click", toggleFill);
  $("fill-btn").setAttribute("aria-pressed", String(regionFill));
  zoomTo(zoomAt);
}

/** Show the query: its image's name, the frame at the chosen zoom, the crop, why it is asked. */
export function showQuery(bitmap, query, { correction = null } = {}) {
  onScreen = { bitmap, query };
  $("stage-empty").hidden = true;
  $("target").hidden = false;
  redraw();
  drawInset($("inset"), bitmap, query.x, query.y);
  const [r, g, b] = pixelColor(bitmap, query.x, query.y);
  $("pixel-swatch").style.background = `rgb(${r}, ${g}, ${b})`;
  $("q-pixel").textContent = query.region
    ? `region of ${regionPixels(query.region).toLocaleString()} px around x ${query.x}, y ${query.y}`
    : `x ${query.x}, y ${query.y}`;
  $("fill-btn").hidden = !query.region;
  $("target").setAttribute("aria-label", query.region
    ? "The frame with the queried region outlined"
    : "The frame around the queried pixel, which is marked by a box");
  $("q-ask").textContent = query.region
    ? "Which class are most pixels of the outlined region?"
    : "Which class is the pixel in the centre of the box?";
  $("stage").dataset.kind = query.region ? "region" : "pixel";
  $("q-image").textContent = $("q-image").title = query.image_key ?? `image ${query.image_id}`;
  $("q-size").textContent = `${bitmap.width}×${bitmap.height} px`;
  $("q-why").textContent = groupWords(query.group);
  $("q-why").title = `group “${query.group}”, score ${Number(query.score).toFixed(2)}`;
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
  onScreen = null;
  $("target").hidden = true;
  $("stage-empty").hidden = false;
  $("stage-empty").textContent = text;
  $("stage").dataset.queryId = "";
  $("stage").dataset.kind = "";
  $("fill-btn").hidden = true;
  $("correction-banner").hidden = true;
  for (const id of ["q-pixel", "q-image", "q-why", "q-id"]) $(id).textContent = "–";
  $("q-size").textContent = "";
  const inset = $("inset");
  inset.getContext("2d").clearRect(0, 0, inset.width, inset.height);
  $("pixel-swatch").style.background = "transparent";
}

/** Why nothing is on screen: the run is not active, the budget is spent, or the queue empty. */
export function emptyText(run, budget, pollS) {
  if (run.status !== "active") return `Run “${run.name}” is ${run.status}: nothing to label.`;
  if (budget && budget.remaining <= 0 && budget.reserved === 0) {
    return `Budget spent: all ${budget.expected.toLocaleString()} pixels of this run are labeled. Thank you!`;
  }
  if (budget && budget.remaining <= 0) return "Budget spent; the last queries are with other annotators.";
  return `Queue empty: waiting for the trainer to ask more. Checking every ${pollS} s…`;
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

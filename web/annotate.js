// Annotator view: claim queries, show the pixel (or the region), answer by click or key, skip,
// undo.

import { describeError, withRetry } from "./api.js";
import * as ui from "./annotate-ui.js";
import { assignKeys, flash, renderPalette } from "./palette.js";
import { installKeys } from "./keys.js";
import { saveOnce } from "./outbox.js";
import { Progress, releaseOnClose } from "./progress.js";
import { ClaimQueue, ImageCache } from "./queue.js";
import { nextActiveRun, showRuns } from "./runs.js";
import { setupSignIn } from "./signin.js";

const $ = (id) => document.getElementById(id);
const LOW_WATER = 3; // claim more when fewer than this are waiting
const POLL_MS = 3000; // queue empty: ask again this often
const BUDGET_MS = 5000;
const PACE_MS = 10000; // the own counts and rate, from GET /pace
const RUN_KEY = "adamcu.run";

let api = null;
let me = null; // GET /me of the signed-in token
let auth = null;
let sess = null; // the session of the chosen run
const sessions = new Map(); // run id -> session

function newSession(run) {
  const entries = assignKeys(run.classes);
  const s = {
    run,
    entries,
    keymap: new Map(entries.filter((e) => e.key).map((e) => [e.key, e.cls.id])),
    names: new Map(run.classes.map((c) => [c.id, c.name])),
    queue: new ClaimQueue(api, run.id),
    images: new ImageCache(api),
    current: null, // {item, shownAt, correction: previous class name | null}
    done: [], // answers and skips of this session, newest last: {item, classId, correction}
    // (a skip: classId null)
    inflight: new Map(), // query id -> Promise<boolean saved>; at most one request per query
    claiming: false,
    busy: false,
    alive: true,
    pollTimer: null,
    timers: [],
  };
  s.progress = new Progress(api, run.id, me.id, {
    visible: () => sess === s && s.alive,
    unsaved: () => s.inflight.size,
    onUnauthorized: () => expire(),
  });
  return s;
}

// ---- showing queries -------------------------------------------------------------------

function present(item, correction = null) {
  const s = sess;
  s.current = { item, shownAt: null, correction };
  const id = item.query.image_id;
  const paint = (bitmap) => {
    if (s.current?.item !== item) return;
    ui.showQuery(bitmap, item.query, { correction });
    s.current.shownAt = performance.now();
  };
  const ready = s.images.ready(id);
  if (ready) paint(ready);
  else {
    ui.showEmpty("Loading image…");
    s.images.load(id).then(paint, (err) => ui.notice(`Image ${id}: ${describeError(err)}`, "error"));
  }
}

function showNext() {
  const s = sess;
  s.current = null;
  const item = s.queue.take();
  if (item) present(item);
  else ui.showEmpty(emptyText(s));
  refill();
}

function emptyText(s) {
  return ui.emptyText(s.run, s.progress.shownBudget, POLL_MS / 1000);
}

function held(s, id) {
  return s.current?.item.query.id === id || s.inflight.has(id);
}

async function refill() {
  const s = sess;
  if (s.claiming || !s.alive || s.queue.length >= LOW_WATER) return;
  clearTimeout(s.pollTimer);
  s.claiming = true;
  try {
    const added = await withRetry(() => s.queue.claim((id) => held(s, id)), {
      shouldStop: () => !s.alive,
      onRetry: (err, delay) =>
        ui.setStatus(`${describeError(err)} Retrying in ${Math.round(delay / 1000)} s…`, "warn"),
    });
    if (!s.alive) return;
    ui.setStatus("");
    for (const id of s.queue.imageIds()) s.images.load(id).catch(() => {});
    if (!added && !s.current) await s.progress.read("budget");
  } catch (err) {
    if (!s.alive) return;
    if (err.status === 401) return expire();
    if (err.code === "run_finished") return runEnded(s);
    else ui.setStatus(`Could not claim queries: ${describeError(err)}`, "error");
  } finally {
    s.claiming = false;
  }
  if (!s.alive) return;
  if (!s.current && s.queue.length) showNext();
  else if (!s.current) {
    ui.showEmpty(emptyText(s));
    s.pollTimer = setTimeout(refill, POLL_MS);
  }
}

// ---- answering -------------------------------------------------------------------------

function send(s, queryId, path, body, what) {
  const ok = saveOnce(api, s.inflight, queryId, path, body, {
    what,
    onUnauthorized: expire,
    onRunFinished: () => runEnded(s),
    onSettled: () => {
      s.progress.show();
      s.progress.soon();
    },
  });
  if (ok) s.progress.show();
  return ok;
}

/** The ms the person has spent on the query on screen since it was drawn. */
function leadTime(cur) {
  return Math.round(performance.now() - cur.shownAt);
}

function answer(classId) {
  const s = sess;
  const cur = s?.current;
  if (!cur || cur.shownAt === null || s.busy) return;
  const q = cur.item.query;
  const body = { class_id: classId, lead_time_ms: leadTime(cur) };
  if (cur.correction !== null) body.correction = true;
  if (!send(s, q.id, `/api/v1/queries/${q.id}/answer`, body, "answer")) return;
  const entry = { item: cur.item, classId, correction: cur.correction !== null };
  const saved = s.inflight.get(q.id);
  s.done.push(entry);
  if (!entry.correction) s.progress.answered(saved);
  saved.then((ok) => {
    if (!ok) s.done = s.done.filter((e) => e !== entry);
  });
  flash($("palette"), classId);
  showNext();
}

/** Skip the query on screen; `reason` "cant_tell": the person looked and cannot tell. */
function skip(reason = null) {
  const s = sess;
  const cur = s?.current;
  if (!cur || s.busy) return;
  if (cur.correction !== null) return cancelCorrection();
  const q = cur.item.query;
  // a skip is work too: its measured time counts in the budget's seconds, as an answer's
  // (none when it is skipped before it was drawn)
  const body = {};
  if (cur.shownAt !== null) body.lead_time_ms = leadTime(cur);
  if (reason) body.reason = reason;
  if (!send(s, q.id, `/api/v1/queries/${q.id}/skip`, body, "skip")) return;
  const entry = { item: cur.item, classId: null, correction: false };
  const saved = s.inflight.get(q.id);
  s.done.push(entry); // Backspace withdraws it (and its seconds) like an answer
  s.progress.skipped(saved);
  saved.then((ok) => {
    if (!ok) s.done = s.done.filter((e) => e !== entry);
  });
  showNext();
}

function cancelCorrection() {
  ui.notice("Kept your earlier answer.");
  showNext();
}

async function undo() {
  const s = sess;
  if (!s || s.busy) return;
  if (s.current?.correction != null) return cancelCorrection();
  const entry = s.done.pop();
  if (!entry) return ui.notice("Nothing to undo in this session.");
  const qid = entry.item.query.id;
  const what = entry.classId === null ? "skip" : "answer";
  s.busy = true;
  ui.setStatus(`Undoing the last ${what}…`);
  try {
    const saved = await (s.inflight.get(qid) ?? true);
    if (!saved) return ui.notice(`That ${what} was never saved; nothing to undo.`);
    const res = await withRetry(() => api.post(`/api/v1/queries/${qid}/undo`), {
      onRetry: (err, delay) => ui.setStatus(`Undo: ${describeError(err)} Retrying in ` +
        `${Math.round(delay / 1000)} s…`, "warn"),
    });
    if (!s.alive) return;
    if (s.current) s.queue.pushFront(s.current.item);
    const item = s.queue.fresh(res.query);
    if (entry.classId === null) {
      s.progress.unskipped();
      present(item);
      ui.notice("Skip undone. Label it, or skip it again.");
    } else if (res.reopened && !entry.correction) {
      s.progress.reopened();
      present(item);
      ui.notice(`Answer removed (${s.names.get(entry.classId)}). Label it again.`);
    } else {
      present(item, s.names.get(entry.classId) ?? `class ${entry.classId}`);
    }
  } catch (err) {
    s.done.push(entry);
    ui.notice(`Undo failed: ${describeError(err)}`, "error");
  } finally {
    s.busy = false;
    ui.setStatus("");
    s.progress.show();
    s.progress.soon();
  }
}

// ---- runs, keyboard, start -------------------------------------------------------------

/**
 * A claim, answer or skip was refused with run_finished: finishing the run released every
 * lease, so this session's queries are gone. Say so and move on to the next active run.
 */
async function runEnded(s) {
  if (s.ended) return;
  s.ended = true;
  const shown = sess === s;
  if (shown) pause();
  s.current = null;
  s.queue.items = [];
  sessions.delete(s.run.id);
  const ended = `Run “${s.run.name}” has ended; its remaining queries were released.`;
  ui.notice(ended, "warn", { key: "run-ended", ttl: 0 });
  if (!shown) return;
  const found = await nextActiveRun(api, s.run.id).catch((err) => {
    if (err.status === 401) expire();
    return { runs: [], next: null };
  });
  if (sess !== s) return; // signed out, or another run was picked meanwhile
  if (!found.next) return ui.showEmpty(`${ended} No other run is active.`);
  ui.notice(`${ended} Now labeling “${found.next.name}”.`, "warn", { key: "run-ended", ttl: 0 });
  showRuns($("run-select"), found.runs, found.next.id, pick);
  startRun(found.next);
}

/** Stop the current session's timers; its claimed queries stay with it. */
function pause() {
  if (sess) {
    sess.alive = false;
    clearTimeout(sess.pollTimer);
    sess.timers.forEach(clearInterval);
    sess.timers = [];
    if (sess.current) sess.queue.pushFront(sess.current.item);
    sess.current = null;
  }
}

/** The token stopped working: stop everything and ask for a token again. */
function expire() {
  pause();
  sess = null;
  sessions.clear();
  auth.expire();
}

/** Switch to `run`; a run left earlier keeps its claimed queries for when it comes back. */
function startRun(run) {
  pause();
  sess = sessions.get(run.id) ?? newSession(run);
  sessions.set(run.id, sess);
  const s = sess;
  s.run = run;
  s.alive = true;
  sessionStorage.setItem(RUN_KEY, String(run.id));
  renderPalette($("palette"), s.entries, answer);
  s.timers.push(setInterval(() => s.progress.read("budget"), BUDGET_MS));
  s.timers.push(setInterval(() => s.progress.read("pace"), PACE_MS));
  s.progress.read("budget");
  s.progress.read("pace");
  s.progress.show();
  showNext();
}

/** Ids of the queries this page holds but has not answered (each run's queue and screen). */
function heldIds() {
  const ids = [];
  for (const s of sessions.values()) {
    for (const it of s.queue.items) ids.push(it.query.id);
    const cur = s.current?.item.query.id;
    if (cur != null && !s.inflight.has(cur)) ids.push(cur);
  }
  return ids;
}

/** Back from the page cache: what the page held was released when it was hidden. */
function claimAfresh() {
  for (const s of sessions.values()) s.queue.items = [];
  if (sess) showNext();
}

async function loadRuns() {
  ui.setStatus("Loading runs…");
  const runs = await withRetry(() => api.get("/api/v1/runs"), {
    onRetry: (err, delay) =>
      ui.setStatus(`${describeError(err)} Retrying in ${Math.round(delay / 1000)} s…`, "warn"),
  });
  ui.setStatus("");
  const chosen = showRuns($("run-select"), runs, sessionStorage.getItem(RUN_KEY), pick);
  if (!chosen) return ui.showEmpty("No runs yet. A trainer or admin creates one.");
  startRun(chosen);
}

function pick(run) {
  startRun(run);
  $("work").focus();
}

function main() {
  const help = $("help");
  installKeys({
    commands: {
      " ": () => skip(),
      0: () => skip("cant_tell"),
      "+": () => ui.zoomBy(1),
      "=": () => ui.zoomBy(1),
      "-": () => ui.zoomBy(-1),
      "/": ui.toggleFill,
      Backspace: undo,
      "?": () => help.showModal(),
      Escape: () => sess.current?.correction != null && cancelCorrection(),
    },
    classFor: (key) => sess.keymap.get(key),
    answer,
    blocked: () => !sess || !document.body.classList.contains("signed-in") || help.open,
  });
  $("skip-btn").addEventListener("click", () => skip());
  $("cant-tell-btn").addEventListener("click", () => skip("cant_tell"));
  ui.installZoom();
  $("undo-btn").addEventListener("click", undo);
  $("help-btn").addEventListener("click", () => $("help").showModal());
  $("help-close").addEventListener("click", () => $("help").close());
  window.addEventListener("beforeunload", (e) => {
    if (sess?.inflight.size) e.preventDefault();
  });
  releaseOnClose(() => ({ token: api?.token, ids: heldIds() }), claimAfresh);
  auth = setupSignIn({
    roles: ["annotator", "admin"],
    onSignedIn: (client, who) => {
      api = client;
      me = who;
      $("work").focus();
      loadRuns().catch((err) => {
        if (err.status === 401) expire();
        else ui.setStatus(describeError(err), "error");
      });
    },
  });
}

main();

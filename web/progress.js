// The annotator's numbers: the budget box and "You: N answered" follow this page's own saves
// at once and are corrected by the server's next read; the own counts come from the server
// (GET /pace), so they survive a reload. A closing page gives its prefetched leases back.

import * as ui from "./annotate-ui.js";

const SOON_MS = 300; // after a save comes back, read the budget again this soon
const STALE_MS = 10000; // a read overlapped by saves is still taken when the last is this old

/**
 * Numbers as the server last said them plus this page's changes the server had not yet
 * counted when that read began. A change counts as the server's once its save came back
 * (`saved` resolves true) before a read starts; a failed save is simply dropped. A read that
 * a save overlapped (in flight when it began, or sent before it came back) is not taken:
 * whether the server counted that save is unknown, and taking it could count the save twice
 * (the server's number and the page's change). The read after the save comes back is clean;
 * a read is taken anyway once the numbers shown are STALE_MS old.
 */
export class Tally {
  constructor(onChange = () => {}) {
    this.base = null;
    this.deltas = [];
    this.settled = 0; // saves come back so far
    this.added = 0; // changes added so far
    this.baseSeq = -1;
    this.baseAt = 0;
    this.onChange = onChange;
  }

  /** A local change (e.g. `{answered: 1, reserved: -1}`), shown at once. */
  add(delta, saved) {
    const entry = { delta, settledAt: 0 };
    this.deltas.push(entry);
    this.added += 1;
    Promise.resolve(saved).then((ok) => {
      if (ok) entry.settledAt = ++this.settled;
      else this.deltas = this.deltas.filter((e) => e !== entry);
      this.onChange();
    });
    this.onChange();
  }

  /** Call when a read of the server starts; call what it returns with the numbers read. */
  reading() {
    const seq = this.settled;
    const added = this.added;
    const busy = this.deltas.some((e) => !e.settledAt); // a save not come back yet
    return (values) => {
      if (seq < this.baseSeq) return; // an older read came back late
      const overlapped = busy || this.added !== added;
      if (overlapped && this.base !== null && Date.now() - this.baseAt < STALE_MS) return;
      this.base = values;
      this.baseSeq = seq;
      this.baseAt = Date.now();
      this.deltas = this.deltas.filter((e) => !e.settledAt || e.settledAt > seq);
      this.onChange();
    };
  }

  get known() {
    return this.base !== null;
  }

  value(key) {
    let v = this.base?.[key] ?? 0;
    for (const e of this.deltas) v += e.delta[key] ?? 0;
    return v;
  }
}

/** The budget to show: the server's `/budget` plus the page's unsaved (or unseen) work. */
export function shownBudget(tally) {
  const b = tally.base;
  if (!b) return null;
  const answered = tally.value("answered");
  const reserved = Math.max(0, tally.value("reserved"));
  return { ...b, answered, reserved, remaining: b.expected - answered - reserved };
}

/** This token's run totals in a `/pace` answer (zeros before its first answer). */
export function mineIn(pace, meId) {
  const me = pace.annotators.find((a) => a.id === meId);
  return { answered: me?.answered ?? 0, skipped: me?.skipped ?? 0,
    rate: me?.answers_per_minute ?? 0 };
}

/** One run's progress on this page: the budget box and the "You:" line. */
export class Progress {
  constructor(api, runId, meId, { visible, unsaved, onUnauthorized }) {
    Object.assign(this, { api, runId, meId, visible, unsaved, onUnauthorized });
    this.budget = new Tally(() => this.show());
    this.mine = new Tally(() => this.show());
    this.rate = null;
    this.timer = null;
  }

  /** The page's own work, counted at once; `saved` resolves true once the server has it. */
  answered(saved) {
    this.mine.add({ answered: 1 }, saved);
    this.budget.add({ answered: 1, reserved: -1 }, saved);
  }

  skipped(saved) {
    this.mine.add({ skipped: 1 }, saved);
    this.budget.add({ reserved: -1, skipped: 1 }, saved);
  }

  /** An undo the server did (the answer removed, the query leased to us again). */
  reopened() {
    this.mine.add({ answered: -1 }, true);
    this.budget.add({ answered: -1, reserved: 1 }, true);
  }

  /** A skip the server withdrew (the query leased to us again, its pixels reserved). */
  unskipped() {
    this.mine.add({ skipped: -1 }, true);
    this.budget.add({ skipped: -1, reserved: 1 }, true);
  }

  /** The budget as shown (null before the first read). */
  get shownBudget() {
    return shownBudget(this.budget);
  }

  async read(what) {
    const tally = what === "pace" ? this.mine : this.budget;
    const done = tally.reading();
    try {
      const got = await this.api.get(`/api/v1/runs/${this.runId}/${what}`);
      if (what !== "pace") return done(got);
      const mine = mineIn(got, this.meId);
      this.rate = mine.rate;
      done(mine);
    } catch (err) {
      if (err.status === 401) this.onUnauthorized();
    }
  }

  /** Read the budget again shortly (a save came back). */
  soon() {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.read("budget"), SOON_MS);
  }

  show() {
    if (!this.visible()) return;
    const b = this.shownBudget;
    if (b) ui.showBudget(b);
    ui.showMine({ count: this.mine.value("answered"), skipped: this.mine.value("skipped"),
      rate: this.rate, unsaved: this.unsaved() });
  }
}

/**
 * When the page goes away, release the leases it holds but will not answer. `collect()`
 * returns `{token, ids}`. A keepalive fetch outlives the page and, unlike sendBeacon, sends
 * the Authorization header (docs/api.md).
 */
export function releaseOnClose(collect, onShowAgain) {
  window.addEventListener("pagehide", () => {
    const { token, ids } = collect();
    if (!token || !ids.length) return;
    fetch("/api/v1/queries/release", {
      method: "POST",
      keepalive: true,
      headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
      body: JSON.stringify({ ids: [...new Set(ids)].slice(0, 10000) }),
    }).catch(() => {}); // the leases expire by themselves anyway
  });
  // back from the page cache: what it held was released, so claim afresh
  window.addEventListener("pageshow", (e) => e.persisted && onShowAgain());
}

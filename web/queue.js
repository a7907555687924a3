// Claimed queries held by this browser, and the decoded images they need (prefetched).

import { withRetry } from "./api.js";

const MARGIN_MS = 5000; // a query whose lease ends sooner than this is not shown

/** Decoded images by id; `ready(id)` is synchronous so the next query draws at once. */
export class ImageCache {
  constructor(api, limit = 32) {
    this.api = api;
    this.limit = limit;
    this.entries = new Map(); // id -> {promise, bitmap}
  }

  ready(id) {
    return this.entries.get(id)?.bitmap ?? null;
  }

  load(id) {
    const known = this.entries.get(id);
    if (known) return known.promise;
    const entry = { bitmap: null, promise: null };
    entry.promise = withRetry(() => this.api.image(id), { maxDelay: 8000 }).then(
      (bitmap) => {
        entry.bitmap = bitmap;
        return bitmap;
      },
      (err) => {
        this.entries.delete(id); // let a later call try again
        throw err;
      },
    );
    this.entries.set(id, entry);
    this.evict();
    return entry.promise;
  }

  /** Drop the oldest decoded images past the limit (Map keeps insertion order). */
  evict() {
    for (const [id, entry] of this.entries) {
      if (this.entries.size <= this.limit) break;
      if (entry.bitmap) {
        entry.bitmap.close();
        this.entries.delete(id);
      }
    }
  }
}

/** An item is a claimed query plus the local time its lease ends. */
function itemFor(query, leaseSeconds) {
  return { query, expiresAt: Date.now() + leaseSeconds * 1000 };
}

export class ClaimQueue {
  constructor(api, runId, { batch = 5, leaseSeconds = 300 } = {}) {
    this.api = api;
    this.runId = runId;
    this.batch = batch;
    this.leaseSeconds = leaseSeconds;
    this.items = [];
  }

  get length() {
    return this.items.length;
  }

  /**
   * Claim up to `batch - length` more; queries for which `isHeld(id)` is true (shown now or
   * being saved) are not added twice. Returns how many were added.
   */
  async claim(isHeld) {
    const n = Math.max(1, this.batch - this.items.length);
    const body = { n, lease_seconds: this.leaseSeconds };
    const { queries } = await this.api.post(`/api/v1/runs/${this.runId}/claims`, body);
    const have = new Set(this.items.map((it) => it.query.id));
    let added = 0;
    for (const query of queries) {
      if (have.has(query.id) || isHeld(query.id)) continue;
      this.items.push(itemFor(query, this.leaseSeconds));
      added += 1;
    }
    return added;
  }

  /** Next item whose lease is still good; expired ones are dropped (they return to the pool). */
  take() {
    while (this.items.length) {
      const item = this.items.shift();
      if (item.expiresAt - Date.now() > MARGIN_MS) return item;
    }
    return null;
  }

  pushFront(item) {
    this.items.unshift(item);
  }

  /** A query the server leased to us again (undo, with its default lease): a fresh item. */
  fresh(query) {
    return itemFor(query, Math.min(this.leaseSeconds, 100));
  }

  imageIds() {
    return this.items.map((it) => it.query.image_id);
  }
}

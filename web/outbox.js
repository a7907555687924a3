// Background saves of answers and skips: one request per query at a time, retried while the
// server is down, and never applied twice.

import { describeError, withRetry } from "./api.js";
import { clearNotice, notice } from "./annotate-ui.js";

/**
 * POST `body` to `path` for `queryId` unless a save of that query is already in flight.
 * `inflight` (Map query id -> Promise<boolean>) is the per-query in-flight flag; the promise
 * resolves true once the server has it. A retry answered 409 means an earlier attempt got
 * through (the response was lost), so it counts as saved rather than being sent again.
 * Returns false when a save of that query is already running.
 */
export function saveOnce(
  api,
  inflight,
  queryId,
  path,
  body,
  { what, onSettled, onUnauthorized, onRunFinished = () => {} },
) {
  if (inflight.has(queryId)) return false;
  let attempts = 0;
  const key = `save-${queryId}`;
  const post = async () => {
    attempts += 1;
    try {
      return await api.post(path, body);
    } catch (err) {
      if (attempts > 1 && err.status === 409 && err.code !== "run_finished") return null;
      throw err;
    }
  };
  const promise = withRetry(post, {
    onRetry: (err, delay) =>
      notice(`Saving the ${what} of query ${queryId}: ${describeError(err)} Retrying in ` +
        `${Math.round(delay / 1000)} s.`, "warn", { key }),
  })
    .then(() => {
      clearNotice(key);
      return true;
    })
    .catch((err) => {
      if (err.code === "query_withdrawn") {
        clearNotice(key); // the trainer took it back while it waited here: nothing is lost
        notice(`Query ${queryId} was withdrawn by the trainer; your ${what} is not needed.`);
        return false;
      }
      notice(`The ${what} of query ${queryId} was not saved: ${describeError(err)}`, "error",
        { key, ttl: 0 });
      if (err.status === 401) onUnauthorized();
      if (err.code === "run_finished") onRunFinished();
      return false;
    })
    .finally(() => {
      inflight.delete(queryId);
      onSettled();
    });
  inflight.set(queryId, promise);
  return true;
}

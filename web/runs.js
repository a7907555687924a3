// Runs in the annotator view: the run picker, and the next active run when one ends.

import { fillRuns } from "./annotate-ui.js";

/** Fill `select` with `runs` (`preferId` chosen if active); `onPick(run)` on a change. */
export function showRuns(select, runs, preferId, onPick) {
  const chosen = fillRuns(select, runs, preferId == null ? null : String(preferId));
  select.onchange = () => {
    const run = runs.find((r) => String(r.id) === select.value);
    if (run) onPick(run);
  };
  return chosen;
}

/** `{runs, next}`: every run, and the newest active one other than `endedId` (or null). */
export async function nextActiveRun(api, endedId) {
  const runs = await api.get("/api/v1/runs");
  return { runs, next: runs.find((r) => r.status === "active" && r.id !== endedId) ?? null };
}

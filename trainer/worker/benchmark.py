"""``adamcu-worker --mode benchmark`` and ``--mode human``: the benchmark's fixed schedule
(:func:`trainer.loop.adapt.adapt`) with the labeling service as its oracle and budget.

``benchmark`` waits for the answers of each query batch; ``human`` posts every batch at once
and merges the answers as they come (for simulated oracles that answer as fast as asked). The
run is created or reopened and checkpointed as :mod:`trainer.worker.run` does it for every
mode; after a restart the label bank is rebuilt from the server's record.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from client.api import ServiceClient
from trainer.config import TrainConfig
from trainer.learning.labelbank import LabelBank
from trainer.loop.adapt import AdaptHooks, adapt
from trainer.loop.bundles import LoopState, Oracle
from trainer.loop.schedule import new_loop_state
from trainer.loop.train import evaluate, load_data, pick_device, pretrain
from trainer.worker.link import ServiceLink
from trainer.worker.resume import check_resume
from trainer.worker.run import (
    Place,
    WorkerOptions,
    open_run,
    post_metrics,
    restore,
    save_checkpoint,
)

log = logging.getLogger("adamcu.worker")


def run_worker(cfg: TrainConfig, opts: WorkerOptions, progress: str = "auto") -> dict[str, Any]:
    """Run (or resume) one run against the service; returns a summary. Pixel queries under
    a pixel budget only: region queries and a seconds budget run in session mode."""
    if cfg.query_kind != "pixels" or cfg.budget_seconds_per_image > 0:
        raise ValueError(
            f"--mode {opts.mode} asks pixels under a pixel budget; query_kind "
            f"{cfg.query_kind!r} / budget_seconds_per_image {cfg.budget_seconds_per_image} "
            "run in --mode session (or in process: adamcu bench)"
        )
    device = pick_device(cfg.device)
    data = load_data(cfg, target_labels=cfg.selection == "all")  # people may label target
    opts.checkpoint_dir.mkdir(parents=True, exist_ok=True)
    check_resume(opts.checkpoint_dir, cfg.to_dict(), opts.new_run)
    ckpt_path = opts.checkpoint_dir / "checkpoint.pt"
    client = ServiceClient(opts.server, opts.token)
    model = pretrain(cfg, data, device, opts.checkpoint_dir / "cache", progress)
    run, ckpt = open_run(client, cfg, data, opts, device)
    run_id = int(run["id"])
    state = new_loop_state(cfg, int(run["budget_total"]), data.num_classes, len(data.target.ids))
    n, _, h, w = data.target.images.shape
    bank = LabelBank(n, h, w)
    link = ServiceLink(client, run_id, data.target.ids, opts.mode, opts.answer_timeout)
    if ckpt is not None:
        start = restore(ckpt, model, state)
        before = float(json.loads((opts.checkpoint_dir / "run.json").read_text())["before"])
        log.info("resuming run %d at iteration %d", run_id, start)
        link.rebuild(bank)
    else:
        start, before = 0, evaluate(model, data.test, data.num_classes, device).miou()
        (opts.checkpoint_dir / "run.json").write_text(
            json.dumps({"run_id": run_id, "before": before})
        )

    def on_step(it: int, st: LoopState) -> None:
        link.sync(bank)
        if (it + 1) % opts.checkpoint_every == 0:
            save_checkpoint(ckpt_path, model, st, Place(it + 1, run_id), cfg, data=data, bank=bank)

    oracle = Oracle(link.ask, link.spent, int(run["budget_total"]))  # M_e: the server's
    on_eval = lambda point: post_metrics(client, run_id, point)  # noqa: E731
    hooks = AdaptHooks(start, state, on_eval, on_step, progress)
    result = adapt(model, cfg, data, oracle, bank, device, hooks)
    end = Place(cfg.adapt_iterations(n), run_id)
    save_checkpoint(ckpt_path, model, state, end, cfg, data=data, bank=bank)
    if opts.mode == "benchmark":
        # queries still in flight (e.g. posted by a killed predecessor and not waited for
        # since the restart): wait for their answers so the bank ends equal to the record
        link.drain(opts.answer_timeout)
    link.sync(bank)
    after = evaluate(model, data.test, data.num_classes, device).miou()
    client.finish_run(run_id)
    summary = {"run_id": run_id, "strategy": cfg.strategy, "test_miou_before": before}
    summary |= {"test_miou_after": after, "best_val_miou": result.best_val}
    summary |= {"labeled_pixels": bank.num_labeled, "budget": client.budget(run_id)}
    (opts.checkpoint_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary

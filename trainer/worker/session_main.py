"""Start, resume and end a session (``adamcu-worker --mode session``), and its CLI flags.

The setup is every mode's (``trainer.worker.run``): the config check against the checkpoint
(``--new-run`` to start afresh), the cached pre-training, the run on the server. The loop is
:class:`trainer.worker.session.Session`. At the end the best weights (by target-val) are
loaded, evaluated on target-test, the run is finished (unless an admin did) and
``summary.json`` is written next to ``checkpoint.pt``, ``best.pt`` and ``session.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from typing import Any

import torch

from client.api import ServiceClient
from trainer.config import TrainConfig
from trainer.loop.schedule import new_loop_state
from trainer.loop.train import evaluate, load_data, pick_device, pretrain
from trainer.selection.policy import make_policy
from trainer.worker.resume import check_resume
from trainer.worker.rounds import SessionOptions
from trainer.worker.run import WorkerOptions, open_run
from trainer.worker.session import Session

log = logging.getLogger("adamcu.worker")

# flag -> (SessionOptions field, type, help)
FLAGS = {
    "--queue-minutes": ("queue_minutes", float, "minutes of work per active annotator queued"),
    "--queue-floor": ("queue_floor", int, "queries queued at least (and before any rate)"),
    "--queue-ceiling": ("queue_ceiling", int, "queries queued at most"),
    "--stale-minutes": ("stale_minutes", float, "withdraw a query nobody claimed this long"),
    "--rescore-seconds": ("rescore_seconds", float, "score pending queries again every ..."),
    "--merge-every": ("merge_every", int, "iterations between answer merges"),
    "--eval-seconds": ("eval_seconds", float, "target-val evaluation every ..."),
    "--plateau-minutes": (
        "plateau_minutes",
        float,
        "end this long after the last target-val gain of more than --plateau-gain points",
    ),
    "--plateau-gain": (
        "plateau_gain",
        float,
        "mIoU points (of 100) a target-val gain must exceed to restart the plateau clock",
    ),
    "--round-seconds": ("round_seconds", float, "check the queue against the pace every ..."),
    "--weight-average": (
        "weight_average",
        float,
        "evaluate and report the weights' moving average, this decay a step (e.g. 0.998; 0: off)",
    ),
    "--weight-average-warmup": (
        "weight_average_warmup",
        int,
        "1: the average's first 1/(1 - decay) steps are their running mean; 0: it starts at "
        "the pre-trained weights",
    ),
    "--cooldown-iterations": (
        "cooldown_iterations",
        int,
        "after the plateau, decay the learning rate to 0 over this many iterations (0: off)",
    ),
}


def add_session_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("session mode (--mode session)")
    for flag, (_, kind, text) in FLAGS.items():
        group.add_argument(flag, type=kind, help=text)


def session_values(args: argparse.Namespace) -> dict[str, Any]:
    """The session flags given, as SessionOptions fields."""
    return {f: getattr(args, f) for f, _, _ in FLAGS.values() if getattr(args, f) is not None}


def run_session(cfg: TrainConfig, opts: WorkerOptions, client: Any = None) -> dict[str, Any]:
    """Run (or resume) a session against the service; returns its summary. ``client``: a
    ``ServiceClient`` (by default, to ``opts.server``) or anything with its methods; the pace
    options are ``opts.session`` (SessionOptions fields)."""
    started = time.monotonic()
    sopts = SessionOptions(**opts.session)
    device = pick_device(cfg.device)
    data = load_data(cfg, target_labels=cfg.selection == "all")  # people label target-train
    n = len(data.target.ids)  # the run's policy must exist (e.g. regions need seconds): now,
    make_policy(cfg, new_loop_state(cfg, 1, data.num_classes, n).sampler, n)  # before any run
    opts.checkpoint_dir.mkdir(parents=True, exist_ok=True)
    check_resume(opts.checkpoint_dir, cfg.to_dict(), opts.new_run)
    client = client or ServiceClient(opts.server, opts.token)
    model = pretrain(cfg, data, device, opts.checkpoint_dir / "cache", "auto")
    run, ckpt = open_run(client, cfg, data, opts, device)
    session = Session(cfg, opts, sopts, data, model, device, client, run)
    run_file = opts.checkpoint_dir / "run.json"
    if ckpt is not None:
        session.resume(ckpt)
        before = float(json.loads(run_file.read_text())["before"])
        log.info("resuming session %d at iteration %d", session.run_id, session.learner.iteration)
    else:
        before = evaluate(model, data.test, data.num_classes, device).miou()
        run_file.write_text(json.dumps({"run_id": session.run_id, "before": before}))
        session.save()  # a kill from here on resumes this run, never starts another
    try:
        ended = session.run()
    finally:
        session.save()
        session.events.close()
    iteration = session.learner.iteration
    log.info("session %d ended (%s) at iteration %d", session.run_id, ended, iteration)
    return finish(session, before, time.monotonic() - started)


def finish(session: Session, before: float, seconds: float) -> dict[str, Any]:
    """Best weights on target-test, the run finished, the summary written."""
    session.link.sync(session.bank, session.on_answers)
    learner, client = session.learner, session.client
    learner.model.load_state_dict(learner.best_state)
    data = learner.data
    after = evaluate(learner.model, data.test, data.num_classes, learner.device).miou()
    if session.ended != "admin":
        client.finish_run(session.run_id)
    s = {"run_id": session.run_id, "strategy": session.cfg.strategy, "mode": "session"}
    s |= {"ended": session.ended, "test_miou_before": before, "test_miou_after": after}
    s |= {"best_val_miou": learner.best_val, "best_iteration": learner.best_iteration}
    s |= {"model_labeled_pixels": learner.best_labels}  # the labels the reported model holds
    s |= {"labeled_pixels": session.bank.num_labeled, "labels_trained": len(learner.fresh.trained)}
    s |= {"iterations": learner.iteration, "seconds": round(seconds, 1)}
    s |= {"budget": client.budget(session.run_id), "latency": learner.fresh.summary()}
    s |= session.keeper.counts
    path = learner.folder / "summary.json"
    path.write_text(json.dumps(s, indent=1))
    torch.save(session.bank.state_dict(), learner.folder / "bank.pt")
    return s

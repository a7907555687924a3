"""``adamcu-worker``: the ADA-MCU loop against the labeling service; this module is its CLI,
which picks the mode.

The worker registers its run and target images, reads the budget from the server to drive
Algorithm 1, posts queries, and either waits for their answers (``--mode benchmark``) or trains
on and merges answers as they come (``--mode human``: every query posted at once, for simulated
oracles that answer as fast as asked), both in :mod:`trainer.worker.benchmark`. ``--mode
session`` is for people: queries in small rounds paced by the answer rate, training until the
budget is answered and target-val stops improving (:mod:`trainer.worker.session_main`). It posts
metrics after each evaluation and keeps a checkpoint; after a restart it rebuilds its label bank
from the server's record of queries and answers, so it never asks for a pixel twice and loses no
label.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from client.logs import setup_logging
from trainer.config import TrainConfig, load_config
from trainer.strategies import configure
from trainer.worker.benchmark import run_worker
from trainer.worker.resume import ResumeRefused, env_flag
from trainer.worker.run import WorkerOptions
from trainer.worker.session_main import add_session_args, run_session, session_values

log = logging.getLogger("adamcu.worker")
STORE_HELP = (
    "the server's image store holds --data as this dataset: register the target images by "
    "path and sha256 instead of uploading them"
)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="adamcu-worker", description=__doc__)
    p.add_argument("--server", default=os.environ.get("ADAMCU_SERVER", "http://127.0.0.1:8000"))
    p.add_argument(  # compose: an empty trainer token means the admin token
        "--token",
        default=os.environ.get("ADAMCU_TRAINER_TOKEN") or os.environ.get("ADAMCU_ADMIN_TOKEN"),
        help="trainer token; default $ADAMCU_TRAINER_TOKEN, else $ADAMCU_ADMIN_TOKEN",
    )
    p.add_argument("--config", help="TOML/JSON file of TrainConfig fields")
    p.add_argument("--data", default=os.environ.get("ADAMCU_DATA"))
    p.add_argument("--strategy")
    p.add_argument("--budget", type=float)
    p.add_argument(
        "--query-kind",
        choices=("pixels", "regions", "both"),
        help="ask pixels, superpixel regions (their dominant class in one click) or both; "
        "regions need --budget-seconds-per-image (session mode)",
    )
    p.add_argument(
        "--budget-seconds-per-image",
        type=float,
        help="a budget in annotator seconds, this many per target image, registered with the "
        "run beside its pixel budget (0: pixels only)",
    )
    p.add_argument("--passes", type=float, help="adaptation passes over target-train")
    p.add_argument("--query-passes", type=float, help="queries in the first N passes only")
    p.add_argument("--iterations", type=int, help="exactly this many iterations (tiny runs)")
    p.add_argument("--pretrain-iterations", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--eval-every", type=int)
    p.add_argument("--mode", choices=("benchmark", "human", "session"), default="benchmark")
    p.add_argument(
        "--checkpoint-dir", default=os.environ.get("ADAMCU_CHECKPOINTS", "outputs/worker")
    )
    p.add_argument("--checkpoint-every", type=int, default=50)
    p.add_argument("--answer-timeout", type=float, default=120.0)
    p.add_argument("--name", default="")
    p.add_argument("--verbose", action="store_true", help="DEBUG logs, httpx's requests included")
    p.add_argument("--new-run", action="store_true", default=env_flag("ADAMCU_NEW_RUN"))
    p.add_argument(  # the server's store holds --data as this dataset: register paths, not pixels
        "--store-dataset", default=os.environ.get("ADAMCU_STORE_DATASET", ""), help=STORE_HELP
    )
    add_session_args(p)
    return p


def parse_args(argv: Sequence[str] | None) -> tuple[TrainConfig, WorkerOptions]:
    p = _parser()
    a = p.parse_args(argv)
    if not a.token:
        p.error("a trainer token is needed: pass --token or set ADAMCU_TRAINER_TOKEN")
    base = load_config(a.config) if a.config else TrainConfig()
    changes: dict[str, Any] = {
        k: v
        for k, v in {
            "data_root": a.data,
            "budget_rate": a.budget,
            "query_kind": a.query_kind,
            "budget_seconds_per_image": a.budget_seconds_per_image,
            "passes": a.passes,
            "query_passes": a.query_passes,
            "iterations": a.iterations,
            "pretrain_iterations": a.pretrain_iterations,
            "seed": a.seed,
            "eval_every": a.eval_every,
        }.items()
        if v is not None
    }
    cfg = configure(base, a.strategy or base.strategy, **changes)
    opts = WorkerOptions(
        server=a.server,
        token=a.token,
        mode=a.mode,
        checkpoint_dir=Path(a.checkpoint_dir),
        checkpoint_every=a.checkpoint_every,
        answer_timeout=a.answer_timeout,
        run_name=a.name,
        verbose=a.verbose,
        new_run=a.new_run,
        store_dataset=a.store_dataset,
        session=session_values(a),
    )
    return cfg, opts


def main(argv: Sequence[str] | None = None) -> int:
    cfg, opts = parse_args(argv)
    setup_logging(opts.verbose)
    log.info("config %s", json.dumps(cfg.to_dict()))
    try:
        run = run_session if opts.mode == "session" else run_worker
        summary = run(cfg, opts)
    except (FileNotFoundError, ResumeRefused, ValueError) as exc:
        print(f"adamcu-worker: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({k: v for k, v in summary.items() if k != "budget"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

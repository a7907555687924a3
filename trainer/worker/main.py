"""``adamcu-worker``: the ADA-MCU loop against the labeling service.

It registers its run and target images, reads the budget from the server to drive Algorithm 1,
posts queries, and either waits for their answers (``--mode benchmark``) or trains on and merges
answers as they come (``--mode human``: every query posted at once, for simulated oracles that
answer as fast as asked). ``--mode session`` is for people: queries in small rounds paced by the
answer rate, training until the budget is answered and target-val stops improving
(``trainer.worker.session``). It posts metrics after each evaluation and keeps a
checkpoint; after a restart it rebuilds its label bank from the server's record of queries and
answers, so it never asks for a pixel twice and loses no label.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import torch

from client.api import ServiceClient
from client.logs import setup_logging
from trainer.config import TrainConfig, load_config
from trainer.learning.labelbank import LabelBank
from trainer.loop.adapt import AdaptHooks, adapt
from trainer.loop.bundles import LoopState, Oracle
from trainer.loop.checkpoint import data_classes, payload, save
from trainer.loop.train import Data, evaluate, load_data, new_loop_state, pick_device, pretrain
from trainer.strategies import configure
from trainer.worker.images import register_target_images
from trainer.worker.link import ServiceLink
from trainer.worker.resume import ResumeRefused, check_resume, env_flag

log = logging.getLogger("adamcu.worker")
STORE_HELP = (
    "the server's image store holds --data as this dataset: register the target images by "
    "path and sha256 instead of uploading them"
)


@dataclass
class WorkerOptions:
    server: str
    token: str
    mode: str = "benchmark"  # benchmark: wait for answers; human: merge as they come
    checkpoint_dir: Path = Path("outputs/worker")
    checkpoint_every: int = 50
    answer_timeout: float = 120.0
    run_name: str = ""
    verbose: bool = False
    new_run: bool = False  # move an old checkpoint aside instead of resuming it
    store_dataset: str = ""  # the server's store holds --data as this dataset: register by path
    session: dict[str, Any] = field(default_factory=dict)  # SessionOptions fields (session mode)


def create_run(
    client: ServiceClient, cfg: TrainConfig, data: Data, name: str, store_dataset: str = ""
) -> dict:
    """Create the run and register its target images; returns the server's RunOut."""
    classes = [
        {"id": i, "name": n, "color": list(c)}
        for i, (n, c) in enumerate(zip(data.class_names, data.class_colors, strict=True))
    ]
    run = client.create_run(
        name=name or f"{cfg.strategy}-seed{cfg.seed}",
        classes=classes,
        target_pixels=data.target_pixels,
        budget_rate=cfg.budget_rate,
        strategy=cfg.strategy,
        config=cfg.to_dict(),
    )
    register_target_images(client, run["id"], cfg, data, store_dataset)
    return run


def open_run(
    client: ServiceClient, cfg: TrainConfig, data: Data, opts: WorkerOptions, device: torch.device
) -> tuple[dict, dict | None]:
    """The run to work on (the server's RunOut, which owns the budget M_e) and the checkpoint
    to resume from (None: a new run was created)."""
    ckpt_path = opts.checkpoint_dir / "checkpoint.pt"
    if ckpt_path.is_file():
        ckpt = torch.load(ckpt_path, map_location=device, weights_only=False)
        return client.get_run(int(ckpt["run_id"])), ckpt
    return create_run(client, cfg, data, opts.run_name, opts.store_dataset), None


class Place(NamedTuple):
    """Where a run is: the iteration to resume at and its run on the server."""

    iteration: int
    run_id: int


def save_checkpoint(
    path: Path,
    model: torch.nn.Module,
    state: LoopState,
    place: Place,
    cfg: TrainConfig,
    *,
    data: Data,
    bank: LabelBank,
    extra: dict[str, Any] | None = None,
) -> None:
    """The one checkpoint format (trainer/loop/checkpoint.py) plus the resume state (and ``extra``,
    e.g. the session mode's best target-val)."""
    resume = {"iteration": place.iteration, "run_id": place.run_id, "dccm": state.dccm.cpu()}
    resume |= {"thresholds": vars(state.sampler.state), "calibrated": state.calibrated}
    size = data.target.images.shape[-2:]
    save(path, payload(cfg, model, data_classes(data), size, bank, **resume, **(extra or {})))


def restore(ckpt: dict, model: torch.nn.Module, state: LoopState) -> int:
    """Load a checkpoint into the model and the loop state; returns the iteration to resume at."""
    model.load_state_dict(ckpt["model"])
    state.dccm, state.calibrated = ckpt["dccm"], ckpt["calibrated"]
    vars(state.sampler.state).update(ckpt["thresholds"])
    return int(ckpt["iteration"])


def post_metrics(client: ServiceClient, run_id: int, point: dict[str, Any]) -> None:
    """Post one evaluation point; once more if the response was lost (see below)."""

    def post() -> None:
        client.post_metrics(
            run_id,
            point["iteration"],
            point["miou"],
            labeled_pixels=point["labeled_pixels"],
            per_class_iou=[v if v is not None else 0.0 for v in point["per_class_iou"]],
        )

    try:
        post()
    except httpx.TransportError as exc:
        # the response was lost (e.g. the server was killed mid-request): the point may be
        # stored; posting it again risks a second row for this iteration, which readers
        # tolerate, while dying here would lose the whole run's progress
        log.warning(
            "metrics post at iteration %d lost its response (%s); posting again",
            point["iteration"],
            exc,
        )
        post()


def run_worker(cfg: TrainConfig, opts: WorkerOptions, progress: str = "auto") -> dict[str, Any]:
    """Run (or resume) one run against the service; returns a summary."""
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


def _parser() -> argparse.ArgumentParser:
    from trainer.worker.session_main import add_session_args  # it imports this module

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
    from trainer.worker.session_main import session_values

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
        if opts.mode == "session":
            from trainer.worker.session_main import run_session

            summary = run_session(cfg, opts)
        else:
            summary = run_worker(cfg, opts)
    except (FileNotFoundError, ResumeRefused, ValueError) as exc:
        print(f"adamcu-worker: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({k: v for k, v in summary.items() if k != "budget"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

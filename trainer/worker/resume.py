"""Whether the worker may resume the checkpoint in its folder.

A checkpoint belongs to one run on the server, made with one config. Started again with another
config (a new ``WORKER_STRATEGY`` or budget in compose), the worker refuses to resume it rather
than go on silently with the old run; ``--new-run`` (or ``ADAMCU_NEW_RUN=1``) moves the old
files aside, into ``<checkpoint dir>/previous/<time>/``, and starts a fresh run. Nothing is
deleted.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from trainer.loop.checkpoint import read

log = logging.getLogger("adamcu.worker")

FILES = ("checkpoint.pt", "run.json", "summary.json", "best.pt", "session.jsonl")
# fields that change how the process runs, not what the run is
NOT_THE_RUN = {"device", "data_root", "source_root", "data_cache", "threads", "eval_every"}


class ResumeRefused(Exception):
    pass


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def differences(saved: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """``key: saved -> wanted`` for each field of the run that differs."""
    keys = (set(saved) | set(wanted)) - NOT_THE_RUN
    norm = {k: json.loads(json.dumps(v)) for k, v in wanted.items()}  # tuples as lists
    return [
        f"{k}: {saved.get(k)!r} -> {norm.get(k)!r}"
        for k in sorted(keys)
        if saved.get(k) != norm.get(k)
    ]


def move_aside(checkpoint_dir: Path) -> Path | None:
    present = [checkpoint_dir / f for f in FILES if (checkpoint_dir / f).exists()]
    if not present:
        return None
    target = checkpoint_dir / "previous" / time.strftime("%Y%m%d-%H%M%S")
    target.mkdir(parents=True, exist_ok=True)
    for path in present:
        os.replace(path, target / path.name)
    return target


def check_resume(checkpoint_dir: Path, config: dict[str, Any], new_run: bool) -> None:
    """Before the worker loads ``checkpoint_dir/checkpoint.pt``: refuse a checkpoint of another
    config (:class:`ResumeRefused` names the fields and the fix), or with ``new_run`` move the
    old run's files aside so that the worker creates a new run."""
    ckpt = checkpoint_dir / "checkpoint.pt"
    if new_run:
        moved = move_aside(checkpoint_dir)
        if moved is not None:
            log.info("--new-run: the previous run's files are in %s", moved)
        return
    if not ckpt.is_file():
        return
    saved = read(ckpt).get("config", {})
    diff = differences(saved, config)
    if diff:
        raise ResumeRefused(
            f"{ckpt} belongs to a run with another config ({'; '.join(diff)}). Start a new "
            "run with --new-run (or ADAMCU_NEW_RUN=1; the old files are moved aside), or "
            "point --checkpoint-dir elsewhere, or go back to the old settings to resume it."
        )

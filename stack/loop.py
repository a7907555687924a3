"""``adamcu loop``: the whole labeling loop on one machine, as real processes.

It migrates a database (SQLite by default; PostgreSQL when ``--database-url`` says so), starts
the server (embedded queue, or Redis Streams with ``--redis-url``), creates tokens, starts the
trainer worker and simulated oracles, waits for the run to finish, and prints budget spent and
mIoU before and after. Every process is an ordinary console entry that a deployment starts on
its own: ``adamcu-server``, ``adamcu-worker``, ``adamcu-oracle``.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from client.logs import setup_logging
from stack.oracles import add_cost_model_arguments, cost_model_options, oracle_args
from stack.processes import ProgressTail, child_env, free_port, make_token, stop_all, wait_ready
from stack.report import print_summary, say, session_lines
from stack.watch import (
    ERROR_LOG,
    STALL_TIMEOUT,
    Deadline,
    LoopError,
    add_deadline_arguments,
    answers_tick,
    explain,
    last_line,
    wait_for_run,
    wait_for_worker,
    worker_exited,
)
from trainer.bench.presets import PRESETS
from trainer.config import TrainConfig
from trainer.data.safety import UnsafeFolderError, claim_output_folder, is_user_dataset
from trainer.data.synth import generate_benchmark
from trainer.strategies import STRATEGIES

# The main job's data: the quick benchmark's source and evaluation splits, 48 target-train
# images, so that the default schedule (16 passes, every label revisited >= 10 times) fits in a
# few CPU minutes.
LOOP_COUNTS = {**PRESETS["quick"].counts, "target-train": 48}
# seconds an oracle's empty claim waits on the server for new queries: the worker's queries
# are claimed as soon as they are stored, not at the oracle's next poll (0.5 s apart)
ORACLE_WAIT_SECONDS = 2.0
OUT_MARKER = ".adamcu-loop"  # in --out: a folder the loop made, whose old outputs it may clear


@dataclass
class LoopOptions:
    out: Path = Path("outputs/loop")
    data: Path = Path("data/loop")
    counts: dict[str, int] = field(default_factory=lambda: dict(LOOP_COUNTS))
    strategy: str = "full"
    budget: float = 0.017
    passes: float | None = None  # None: the trainer's default schedule (TrainConfig.passes)
    query_passes: float | None = None  # None: the trainer's default
    iterations: int = 0  # > 0: exactly this many adaptation iterations (tiny runs)
    pretrain_iterations: int = 800
    eval_every: int = 0  # 0: once per pass
    oracles: int = 2
    # the simulated oracles' lead times from the cost model (adamcu-oracle --cost-model), with
    # this spread; False: the wall time
    cost_model: bool = False
    cost_spread: float = 0.0
    seed: int = 0
    mode: str = "benchmark"  # the worker's: wait for answers, or train on them as they come
    database_url: str | None = None
    redis_url: str | None = None
    stall_timeout: float = STALL_TIMEOUT  # seconds without progress (stack.watch); 0: none
    timeout: float = 0.0  # a wall-clock limit in seconds; 0: none
    port: int = 0  # the server's; 0: a free one


def _python() -> str:
    return sys.executable


def start_server(
    opts: LoopOptions, env: dict[str, str], log_dir: Path
) -> tuple[subprocess.Popen, str]:
    """Migrate the database, then start ``adamcu-server`` on ``opts.port`` (0: a free one).
    Both write to ``server.log``; a failure is a :class:`LoopError` naming it."""
    path = log_dir / "server.log"
    log = open(path, "w")  # noqa: SIM115 - closed with the process
    migrate = [_python(), "-m", "server.migrate"]
    if subprocess.run(migrate, env=env, stdout=log, stderr=subprocess.STDOUT).returncode:
        log.close()
        raise LoopError(
            f"the database migration failed; {path} says why (last line: {last_line(path)!r})"
        )
    port = opts.port or free_port()
    proc = subprocess.Popen(
        [_python(), "-m", "server.main", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, proc)
    except (RuntimeError, TimeoutError) as exc:
        stop_all([proc])
        raise LoopError(f"{exc}; {path} ends with {last_line(path)!r}") from None
    return proc, url


def _loop_env(opts: LoopOptions, admin: str) -> dict[str, str]:
    """The environment of the loop's processes: the server's settings and the store."""
    env = {
        **os.environ,
        "ADAMCU_ADMIN_TOKEN": admin,
        "ADAMCU_ENVIRONMENT": "development",
        "ADAMCU_DATABASE_URL": opts.database_url or f"sqlite:///{opts.out / 'adamcu.db'}",
        # the server reads the benchmark's images where they are; the worker registers paths
        "ADAMCU_STORE_ROOT": str(opts.out / "store"),
        "ADAMCU_STORE_DATASETS": json.dumps({"bundled": str(Path(opts.data).resolve())}),
        "ADAMCU_STORE_DATASET": "bundled",
        "PYTHONUNBUFFERED": "1",
    }
    if opts.redis_url:
        env["ADAMCU_REDIS_URL"] = opts.redis_url
    return env


def _fresh_start(opts: LoopOptions) -> None:
    """Claim ``--out``, make the benchmark, and clear the last run's database and worker
    files (not the pre-training cache in ``worker/cache``: a rerun reuses it)."""
    claim_output_folder(opts.out, OUT_MARKER, "adamcu loop")  # its old db and worker files go
    if not is_user_dataset(opts.data):  # a user's folder is used as it is
        generate_benchmark(opts.data, counts=opts.counts, seed=1234)
    db = opts.out / "adamcu.db"
    if not opts.database_url and db.exists():
        db.unlink()
    for stale in ("checkpoint.pt", "run.json", "summary.json"):  # a new run, not a resume
        (opts.out / "worker" / stale).unlink(missing_ok=True)
    (opts.out / ERROR_LOG).unlink(missing_ok=True)


def _announce(opts: LoopOptions, url: str, admin: str, run_id: int, viewer: str, log) -> None:
    """The run is open: the pages (and, for a person's session, the commands) to use now."""
    if opts.mode == "session" and not opts.oracles:
        person = make_token(url, admin, "annotator", "person")
        for line in session_lines(url, run_id, admin, person, viewer, opts.out, opts.data):
            log(line)
        return
    oracles = f"; starting {opts.oracles} simulated oracle(s)" if opts.oracles else ""
    log(f"run {run_id} registered{oracles}")
    log(f"dashboard while it runs: {url}/dashboard.html?token={viewer}")


def run_loop(opts: LoopOptions, log=say) -> dict[str, Any]:
    started = time.perf_counter()
    _fresh_start(opts)
    admin = secrets.token_urlsafe(24)
    env = _loop_env(opts, admin)
    procs: list[subprocess.Popen] = []
    deadline = Deadline(opts.out / "worker.log", opts.stall_timeout, opts.timeout)
    try:
        server, url = start_server(opts, env, opts.out)
        procs.append(server)
        log(f"server ready at {url} (database {env['ADAMCU_DATABASE_URL']})")
        trainer = make_token(url, admin, "trainer", "worker")
        viewer = make_token(url, admin, "viewer", "loop")
        worker = _start_worker(opts, env, url, trainer)
        procs.append(worker)
        tick = _follower(opts.out / "worker.log", log, deadline)
        log(f"worker started (log: {opts.out / 'worker.log'}); it pre-trains on source first")
        run_id = wait_for_run(url, viewer, worker, deadline, tick)
        _announce(opts, url, admin, run_id, viewer, log)
        procs += [
            _start_oracle(
                opts, env, url, make_token(url, admin, "annotator", f"oracle-{i}"), run_id, i
            )
            for i in range(opts.oracles)
        ]
        answers = answers_tick(url, viewer, run_id, deadline)
        code = wait_for_worker(worker, deadline, lambda: (tick(), answers()))
        if code != 0:
            raise worker_exited(code, deadline.log)
        for o in procs[2:]:
            o.wait(timeout=60)
        summary = json.loads((opts.out / "worker" / "summary.json").read_text())
    finally:
        stop_all(procs)
    summary["seconds"] = time.perf_counter() - started
    summary["dashboard_token"] = viewer
    summary["oracle_logs"] = [str(opts.out / f"oracle-{i}.log") for i in range(opts.oracles)]
    (opts.out / "report.json").write_text(json.dumps(summary, indent=1))
    return summary


def _follower(path: Path, log, deadline: Deadline) -> Callable[[], None]:
    """A tick that shows the worker's new progress lines on the console; each is progress."""
    tail = ProgressTail(path)

    def tick() -> None:
        for line in tail.new():
            log(f"worker: {line}")
            deadline.progressed(line)

    return tick


def _start_worker(opts: LoopOptions, env: dict[str, str], url: str, token: str) -> subprocess.Popen:
    args = [
        _python(),
        "-m",
        "trainer.worker",
        "--server",
        url,
        "--data",
        str(opts.data),
        "--strategy",
        opts.strategy,
        "--budget",
        str(opts.budget),
        *schedule_args(opts),
        "--pretrain-iterations",
        str(opts.pretrain_iterations),
        "--seed",
        str(opts.seed),
        "--checkpoint-dir",
        str(opts.out / "worker"),
        "--eval-every",
        str(opts.eval_every),
        "--mode",
        opts.mode,
    ]
    log = open(opts.out / "worker.log", "w")  # noqa: SIM115 - closed with the process
    env = child_env(env, ADAMCU_TRAINER_TOKEN=token)
    return subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)


def schedule_args(opts: LoopOptions) -> list[str]:
    """The worker's schedule flags; none that the strategy sets itself (``source-only`` adapts
    for 0 passes, and the worker refuses a change that its strategy overrides)."""
    overridden = STRATEGIES.get(opts.strategy, {})
    args = []
    if opts.passes is not None and "passes" not in overridden:
        args += ["--passes", str(opts.passes)]
    if opts.query_passes is not None and "passes" not in overridden:
        args += ["--query-passes", str(opts.query_passes)]
    if opts.iterations > 0 and "iterations" not in overridden:
        args += ["--iterations", str(opts.iterations)]
    return args


def _start_oracle(
    opts: LoopOptions, env: dict[str, str], url: str, token: str, run_id: int, i: int
) -> subprocess.Popen:
    costs = {"cost_model": opts.cost_model, "cost_spread": opts.cost_spread}
    # an empty claim waits on the server for the worker's next queries
    args = oracle_args(url, run_id, i, opts.data, opts.seed, wait=ORACLE_WAIT_SECONDS, **costs)
    log = open(opts.out / f"oracle-{i}.log", "w")  # noqa: SIM115 - closed with the process
    env = child_env(env, ADAMCU_TOKEN=token)
    return subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)


def main(argv: Sequence[str] | None = None) -> int:
    p = build_parser()
    opts = parse_args(argv, p)
    return run_and_report(opts, p)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="adamcu loop", description=__doc__)
    p.add_argument("--out", default="outputs/loop")
    p.add_argument(
        "--data",
        default="data/loop",
        help="your labeled folder (used as it is) or where to generate the bundled benchmark",
    )
    p.add_argument("--strategy", default="full")
    p.add_argument("--budget", type=float, default=0.017)
    p.add_argument("--passes", type=float, default=None, help="adaptation passes over target-train")
    p.add_argument("--query-passes", type=float, default=None, help="queries in the first N")
    p.add_argument("--iterations", type=int, default=0, help="> 0: exactly this many instead")
    p.add_argument("--pretrain-iterations", type=int, default=800)
    p.add_argument("--oracles", type=int, default=2)
    add_cost_model_arguments(p)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--mode",
        choices=("benchmark", "human"),
        default="benchmark",
        help="the worker waits for each batch's answers, or trains on as they come",
    )
    p.add_argument("--database-url", default=None)
    p.add_argument("--redis-url", default=None)
    add_deadline_arguments(p)
    p.add_argument("--verbose", action="store_true", help="DEBUG logs, httpx's requests included")
    return p


def parse_args(argv: Sequence[str] | None, p: argparse.ArgumentParser) -> LoopOptions:
    """The loop's options from its command line (refused ones: a usage error, exit 2)."""
    a = p.parse_args(argv)
    try:  # the worker's config refuses a bad schedule: say so before starting anything
        schedule = {"passes": a.passes, "query_passes": a.query_passes}
        TrainConfig(**{k: v for k, v in schedule.items() if v is not None})
    except ValueError as exc:
        p.error(str(exc))
    costs = cost_model_options(p, a)
    setup_logging(a.verbose)  # children log at $ADAMCU_LOG_LEVEL
    return LoopOptions(
        out=Path(a.out),
        data=Path(a.data),
        strategy=a.strategy,
        budget=a.budget,
        passes=a.passes,
        query_passes=a.query_passes,
        iterations=a.iterations,
        pretrain_iterations=a.pretrain_iterations,
        oracles=a.oracles,
        **costs,
        seed=a.seed,
        mode=a.mode,
        database_url=a.database_url,
        redis_url=a.redis_url,
        stall_timeout=a.stall_timeout,
        timeout=a.timeout,
        port=a.port,
    )


def run_and_report(opts: LoopOptions, parser: argparse.ArgumentParser) -> int:
    """Run the loop and print its summary, or one sentence saying what failed (exit 1)."""
    try:
        summary = run_loop(opts)
    except UnsafeFolderError as exc:
        parser.error(str(exc))
    except Exception as exc:
        say(explain(exc, opts.out, parser.prog))
        return 1
    print_summary(summary, opts.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``adamcu-oracle``: a simulated annotator process that answers queries from ground truth."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

import httpx

from client.api import ServiceClient, ServiceError
from client.logs import setup_logging
from oracle.annotate import OracleConfig, run_oracle
from server.schemas_answers import MAX_CLAIM_WAIT_SECONDS


def parse_args(argv: Sequence[str] | None = None) -> OracleConfig:
    p = argparse.ArgumentParser(prog="adamcu-oracle", description=__doc__)
    p.add_argument("--server", default=os.environ.get("ADAMCU_SERVER", "http://127.0.0.1:8000"))
    p.add_argument(
        "--token",
        default=os.environ.get("ADAMCU_TOKEN") or os.environ.get("ADAMCU_ADMIN_TOKEN"),
        help="annotator (or admin) token; default $ADAMCU_TOKEN, else $ADAMCU_ADMIN_TOKEN",
    )
    p.add_argument("--run", type=int, default=None, help="run id (default: newest active run)")
    p.add_argument(
        "--data",
        type=Path,
        required=True,
        help="dataset root: <root>/<split>/labels/<id>.png for key <split>/<id>",
    )
    p.add_argument("--batch", type=int, default=64, help="queries claimed at once (1..500)")
    p.add_argument(
        "--noise", type=float, default=0.0, help="probability of answering a random other class"
    )
    p.add_argument(
        "--skip-ignore",
        type=float,
        default=1.0,
        help="probability of skipping a void (255) pixel instead of guessing",
    )
    p.add_argument(
        "--delay-ms", type=float, default=0.0, help="simulated think time per answered pixel"
    )
    p.add_argument(
        "--cost-model",
        action="store_true",
        help="each answer's and skip's lead_time_ms from the cost model (a pixel click 2.4 s, "
        "a region click 3.0 s, a skip 1.2 s; server/schemas_cost.py), not the wall time: a "
        "simulated benchmark in annotator seconds",
    )
    p.add_argument(
        "--cost-spread",
        type=float,
        default=0.0,
        help="with --cost-model: each time is its mean x U[1 - spread, 1 + spread], seeded",
    )
    p.add_argument("--lease", type=int, default=60, help="lease seconds (5..3600)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument(
        "--idle-exit",
        type=float,
        default=10.0,
        help="exit after this many seconds with nothing to claim and the run finished",
    )
    p.add_argument(
        "--wait",
        type=float,
        default=0.0,
        help="seconds an empty claim waits on the server for new queries (0..10; 0: poll)",
    )
    p.add_argument("--max-answers", type=int, default=None)
    p.add_argument("--verbose", action="store_true", help="DEBUG logs, httpx's requests included")
    return _config(p, p.parse_args(argv))


def _config(p: argparse.ArgumentParser, args: argparse.Namespace) -> OracleConfig:
    """The checked arguments as an ``OracleConfig`` (``p.error`` names a bad one)."""
    if not args.token:
        p.error("--token or $ADAMCU_TOKEN is required")
    if not 1 <= args.batch <= 500:
        p.error("--batch must be in 1..500")
    if not 0.0 <= args.noise <= 1.0 or not 0.0 <= args.skip_ignore <= 1.0:
        p.error("--noise and --skip-ignore are probabilities in [0, 1]")
    if not 0.0 <= args.cost_spread < 1.0:
        p.error("--cost-spread must lie in [0, 1)")
    if not 0.0 <= args.wait <= MAX_CLAIM_WAIT_SECONDS:
        p.error(f"--wait must be in 0..{MAX_CLAIM_WAIT_SECONDS:g} seconds")
    return OracleConfig(
        server=args.server,
        token=args.token,
        data=args.data,
        run=args.run,
        batch=args.batch,
        noise=args.noise,
        skip_ignore=args.skip_ignore,
        delay_ms=args.delay_ms,
        lease=args.lease,
        seed=args.seed,
        idle_exit=args.idle_exit,
        max_answers=args.max_answers,
        wait=args.wait,
        verbose=args.verbose,
        cost_model=args.cost_model,
        cost_spread=args.cost_spread,
    )


def install_stop_handlers(stop: threading.Event) -> dict[int, Any]:
    """SIGTERM/SIGINT finish the in-flight batch and exit; a second SIGINT interrupts.

    Returns the previous handlers (for ``signal.signal`` to restore)."""

    def handle(signum: int, frame: FrameType | None) -> None:
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.set()

    return {sig: signal.signal(sig, handle) for sig in (signal.SIGTERM, signal.SIGINT)}


def main(argv: Sequence[str] | None = None) -> int:
    cfg = parse_args(argv)
    setup_logging(cfg.verbose)
    print(f"adamcu-oracle: {cfg!r}".replace(cfg.token, "***"), file=sys.stderr, flush=True)
    stop = threading.Event()
    previous = install_stop_handlers(stop)
    try:
        with ServiceClient(cfg.server, cfg.token) as client:
            summary = run_oracle(client, cfg, stop)
    except (ServiceError, httpx.TransportError) as error:
        print(f"adamcu-oracle: {error}", file=sys.stderr, flush=True)
        return 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print(summary.line(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

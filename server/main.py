"""Application factory and the ``adamcu-server`` console entry."""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime

import anyio.to_thread
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from pydantic import ValidationError

from server import resources
from server.api import metrics
from server.api.headers import SecurityHeadersMiddleware
from server.api.middleware import BodyLimitMiddleware, RequestContextMiddleware
from server.api.openapi import install_openapi
from server.api.routes import export, images, queries, runs, session, system, uploads
from server.api.web import WebMount
from server.db import make_engine, make_sessionmaker
from server.errors import install_busy_handlers, install_error_handlers
from server.logs import uvicorn_log_config
from server.models import utcnow
from server.queue import Dispatcher, EmbeddedQueue, RedisQueue
from server.services.recovery import rebuild_missing_streams
from server.services.tokens import PrincipalCache, retire_old_bootstrap_secrets
from server.settings import Settings
from server.store import make_store
from server.store.cache import DecodedCache
from server.wakeups import Wakeups

log = logging.getLogger(__name__)


def make_queue(settings: Settings) -> Dispatcher:
    if settings.redis_url:
        return RedisQueue.from_url(settings.redis_url, settings.redis_prefix)
    return EmbeddedQueue()


def create_app(settings: Settings | None = None, clock: Callable[[], datetime] = utcnow) -> FastAPI:
    settings = settings or Settings()
    engine = make_engine(settings.database_url, settings.threads)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.threads
        rebuild_missing_streams(app.state.sessionmaker, app.state.queue)
        retired = retire_old_bootstrap_secrets(
            app.state.write_sessionmaker, settings.admin_token, clock()
        )
        if retired:
            log.warning(
                "revoked the bootstrap admin token(s) %s: ADAMCU_ADMIN_TOKEN changed", retired
            )
        yield
        engine.dispose()

    app = FastAPI(
        title="adamcu labeling service", version=resources.package_version(), lifespan=lifespan
    )
    app.state.settings, app.state.clock = settings, clock
    app.state.sessionmaker, app.state.queue = make_sessionmaker(engine), make_queue(settings)
    app.state.write_sessionmaker = make_sessionmaker(engine, write=True)
    app.state.principals = PrincipalCache(wall=clock)
    app.state.wakeups = Wakeups()  # claims that wait for a run's new queries
    app.state.store, app.state.crops = make_store(settings), DecodedCache(settings.crop_cache_bytes)
    install_error_handlers(app)
    install_busy_handlers(app)
    routers = [m.router for m in (system, runs, images, uploads, queries, session, export, metrics)]
    for router in routers:
        app.include_router(router)
    install_openapi(app, routers)
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.max_body_bytes,
        upload_bytes=settings.max_upload_bytes,
        header_bytes=settings.max_header_bytes,
    )
    app.add_middleware(SecurityHeadersMiddleware)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["*"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(RequestContextMiddleware)  # outermost: ids and metrics for every reply
    if settings.web_dir is not None and settings.web_dir.is_dir():
        app.router.routes.append(WebMount(settings.web_dir, lambda: app.router.routes))
    elif settings.web_dir is not None:
        log.warning("web UI not served: %s is not a folder (ADAMCU_WEB_DIR)", settings.web_dir)
    return app


def server_options() -> dict[str, str]:
    """uvicorn's options of every ``adamcu-server``: the protocol that bounds request heads
    and answers malformed requests with the JSON envelope (server/api/protocol.py)."""
    from server.api.protocol import NAME

    return {"http": NAME}


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description="Run the adamcu labeling server.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    parser.add_argument("--access-log", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as exc:
        raise SystemExit(f"adamcu-server: invalid settings:\n{exc}") from None
    log_config = uvicorn_log_config(settings.log_format, args.access_log)
    common = {"host": args.host, "port": args.port, "access_log": False, "log_config": log_config}
    common |= server_options()
    if args.workers > 1:  # each worker builds its app from the same environment
        # /metrics sums the workers' request counters through files in this folder
        os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="adamcu-prom-"))
        uvicorn.run(
            "server.main:create_app",
            factory=True,
            workers=args.workers,
            timeout_worker_healthcheck=30,  # 5 s kills busy workers on a loaded machine
            **common,
        )
    else:
        uvicorn.run(create_app(settings), **common)


if __name__ == "__main__":
    main()

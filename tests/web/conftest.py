"""Fixtures for the browser tests: the real app on a free port, seeded over REST, and Chromium.

The app runs in a background thread under uvicorn with a fresh SQLite file migrated by
``server.migrate.upgrade`` and the embedded queue (no Redis). Seeding goes through the API
with the admin token, as a deployment would.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from web_support import classes, image_payload, post_queries  # noqa: E402

from stack.processes import free_port

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
ADMIN = "web-test-admin-token"


@dataclass
class Service:
    """The running app: base URL and one token per role."""

    base: str
    tokens: dict[str, str] = field(default_factory=dict)

    def client(self, role: str) -> httpx.Client:
        return httpx.Client(
            base_url=self.base, timeout=10, headers={"Authorization": f"Bearer {self.tokens[role]}"}
        )


@pytest.fixture(scope="session")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    uvicorn = pytest.importorskip("uvicorn")
    main = pytest.importorskip("server.main")
    migrate = pytest.importorskip("server.migrate")
    from server.settings import Settings

    root = tmp_path_factory.mktemp("db")
    url = f"sqlite:///{root / 'web.db'}"
    migrate.upgrade(url)
    settings = Settings(
        database_url=url,
        redis_url=None,
        admin_token=ADMIN,
        environment="test",
        store_root=root / "store",  # not ./adamcu-store in the checkout
    )
    port = free_port()
    config = uvicorn.Config(
        main.create_app(settings), host="127.0.0.1", port=port, log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.1)
    svc = Service(base=base, tokens={"admin": ADMIN})
    with svc.client("admin") as admin:
        for role, name in [
            ("annotator", "alice"),
            ("trainer", "trainer-1"),
            ("viewer", "vic"),
            ("annotator", "bob"),
        ]:
            r = admin.post("/api/v1/tokens", json={"role": role, "name": name})
            assert r.status_code == 201, r.text
            svc.tokens[name if name == "bob" else role] = r.json()["token"]
    yield svc
    server.should_exit = True
    thread.join(timeout=10)


@dataclass
class Run:
    id: int
    budget_total: int
    image_ids: list[int]
    query_ids: list[int]


@pytest.fixture
def make_run(service: Service):
    """Create a run with Cityscapes classes, `n_images` street PNGs and `n_queries` queries."""

    def make(
        name: str,
        *,
        n_images: int = 4,
        n_queries: int = 10,
        rate: float = 0.01,
        target_pixels: int | None = None,
    ) -> Run:
        with service.client("admin") as admin, service.client("trainer") as trainer:
            r = admin.post(
                "/api/v1/runs",
                json={
                    "name": name,
                    "classes": classes(),
                    "budget_rate": rate,
                    "strategy": "full",
                    "target_pixels": target_pixels or n_images * 128 * 64,
                    "config": {},
                },
            )
            assert r.status_code == 201, r.text
            run = r.json()
            images = [
                image_payload(f"target-train/{name}-{i:03d}", seed=i + 7) for i in range(n_images)
            ]
            r = trainer.post(f"/api/v1/runs/{run['id']}/images", json={"images": images})
            assert r.status_code == 201, r.text
            image_ids = [im["id"] for im in r.json()["images"]]
            ids = post_queries(trainer, run["id"], image_ids, n_queries) if n_queries else []
            return Run(run["id"], run["budget_total"], image_ids, ids)

    return make


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium is not installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page_at(browser):
    """`page_at(width, height)`: a fresh context (own sessionStorage) and page."""
    contexts = []

    def open_page(width: int = 1280, height: int = 720):
        ctx = browser.new_context(viewport={"width": width, "height": height})
        ctx.set_default_timeout(8000)
        contexts.append(ctx)
        page = ctx.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.js_errors = errors
        return page

    yield open_page
    for ctx in contexts:
        ctx.close()

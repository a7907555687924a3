"""Helper of scripts/wheel_check.sh, run by the fresh venv's Python (httpx, numpy and Pillow
come with the base install): wait for the server, fetch its pages, set up a run for the oracle,
count the answers. ``python wheel_world.py {wait,pages,world,answered} URL ...``."""

from __future__ import annotations

import base64
import io
import os
import sys
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

ADMIN = {"Authorization": f"Bearer {os.environ['ADAMCU_ADMIN_TOKEN']}"}


def wait(url: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"wheel_check: {url} did not get ready in 60 s")


def pages(url: str) -> None:
    ui = httpx.get(f"{url}/")
    assert ui.status_code == 200 and "<html" in ui.text.lower(), "no web UI at /"
    docs = httpx.get(f"{url}/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower(), "no /docs"
    schema = httpx.get(f"{url}/openapi.json").json()
    assert "HTTPBearer" in schema["components"]["securitySchemes"]
    metrics = httpx.get(f"{url}/metrics", headers=ADMIN)
    assert metrics.status_code == 200 and "adamcu_http_requests_total" in metrics.text
    assert httpx.get(f"{url}/metrics").status_code == 401
    print("wheel_check: /, /docs, /openapi.json and /metrics answer")


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def world(url: str, data: str) -> None:
    """A run with one 8x4 target image, its label mask under ``data`` and 4 queries."""
    c = httpx.Client(base_url=f"{url}/api/v1", headers=ADMIN, timeout=10)
    token = c.post("/tokens", json={"role": "annotator", "name": "oracle"}).json()["token"]
    classes = [{"id": i, "name": n, "color": [i * 60, 0, 0]} for i, n in enumerate("abc")]
    run = (
        c.post(
            "/runs",
            json={
                "name": "wheel",
                "classes": classes,
                "target_pixels": 1000,
                "budget_rate": 0.01,
                "strategy": "full",
                "config": {},
            },
        )
        .raise_for_status()
        .json()
    )
    labels = Path(data) / "target-train" / "labels"
    labels.mkdir(parents=True)
    mask = (np.arange(32).reshape(4, 8) % 3).astype(np.uint8)
    (labels / "000001.png").write_bytes(_png(mask))
    image = np.zeros((4, 8, 3), np.uint8)
    item = {
        "key": "target-train/000001",
        "width": 8,
        "height": 4,
        "png_base64": base64.b64encode(_png(image)).decode(),
    }
    [img] = (
        c.post(f"/runs/{run['id']}/images", json={"images": [item]})
        .raise_for_status()
        .json()["images"]
    )
    queries = [{"image_id": img["id"], "y": 1, "x": x} for x in range(4)]
    c.post(f"/runs/{run['id']}/queries", json={"queries": queries}).raise_for_status()
    print(f"RUN_ID={run['id']}\nORACLE_TOKEN={token}")


def answered(url: str, run_id: str, want: str) -> None:
    budget = httpx.get(f"{url}/api/v1/runs/{run_id}/budget", headers=ADMIN).json()
    assert budget["answered"] == int(want), budget
    print(f"wheel_check: the oracle answered {want} queries")


if __name__ == "__main__":
    commands = {"wait": wait, "pages": pages, "world": world, "answered": answered}
    commands[sys.argv[1]](*sys.argv[2:])

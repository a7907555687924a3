"""Server memory while it sends ``masks.zip``: peak RSS growth of the server process over one
export of ``--images`` images of ``--width`` x ``--height`` (default 300 of 2048x1024).

Starts the default server (``python -m server.main``: SQLite in a temporary folder, the
embedded queue, the folder image store) from ``--server-root`` (default: this checkout; point
it at another checkout to measure that code), uploads one PNG of that size and registers it
under ``--images`` keys (masks are per image, the stored file does not matter), asks
``--answers`` random pixels of every image and answers them (batch claims and answers).
Then it reads the server's RSS (``VmRSS``), resets its peak (``/proc/PID/clear_refs``),
downloads the zip as a stream to a file and reads the peak (``VmHWM``); a thread also samples
``VmRSS`` every 10 ms in case the kernel cannot reset the peak. It checks the zip (one entry
per image plus ``classes.json``, one mask's labeled pixels), prints the numbers and writes
them as JSON to ``--out``.

    .venv/bin/python scripts/export_rss_bench.py --out outputs/export_rss_bench.json
    .venv/bin/python scripts/export_rss_bench.py --images 30 --answers 16
"""

from __future__ import annotations

import argparse
import io
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stack.processes import free_port, make_token, wait_ready  # noqa: E402

MB = 2**20


def proc_status(pid: int, field: str) -> int:
    """``field`` of ``/proc/PID/status`` in bytes (``VmRSS``, ``VmHWM``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


class Sampler(threading.Thread):
    """The largest ``VmRSS`` of ``pid`` seen while it runs (every 10 ms)."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak, self.done = pid, proc_status(pid, "VmRSS"), threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.01):
            self.peak = max(self.peak, proc_status(self.pid, "VmRSS"))


def make_png(width: int, height: int) -> bytes:
    """A smooth image of that size (a few hundred KB as PNG)."""
    ys, xs = np.mgrid[0:height, 0:width]
    rgb = np.stack([xs % 256, ys % 256, (xs + ys) % 256], axis=-1).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, format="PNG")
    return out.getvalue()


def fill_run(c: httpx.Client, a: argparse.Namespace, trainer: str, annotator: str) -> int:
    """A run of ``a.images`` images with ``a.answers`` answered pixels each; its id."""
    th = {"Authorization": f"Bearer {trainer}"}
    classes = [{"id": i, "name": f"c{i}"} for i in range(19)]
    total = a.images * a.width * a.height
    body = {"name": "export-rss", "classes": classes, "target_pixels": total, "budget_rate": 0.5}
    run_id = c.post("/api/v1/runs", json=body, headers=th).raise_for_status().json()["id"]
    png = make_png(a.width, a.height)
    up = c.post("/api/v1/uploads", content=png, headers={**th, "Content-Type": "image/png"})
    ref = {k: up.raise_for_status().json()[k] for k in ("dataset", "path", "sha256")}
    ids: list[int] = []
    for start in range(0, a.images, 1000):
        items = [
            {"key": f"target-train/{i:06d}", **ref}
            for i in range(start, min(a.images, start + 1000))
        ]
        r = c.post(f"/api/v1/runs/{run_id}/images", json={"images": items}, headers=th)
        ids += [im["id"] for im in r.raise_for_status().json()["images"]]
    rng = np.random.default_rng(0)
    queries = []
    for image_id in ids:
        flat = rng.choice(a.width * a.height, size=a.answers, replace=False)
        queries += [
            {"image_id": image_id, "y": int(p // a.width), "x": int(p % a.width)} for p in flat
        ]
    for start in range(0, len(queries), 10_000):
        batch = {"queries": queries[start : start + 10_000]}
        c.post(f"/api/v1/runs/{run_id}/queries", json=batch, headers=th).raise_for_status()
    ah = {"Authorization": f"Bearer {annotator}"}
    while True:
        claimed = c.post(f"/api/v1/runs/{run_id}/claims", json={"n": 500}, headers=ah)
        got = claimed.raise_for_status().json()["queries"]
        if not got:
            break
        answers = [{"query_id": q["id"], "class_id": q["id"] % 19} for q in got]
        c.post(
            f"/api/v1/runs/{run_id}/answers", json={"answers": answers}, headers=ah
        ).raise_for_status()
    return run_id


def export(c: httpx.Client, pid: int, run_id: int, admin: str, dest: Path) -> dict:
    """Download the zip to ``dest`` while watching the server's memory."""
    rss_before = proc_status(pid, "VmRSS")
    reset = True
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := VmRSS
    except OSError:
        reset = False
    sampler = Sampler(pid)
    sampler.start()
    started = time.perf_counter()
    url = f"/api/v1/runs/{run_id}/export/masks.zip"
    with c.stream("GET", url, headers={"Authorization": f"Bearer {admin}"}) as r:
        r.raise_for_status()
        first_byte_s = time.perf_counter() - started
        with dest.open("wb") as fh:
            for chunk in r.iter_bytes():
                fh.write(chunk)
    seconds = time.perf_counter() - started
    sampler.done.set()
    sampler.join()
    peak = max(sampler.peak, proc_status(pid, "VmHWM") if reset else 0)
    return {
        "server_rss_before_mib": round(rss_before / MB, 1),
        "server_peak_rss_mib": round(peak / MB, 1),
        "server_peak_growth_mib": round((peak - rss_before) / MB, 1),
        "peak_from": "VmHWM after clear_refs and 10 ms samples" if reset else "10 ms samples",
        "export_seconds": round(seconds, 2),
        "first_byte_seconds": round(first_byte_s, 2),
        "zip_mib": round(dest.stat().st_size / MB, 2),
    }


def check_zip(path: Path, a: argparse.Namespace) -> dict:
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        mask = np.asarray(Image.open(io.BytesIO(zf.read("target-train/labels/000000.png"))))
    assert len(names) == len(set(names)) == a.images + 1, len(names)
    assert mask.shape == (a.height, a.width) and int((mask != 255).sum()) == a.answers
    return {"entries": len(names), "first_mask_labeled_pixels": int((mask != 255).sum())}


def bench(a: argparse.Namespace) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="export_rss_bench_"))
    port, admin = free_port(), secrets.token_urlsafe(16)
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "ADAMCU_DATABASE_URL": f"sqlite:///{tmp / 'adamcu.db'}",
        "ADAMCU_STORE_ROOT": str(tmp / "store"),
        "ADAMCU_ADMIN_TOKEN": admin,
        "ADAMCU_ENVIRONMENT": "test",
        "ADAMCU_LOG_FORMAT": "text",
        "PYTHONPATH": str(a.server_root),
    }
    env.pop("ADAMCU_REDIS_URL", None)
    log, proc = tmp / "server.log", None
    root = a.server_root
    try:
        subprocess.run([sys.executable, "-m", "server.migrate"], cwd=root, env=env, check=True)
        cmd = [sys.executable, "-m", "server.main", "--port", str(port)]
        with log.open("w") as fh:
            proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=fh, stderr=subprocess.STDOUT)
        wait_ready(base, proc, log=log)
        trainer = make_token(base, admin, "trainer", "bench-trainer")
        annotator = make_token(base, admin, "annotator", "bench-annotator")
        with httpx.Client(base_url=base, timeout=600) as c:
            started = time.perf_counter()
            run_id = fill_run(c, a, trainer, annotator)
            fill_s = round(time.perf_counter() - started, 1)
            result = export(c, proc.pid, run_id, admin, tmp / "masks.zip")
        result |= check_zip(tmp / "masks.zip", a) | {"fill_seconds": fill_s}
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(20)
        shutil.rmtree(tmp)  # the bench's own temporary folder
    cfg = {k: v for k, v in vars(a).items() if k != "out"} | {"server_root": str(root)}
    return {"config": cfg, "cpus": os.cpu_count(), **result}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--images", type=int, default=300)
    p.add_argument("--width", type=int, default=2048)
    p.add_argument("--height", type=int, default=1024)
    p.add_argument("--answers", type=int, default=64, help="answered pixels per image")
    p.add_argument("--server-root", type=Path, default=ROOT, help="the checkout whose server runs")
    p.add_argument("--out", type=Path, default=ROOT / "outputs" / "export_rss_bench.json")
    a = p.parse_args(argv)
    a.server_root = a.server_root.resolve()
    result = bench(a)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A run over 300 target images of 2048x1024 registered by reference to the image store.

Writes the images once into a store folder (synthetic, noise-free, PNG level 1; kept for
the next run under ``--store``), migrates an empty database (SQLite by default, or
``--database-url``), starts ``adamcu-server`` on its default settings and registers the images
from a separate worker-side process (``client.images``: hash each file, post references),
then fetches crops the way the annotator UI asks (``/api/v1/images/{id}.png?cx&cy&r&scale``).
Prints registration time, the server's peak RSS (VmHWM), the worker-side peak RSS, crop
latencies (the first crop of an image decodes it; later ones hit the decoded cache), one full
image fetch and the database's growth; writes them to ``--out``.

    PYTHONPATH=$PWD .venv/bin/python scripts/store_bench.py
    PYTHONPATH=$PWD .venv/bin/python scripts/store_bench.py --images 30 --store /tmp/s
"""

from __future__ import annotations

import argparse
import io
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from server.migrate import upgrade  # noqa: E402
from stack.processes import free_port, wait_ready  # noqa: E402

DATASET, W, H = "bench", 2048, 1024
WORKER = """
import json, resource, sys, time
from pathlib import Path
from client.api import ServiceClient
from client.images import file_refs, register_refs
url, token, root, n = sys.argv[1], sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])
c = ServiceClient(url, token, timeout=120)
t0 = time.perf_counter()
run = c.create_run("store-bench", [{"id": 0, "name": "a"}], n * 2048 * 1024, 0.01)
files = [(f"target-train/{i:06d}", f"target-train/images/{i:06d}.png") for i in range(n)]
refs = file_refs(root, "bench", files)
t1 = time.perf_counter()
ids = register_refs(c, run["id"], refs)
t2 = time.perf_counter()
print(json.dumps({"run_id": run["id"], "ids": list(ids.values()), "hash_s": t1 - t0,
    "post_s": t2 - t1, "total_s": t2 - t0,
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def synth(i: int) -> np.ndarray:
    """A smooth street-like frame: sky/road gradients and a few flat blocks, no noise."""
    y = np.linspace(0, 1, H, dtype=np.float32)[:, None]
    x = np.linspace(0, 1, W, dtype=np.float32)[None, :]
    img = np.empty((H, W, 3), np.uint8)
    img[..., 0] = (255 * (0.3 + 0.5 * y) * (0.8 + 0.2 * x)).astype(np.uint8)
    img[..., 1] = (255 * (0.6 - 0.4 * y + 0.1 * ((i % 7) / 7))).clip(0, 1).astype(np.uint8)
    img[..., 2] = (255 * (1 - y) * (0.5 + 0.5 * x)).astype(np.uint8)
    rng = np.random.default_rng(i)
    for _ in range(12):
        x0, y0 = int(rng.integers(0, W - 200)), int(rng.integers(H // 3, H - 100))
        img[y0 : y0 + int(rng.integers(40, 300)), x0 : x0 + int(rng.integers(40, 400))] = (
            rng.integers(0, 256, 3)
        )
    return img


def write_images(root: Path, n: int) -> float:
    folder = root / DATASET / "target-train" / "images"
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    for i in range(n):
        path = folder / f"{i:06d}.png"
        if not path.exists():
            Image.fromarray(synth(i)).save(path.with_suffix(".tmp"), format="PNG", compress_level=1)
            os.replace(path.with_suffix(".tmp"), path)
    return time.perf_counter() - t0


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def db_bytes(url: str, sqlite: Path) -> int:
    if url.startswith("sqlite"):
        return sqlite.stat().st_size
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.connect() as conn:
        size = conn.execute(text("SELECT pg_database_size(current_database())")).scalar_one()
    engine.dispose()
    return int(size)


def crops(url: str, token: str, ids: list[int], per_image: int) -> dict:
    h = {"Authorization": f"Bearer {token}"}
    rng = np.random.default_rng(0)
    cold, warm = [], []
    with httpx.Client(base_url=url, headers=h, timeout=60) as c:
        for image_id in ids:
            for k in range(per_image):
                q = {"cx": int(rng.integers(0, W)), "cy": int(rng.integers(0, H)), "r": 16}
                t0 = time.perf_counter()
                r = c.get(f"/api/v1/images/{image_id}.png", params=q | {"scale": 8})
                (cold if k == 0 else warm).append(1000 * (time.perf_counter() - t0))
                assert r.status_code == 200, r.text
                assert Image.open(io.BytesIO(r.content)).size == (264, 264)
        t0 = time.perf_counter()
        full = c.get(f"/api/v1/images/{ids[0]}.png")
        full_ms = 1000 * (time.perf_counter() - t0)
    ms = {"cold_ms_median": statistics.median(cold), "cold_ms_max": max(cold)}
    if warm:
        ms |= {"warm_ms_median": statistics.median(warm), "warm_ms_max": max(warm)}
    return ms | {"full_image_ms": full_ms, "full_image_bytes": len(full.content)}


def start_server(env: dict[str, str], out: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    log = (out / "server.log").open("w")
    cmd = [sys.executable, "-m", "server.main", "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    wait_ready(url, proc, timeout=120, log=out / "server.log")
    return proc, url


def register(url: str, admin: str, store: Path, n: int) -> dict:
    """The worker side, in its own process (its peak RSS is its own)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-c", WORKER, url, admin, str(store / DATASET), str(n)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"registration failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.splitlines()[-1])


def bench(args: argparse.Namespace, work: Path) -> dict:
    store = Path(args.store) if args.store else work / "store"
    gen_s = write_images(store, args.images)
    sqlite = work / "bench.db"
    url = args.database_url or f"sqlite:///{sqlite}"
    upgrade(url)
    admin = secrets.token_urlsafe(16)
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "ADAMCU_DATABASE_URL": url,
        "ADAMCU_ADMIN_TOKEN": admin,
        "ADAMCU_STORE_ROOT": str(store),
    }
    db_before = db_bytes(url, sqlite)
    server, base = start_server(env, work)
    try:
        rss_idle = peak_rss_mb(server.pid)
        reg = register(base, admin, store, args.images)
        rss_registered = peak_rss_mb(server.pid)
        ms = crops(base, admin, reg["ids"][: args.crop_images], args.crops_per_image)
        rss_final = peak_rss_mb(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)
    files = sorted((store / DATASET / "target-train" / "images").glob("*.png"))[: args.images]
    return {
        "images": args.images,
        "size": [W, H],
        "database": url.split(":")[0],
        "generate_s": round(gen_s, 1),
        "store_mb": round(sum(f.stat().st_size for f in files) / 1e6, 1),
        "registration_s": round(reg["total_s"], 2),
        "worker_hash_s": round(reg["hash_s"], 2),
        "register_post_s": round(reg["post_s"], 2),
        "worker_peak_rss_mb": round(reg["peak_rss_mb"], 1),
        "server_peak_rss_mb": {
            "idle": rss_idle,
            "after_registration": rss_registered,
            "after_crops": rss_final,
        },
        "db_delta_bytes": db_bytes(url, sqlite) - db_before,
        "crops": {k: round(v, 1) for k, v in ms.items()},
        "load_average": os.getloadavg(),
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=300)
    p.add_argument("--store", help="store folder to write the images into (kept); default: temp")
    p.add_argument("--database-url", help="default: a new SQLite file")
    p.add_argument("--crop-images", type=int, default=5)
    p.add_argument("--crops-per-image", type=int, default=5)
    p.add_argument("--out", default=str(ROOT / "outputs" / "store_bench.json"))
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="store-bench-") as tmp:
        result = bench(args, Path(tmp))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

"""Helpers for the browser tests: Cityscapes classes, street-like PNGs, seeding, screenshots."""

from __future__ import annotations

import base64
import io
import os
import random
from pathlib import Path

import httpx
from PIL import Image, ImageDraw

# where the browser tests save their screenshots: outputs/screenshots (ignored by git), so that
# a test run leaves the checkout as it was; ADAMCU_SCREENSHOTS=docs/screenshots refreshes the
# README's pictures (a path relative to the repository root, or absolute)
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / os.environ.get("ADAMCU_SCREENSHOTS", "outputs/screenshots")

CITYSCAPES = [
    ("road", (128, 64, 128)),
    ("sidewalk", (244, 35, 232)),
    ("building", (70, 70, 70)),
    ("wall", (102, 102, 156)),
    ("fence", (190, 153, 153)),
    ("pole", (153, 153, 153)),
    ("traffic light", (250, 170, 30)),
    ("traffic sign", (220, 220, 0)),
    ("vegetation", (107, 142, 35)),
    ("terrain", (152, 251, 152)),
    ("sky", (70, 130, 180)),
    ("person", (220, 20, 60)),
    ("rider", (255, 0, 0)),
    ("car", (0, 0, 142)),
    ("truck", (0, 0, 70)),
    ("bus", (0, 60, 100)),
    ("train", (0, 80, 100)),
    ("motorcycle", (0, 0, 230)),
    ("bicycle", (119, 11, 32)),
]


def classes() -> list[dict]:
    return [{"id": i, "name": n, "color": list(c)} for i, (n, c) in enumerate(CITYSCAPES)]


def street_png(seed: int, width: int = 128, height: int = 64) -> bytes:
    """A small photo-like street: sky, facades with windows, trees, a road, cars, a pole."""
    rng = random.Random(seed)
    img = Image.new("RGB", (width, height))
    d = ImageDraw.Draw(img)
    horizon = int(height * 0.55)
    for y in range(horizon):  # sky gradient
        t = y / max(1, horizon)
        d.line([(0, y), (width, y)], fill=(int(120 + 80 * t), int(160 + 60 * t), int(215 + 25 * t)))
    x = 0
    while x < width:  # facades
        w = rng.randint(14, 30)
        top = rng.randint(int(height * 0.08), int(height * 0.35))
        shade = rng.randint(70, 150)
        tint = (shade + rng.randint(-10, 25), shade, shade - rng.randint(0, 20))
        d.rectangle([x, top, x + w, horizon], fill=tint)
        for wy in range(top + 3, horizon - 4, 6):
            for wx in range(x + 2, x + w - 3, 5):
                d.rectangle([wx, wy, wx + 2, wy + 3], fill=(40, 48, 60))
        x += w
    for _ in range(rng.randint(1, 3)):  # trees
        cx, cy = rng.randint(0, width), rng.randint(int(height * 0.25), horizon - 6)
        r = rng.randint(6, 11)
        d.rectangle([cx - 1, cy, cx + 1, horizon + 2], fill=(80, 60, 40))
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=(70 + rng.randint(0, 30), 120, 40))
    d.polygon(
        [(0, horizon + 4), (width, horizon + 4), (width, horizon), (0, horizon)],
        fill=(175, 165, 170),
    )  # sidewalk
    d.rectangle([0, horizon + 4, width, height], fill=(88, 84, 92))  # road
    for lx in range(4, width, 20):
        d.rectangle([lx, int(height * 0.85), lx + 9, int(height * 0.85) + 1], fill=(225, 225, 225))
    for _ in range(rng.randint(1, 3)):  # cars
        cx = rng.randint(0, width - 24)
        cy = rng.randint(horizon + 2, height - 14)
        body = rng.choice([(30, 40, 120), (150, 20, 30), (220, 220, 225), (20, 20, 20)])
        d.rounded_rectangle([cx, cy, cx + 22, cy + 9], radius=3, fill=body)
        d.rectangle([cx + 5, cy - 4, cx + 16, cy + 1], fill=(60, 80, 100))
        d.ellipse([cx + 2, cy + 7, cx + 7, cy + 12], fill=(15, 15, 15))
        d.ellipse([cx + 15, cy + 7, cx + 20, cy + 12], fill=(15, 15, 15))
    px = rng.randint(10, width - 10)  # pole with a sign
    d.rectangle([px, int(height * 0.2), px + 1, horizon + 3], fill=(110, 110, 110))
    d.rectangle([px - 2, int(height * 0.2), px + 3, int(height * 0.2) + 4], fill=(230, 200, 20))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def image_payload(key: str, seed: int, width: int = 128, height: int = 64) -> dict:
    png = street_png(seed, width, height)
    return {
        "key": key,
        "width": width,
        "height": height,
        "png_base64": base64.b64encode(png).decode(),
    }


def post_queries(
    trainer: httpx.Client, run_id: int, image_ids: list[int], n: int, offset: int = 0
) -> list[int]:
    """`n` distinct pixels spread over the images; groups alternate high / medium."""
    queries = []
    for i in range(offset, offset + n):
        queries.append(
            {
                "image_id": image_ids[i % len(image_ids)],
                "x": 6 + (37 + 23 * i) % 116,
                "y": 5 + (27 + 11 * i) % 54,
                "group": "high" if i % 3 else "medium",
                "score": round(0.95 - 0.03 * i, 2),
            }
        )
    r = trainer.post(f"/api/v1/runs/{run_id}/queries", json={"queries": queries})
    assert r.status_code == 201, r.text
    return r.json()["ids"]


def screenshot(page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path

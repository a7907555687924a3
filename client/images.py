"""Images for a run: by reference to files the server's image store already holds, or as
streamed uploads (one raw PNG body each, ``POST /api/v1/uploads``), never base64 in JSON.

A reference is ``{"key", "dataset", "path", "sha256"}``: ``path`` inside the store's dataset
``dataset`` (a folder of ``ADAMCU_STORE_ROOT`` or a prefix of the S3 bucket); the server checks
the hash once, the first time any run registers that file.
"""

from __future__ import annotations

import base64
import hashlib
import io
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

REFS_PER_POST = 500  # ~130 KB of JSON; the server takes up to 1000 images a request


def png_bytes(array: np.ndarray, compress_level: int = 1) -> bytes:
    """PNG of a uint8 ``(H, W, 3)`` or ``(H, W)`` array (fast compression by default)."""
    buffer = io.BytesIO()
    image = Image.fromarray(np.ascontiguousarray(array, dtype=np.uint8))
    image.save(buffer, format="PNG", compress_level=compress_level)
    return buffer.getvalue()


def encode_png(array: np.ndarray) -> str:
    """Base64 PNG of a uint8 array, for the old JSON route (small images only)."""
    return base64.b64encode(png_bytes(array, compress_level=6)).decode("ascii")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_refs(root: Path, dataset: str, files: Iterable[tuple[str, str]]) -> list[dict]:
    """References for ``(key, path)`` pairs, ``path`` relative to ``root``, the folder that
    the server's store serves as ``dataset``; each file is hashed here (1 MiB at a time)."""
    return [
        {"key": key, "dataset": dataset, "path": path, "sha256": file_sha256(Path(root) / path)}
        for key, path in files
    ]


def upload(client: Any, data: bytes) -> dict:
    """Store one PNG; returns ``{"dataset", "path", "sha256", "bytes", "width", "height"}``.
    Content-addressed, so a retry or a second upload of the same bytes stores nothing new."""
    headers = {"Content-Type": "image/png"}
    return client.request("POST", "/uploads", content=data, headers=headers)


def register_refs(client: Any, run_id: int, refs: Sequence[dict]) -> dict[str, int]:
    """Register references in a run (idempotent by key); returns key -> image id."""
    ids: dict[str, int] = {}
    for i in range(0, len(refs), REFS_PER_POST):
        body = {"images": list(refs[i : i + REFS_PER_POST])}
        out = client.request("POST", f"/runs/{run_id}/images", json=body)
        ids.update({row["key"]: row["id"] for row in out["images"]})
    return ids


def register_arrays(
    client: Any, run_id: int, items: Iterable[tuple[str, np.ndarray]]
) -> dict[str, int]:
    """Upload ``(key, uint8 array)`` pairs one PNG at a time (memory: one image), then
    register them by reference; returns key -> image id."""
    refs = []
    for key, array in items:
        stored = upload(client, png_bytes(array))
        refs.append({"key": key, **{k: stored[k] for k in ("dataset", "path", "sha256")}})
    return register_refs(client, run_id, refs)

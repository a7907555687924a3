"""The worker's target images reach the run by reference (``--store-dataset``: nothing
uploaded, nothing in the database) or as streamed uploads, against a real server app."""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from client.api import ServiceClient
from server.main import create_app
from server.migrate import upgrade
from server.settings import Settings
from trainer.config import TrainConfig
from trainer.data.folder import load_split
from trainer.worker.images import register_target_images

ADMIN = "worker-images-admin"


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tpl") / "t.db"
    upgrade(f"sqlite:///{path}")
    return path


def _dataset(root: Path, n: int = 3) -> None:
    rng = np.random.default_rng(0)
    for sub in ("images", "labels"):
        (root / "target-train" / sub).mkdir(parents=True)
    for i in range(n):
        img = rng.integers(0, 256, (6, 10, 3), dtype=np.uint8)
        Image.fromarray(img).save(root / "target-train" / "images" / f"{i:06d}.png")
        Image.fromarray(np.zeros((6, 10), np.uint8)).save(
            root / "target-train" / "labels" / f"{i:06d}.png"
        )


def _run(tmp_path: Path, template: Path, store_dataset: str) -> tuple[dict, Path]:
    data_root, store = tmp_path / "data", tmp_path / "store"
    _dataset(data_root)
    store.mkdir()
    os.symlink(data_root, store / "bundled")  # the store serves the worker's folder
    shutil.copy(template, tmp_path / "a.db")
    cfg = Settings(
        database_url=f"sqlite:///{tmp_path / 'a.db'}",
        admin_token=ADMIN,
        environment="test",
        web_dir=None,
        store_root=store,
    )
    split = load_split(data_root, "target-train")
    data = type("D", (), {"target": split})()
    with TestClient(create_app(cfg)) as http:
        client = ServiceClient("http://testserver", ADMIN, transport=http._transport)
        run = client.create_run("w", [{"id": 0, "name": "a"}], 180, 0.1)
        train_cfg = TrainConfig(data_root=str(data_root))
        ids = register_target_images(client, run["id"], train_cfg, data, store_dataset)
        assert sorted(ids) == split.ids
        assert [r["key"] for r in client.list_images(run["id"])] == split.ids
        crop = http.get(
            f"/api/v1/images/{ids[split.ids[1]]}.png?cx=3&cy=2&r=0",
            headers={"Authorization": f"Bearer {ADMIN}"},
        )
        pixel = np.asarray(Image.open(io.BytesIO(crop.content)))[0, 0]
        np.testing.assert_array_equal(pixel, split.images[1, :, 2, 3].numpy())
    return ids, store


def test_by_reference_nothing_uploaded(tmp_path, template):
    _ids, store = _run(tmp_path, template, "bundled")
    assert not (store / "uploads").exists()


def test_uploaded_when_the_store_does_not_hold_the_data(tmp_path, template):
    _ids, store = _run(tmp_path, template, "")
    assert len(list((store / "uploads").glob("*/*.png"))) == 3

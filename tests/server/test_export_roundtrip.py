"""masks.zip unpacks into the input folder format and trains as it is (the export comes back
in): ``<split>/labels/<id>.png`` and ``classes.json`` as ``{"classes": [...]}``."""

from __future__ import annotations

import base64
import io
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.server.conftest import make_world
from tests.userdata import CLASSES, make_user_folder


def _b64(path: Path) -> str:
    buf = io.BytesIO()
    Image.open(path).convert("RGB").save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


@pytest.mark.parametrize("env", ["sqlite"], indirect=True)
def test_an_export_unpacks_over_the_folder_and_trains(env, tmp_path: Path) -> None:
    data = make_user_folder(tmp_path / "data", h=16, w=24, unlabeled=("target-train",))
    world = make_world(env, budget_total=40)
    c, trainer = env.client, env.headers(world.tokens["trainer"])
    run = c.post(
        "/api/v1/runs",
        json={
            "name": "u",
            "classes": CLASSES,
            "target_pixels": 4000,
            "budget_rate": 0.01,
            "strategy": "full",
            "config": {},
        },
        headers=trainer,
    ).json()
    images = sorted((data / "target-train" / "images").iterdir())
    body = [
        {"key": f"target-train/{p.stem}", "width": 24, "height": 16, "png_base64": _b64(p)}
        for p in images
    ]
    ids = [
        im["id"]
        for im in c.post(
            f"/api/v1/runs/{run['id']}/images", json={"images": body}, headers=trainer
        ).json()["images"]
    ]
    queries = [{"image_id": i, "y": 12, "x": 3, "group": "high"} for i in ids]
    queries += [{"image_id": i, "y": 1, "x": 20, "group": "high"} for i in ids]
    assert (
        c.post(
            f"/api/v1/runs/{run['id']}/queries", json={"queries": queries}, headers=trainer
        ).status_code
        == 201
    )
    alice = env.headers(world.tokens["alice"])
    claimed = c.post(f"/api/v1/runs/{run['id']}/claims", json={"n": 40}, headers=alice).json()
    for q in claimed["queries"]:
        answer = {"class_id": 1 if q["y"] == 12 else 0, "lead_time_ms": 300}
        assert c.post(f"/api/v1/queries/{q['id']}/answer", json=answer, headers=alice).is_success
    r = c.get(f"/api/v1/runs/{run['id']}/export/masks.zip", headers=env.headers())
    zf = zipfile.ZipFile(io.BytesIO(r.content))
    assert sorted(zf.namelist()) == ["classes.json"] + [
        f"target-train/labels/{p.stem}.png" for p in images
    ]
    copy = tmp_path / "labeled"
    shutil.copytree(data, copy)
    zf.extractall(copy)  # unzip masks.zip -d DATA
    mask = np.asarray(Image.open(copy / "target-train" / "labels" / f"{images[0].stem}.png"))
    assert mask[12, 3] == 1 and mask[1, 20] == 0 and int((mask != 255).sum()) == 2

    # the trainer half needs the `trainer` extra (scripts/lowest.sh installs the server's only)
    pytest.importorskip("torch", reason="training on the export needs the trainer extra")
    from trainer.bench.experiment import run_strategy
    from trainer.config import TrainConfig
    from trainer.data.validate import validate_folder
    from trainer.loop.train import load_data
    from trainer.strategies import configure

    assert validate_folder(copy)["splits"]["target-train"]["labeled"] is True
    cfg = configure(
        TrainConfig(),
        "supervised",
        data_root=str(copy),
        embed_dim=8,
        pretrain_iterations=2,
        iterations=2,
        eval_every=2,
    )
    data_in = load_data(cfg)
    assert int((data_in.target.labels != 255).sum()) == 2 * len(images)
    result = run_strategy(cfg, data_in, None)
    assert result["labeled_pixels"] == data_in.target_pixels and result["test_miou"] >= 0

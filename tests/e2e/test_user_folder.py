"""A user-made folder (not the generator's) through the whole path: bench, a session with
simulated oracles, the masks export, predict and evaluate; the folder is never written to."""

from __future__ import annotations

import io
import json
import os
import secrets
import shutil
import zipfile
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from stack.cli import main
from stack.loop import LoopOptions, run_loop, start_server
from tests.userdata import make_user_folder, snapshot
from trainer.data.validate import validate_folder


def _bench(data: Path, out: Path) -> None:
    args = ["bench", "--preset", "smoke", "--data", str(data), "--out", str(out)]
    args += ["--strategies", "source-only,random", "--budgets", "0.01", "--seeds", "0"]
    assert main(args + ["--workers", "1"]) == 0
    results = json.loads((out / "results.json").read_text())["results"]
    assert sorted(r["strategy"] for r in results) == ["random", "source-only"]
    for r in results:
        assert {"strategy", "budget_rate", "seed", "val_miou", "test_miou"} <= set(r)
        assert len(r["test_per_class_iou"]) == 3 and Path(r["checkpoint"]).is_file()
    assert json.loads((out / "results.json").read_text())["data"] == {"user": str(data)}


def _export(opts: LoopOptions, run_id: int, into: Path) -> None:
    """Start the server again on the session's database and unzip its masks export."""
    admin = secrets.token_urlsafe(18)
    env = {**os.environ, "ADAMCU_ADMIN_TOKEN": admin, "ADAMCU_ENVIRONMENT": "development"}
    env["ADAMCU_DATABASE_URL"] = f"sqlite:///{opts.out / 'adamcu.db'}"
    server, url = start_server(opts, env, opts.out)
    try:
        r = httpx.get(
            f"{url}/api/v1/runs/{run_id}/export/masks.zip",
            headers={"Authorization": f"Bearer {admin}"},
            timeout=30,
        )
        r.raise_for_status()
    finally:
        server.terminate()
        server.wait(timeout=20)
    zipfile.ZipFile(io.BytesIO(r.content)).extractall(into)


@pytest.mark.slow
def test_a_user_folder_goes_through_bench_session_export_predict_evaluate(
    tmp_path: Path, capsys
) -> None:
    data = make_user_folder(tmp_path / "my_folder")
    before = snapshot(data)
    _bench(data, tmp_path / "bench")
    assert snapshot(data) == before
    opts = LoopOptions(
        out=tmp_path / "session",
        data=data,
        budget=0.02,
        iterations=6,
        pretrain_iterations=10,
        eval_every=3,
        oracles=2,
        timeout=600,
    )
    summary = run_loop(opts, log=lambda *_: None)
    assert summary["labeled_pixels"] > 0 and snapshot(data) == before
    # the export unpacks over a copy of the images without labels: a labeled target set
    labeled = tmp_path / "from_export"
    shutil.copytree(data, labeled)
    shutil.rmtree(labeled / "target-train" / "labels")
    _export(opts, summary["run_id"], labeled)
    assert validate_folder(labeled)["splits"]["target-train"]["labeled"] is True
    masks = [np.asarray(Image.open(p)) for p in (labeled / "target-train" / "labels").iterdir()]
    assert sum(int((m != 255).sum()) for m in masks) == summary["labeled_pixels"]
    ckpt = opts.out / "worker" / "checkpoint.pt"
    pred = tmp_path / "predicted"
    images = data / "target-test" / "images"
    assert (
        main(["predict", "--checkpoint", str(ckpt), "--images", str(images), "--out", str(pred)])
        == 0
    )
    assert len(list((pred / "labels").glob("*.png"))) == len(list(images.iterdir()))
    assert len(list((pred / "overlays").glob("*.png"))) == len(list(images.iterdir()))
    report = tmp_path / "eval.json"
    args = ["evaluate", "--checkpoint", str(ckpt), "--data", str(data), "--out", str(report)]
    assert main(args) == 0
    assert "mIoU" in capsys.readouterr().out
    result = json.loads(report.read_text())
    assert abs(result["miou"] - summary["test_miou_after"]) < 1e-6
    assert snapshot(data) == before

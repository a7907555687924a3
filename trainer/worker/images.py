"""The worker's target images into its run: by reference when the server's image store
serves the worker's data folder as a dataset (``--store-dataset``), else uploaded one PNG at a
time as raw bodies (``client.images``)."""

from __future__ import annotations

import logging
from pathlib import Path

from PIL import Image

from client.api import ServiceClient
from client.images import file_refs, register_refs
from trainer.config import TrainConfig
from trainer.loop.train import Data

log = logging.getLogger("adamcu.worker")


def target_files(cfg: TrainConfig, data: Data) -> list[tuple[str, str]]:
    """``(key, path)`` of each target image, ``path`` relative to ``cfg.data_root``: the plain
    folder format keeps key ``<split>/<name>`` at ``<split>/images/<name>.png``."""
    if cfg.dataset != "folder":
        raise FileNotFoundError(
            f"--store-dataset needs the plain folder format (dataset {cfg.dataset!r} is resized "
            "while loading, so its files are not the images the run shows); drop the option "
            "to upload the images instead"
        )
    files = []
    size = tuple(data.target.images.shape[-2:])
    for key in data.target.ids:
        split, name = key.split("/", 1)
        path = f"{split}/images/{name}.png"
        full = Path(cfg.data_root) / path
        if not full.is_file():  # e.g. a JPEG: the store serves PNG files only
            raise FileNotFoundError(f"target image {key!r}: no PNG file {full}")
        with Image.open(full) as im:
            if (im.height, im.width) != size:  # resized while loading: not what the run shows
                raise FileNotFoundError(f"target image {key!r}: {full} is not {size[0]}x{size[1]}")
        files.append((key, path))
    return files


def register_target_images(
    client: ServiceClient, run_id: int, cfg: TrainConfig, data: Data, store_dataset: str = ""
) -> dict[str, int]:
    """Register the run's target images; returns key -> image id."""
    if store_dataset and cfg.dataset == "folder":
        try:
            files = target_files(cfg, data)
        except FileNotFoundError as exc:  # the folder's files are not the run's images
            log.warning("uploading the target images instead of registering paths: %s", exc)
        else:
            refs = file_refs(Path(cfg.data_root), store_dataset, files)
            return register_refs(client, run_id, refs)
    elif store_dataset:
        target_files(cfg, data)  # raises: a real dataset is resized while loading
    images = data.target.images.permute(0, 2, 3, 1).numpy()
    return client.register_images(run_id, list(zip(data.target.ids, images, strict=True)))

"""The one checkpoint format: the model as the product, loadable by every command.

A checkpoint is a ``torch.save``'d dict (loaded with ``weights_only=True``)::

    format         "adamcu.checkpoint"
    version        1 (FORMAT_VERSION)
    config         TrainConfig.to_dict() of the run (model name or "package.module:function")
    classes        [{"id", "name", "color"}], ids 0..K-1 = the model's output channels
    model          the network's state_dict
    normalization  {"scale": 255.0, "mean": [...], "std": [...], "channels": "RGB"}
    image_size     [H, W] the images were trained at
    label_summary  {"labeled_pixels", "per_group", "images", "height", "width"}
    label_bank     the label bank's tensors (labels, groups, asked) or None

Writers may add keys (the worker keeps its resume state: iteration, run_id, dccm, ...; DDP
the evaluation point). ``pretrain`` (its cache, one process or DDP), ``adamcu train``,
``adamcu bench``, the worker and ``trainer.distributed`` write it; ``predict``, ``evaluate``,
``init_checkpoint`` and the worker's resume read it, always through :func:`read`. Older files:
a dict with ``config`` and ``model`` (the train/bench, worker and DDP files before version 1)
is upgraded on load; a bare state dict (the DDP pre-training cache before version 1) is a
pre-training cache's weights, and is refused elsewhere with a message (it has no class table),
except as ``init_checkpoint``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from trainer.config import TrainConfig
from trainer.data.folder import IMAGENET_MEAN, IMAGENET_STD
from trainer.data.validate import (
    ClassInfo,
    DatasetError,
    default_color,
    fingerprint,
    read_classes,
)
from trainer.learning.labelbank import LabelBank
from trainer.nets.model import build_model

FORMAT = "adamcu.checkpoint"
FORMAT_VERSION = 1
log = logging.getLogger("adamcu.checkpoint")


class CheckpointError(ValueError):
    """A file that is not a checkpoint this version can use; the message says why and what to do."""


def normalization() -> dict[str, Any]:
    """What the network's input is: uint8 RGB / scale, minus mean, over std (per channel)."""
    return {
        "scale": 255.0,
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
        "channels": "RGB",
    }


def class_table(names: list[str], colors: list[tuple[int, int, int]]) -> list[dict[str, Any]]:
    """[{"id", "name", "color"}] for ids 0..K-1 (a default colour where none is given)."""
    colors = (list(colors) + [default_color(i) for i in range(len(names))][len(colors) :])[
        : len(names)
    ]
    pairs = zip(names, colors, strict=True)
    return [{"id": i, "name": n, "color": list(c)} for i, (n, c) in enumerate(pairs)]


def data_classes(data: Any) -> list[dict[str, Any]]:
    """The class table of a ``trainer.loop.train.Data`` (class_names, class_colors)."""
    return class_table(data.class_names, data.class_colors)


def label_summary(bank: LabelBank) -> dict[str, Any]:
    """How many pixels were labeled, per group, out of which images (no tensors)."""
    n, h, w = bank.shape
    per_group = {k: v for k, v in bank.counts().items() if v}
    return {
        "labeled_pixels": bank.num_labeled,
        "per_group": per_group,
        "images": n,
        "height": h,
        "width": w,
    }


def payload(
    cfg: TrainConfig,
    model: nn.Module,
    classes: list[dict[str, Any]],
    image_size: tuple[int, int],
    bank: LabelBank | None = None,
    *,
    keep_bank: bool = False,
    **extra: Any,
) -> dict[str, Any]:
    """The checkpoint dict (see the module docstring); ``extra`` keys are kept as they are."""
    return {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "config": cfg.to_dict(),
        "classes": classes,
        "model": model.state_dict(),
        "normalization": normalization(),
        "image_size": [int(image_size[0]), int(image_size[1])],
        "label_summary": label_summary(bank) if bank is not None else None,
        "label_bank": bank.state_dict() if bank is not None and keep_bank else None,
        **extra,
    }


def save(path: Path, data: dict[str, Any]) -> None:
    """Write atomically (a reader never sees half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(data, tmp)
    os.replace(tmp, path)


@dataclass
class Checkpoint:
    config: TrainConfig
    classes: list[ClassInfo]
    state: dict[str, torch.Tensor]
    normalization: dict[str, Any]
    image_size: tuple[int, int] | None
    raw: dict[str, Any]

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def config_from(values: dict[str, Any]) -> TrainConfig:
    """A TrainConfig from a saved dict; keys this version does not know are dropped (logged)."""
    known = {f.name for f in fields(TrainConfig)}
    dropped = sorted(set(values) - known)
    if dropped:
        log.warning("checkpoint config keys unknown to this version ignored: %s", dropped)
    return TrainConfig(**{k: v for k, v in values.items() if k in known})


def read(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The raw dict of a checkpoint file (or a bare state dict)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as exc:
        raise CheckpointError(f"{path} is not a checkpoint this version can read ({exc})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} holds a {type(data).__name__}, not a checkpoint dict")
    return data


def pretrain_key(cfg: TrainConfig, data_root: Path) -> str:
    """The name of a pre-training cache file's weights: the config fields pre-training reads
    and the data (the generator's meta.json, or a user's folder by its files)."""
    meta = data_root / "meta.json"
    parts = {
        k: getattr(cfg, k)
        for k in (
            "model",
            "embed_dim",
            "pretrained",
            "frozen_bn",
            "pretrain_iterations",
            "pretrain_lr",
            "momentum",
            "weight_decay",
            "batch_source",
            "batch_target",
            "seed",
            "fda_beta",
            "translated_dir",
            "source_split",
        )
    }
    # the source draw's switches, named only when off their defaults (older keys stay valid)
    if not cfg.source_flip:
        parts["source_flip"] = False
    if cfg.source_distinct:
        parts["source_distinct"] = True
    if meta.is_file():
        parts["data"] = meta.read_text()
    else:  # a user's folder: its files, so an edited folder is pre-trained afresh
        parts["data"] = (
            f"{data_root.resolve()}:{fingerprint(data_root) if data_root.is_dir() else ''}"
        )
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def cached_weights(path: Path, device: torch.device | str) -> dict[str, torch.Tensor]:
    """The weights of a pre-training cache file: this format's or a bare state dict (older)."""
    data = read(path, device)
    return data if is_state_dict(data) else data["model"]


def is_state_dict(data: dict[str, Any]) -> bool:
    return bool(data) and all(isinstance(v, torch.Tensor) for v in data.values())


def _classes_of(path: Path, data: dict[str, Any], cfg: TrainConfig) -> list[ClassInfo]:
    if "classes" in data:
        return [ClassInfo(int(c["id"]), str(c["name"]), tuple(c["color"])) for c in data["classes"]]
    if "class_names" in data:  # adamcu train / bench before version 1
        names = list(data["class_names"])
        return [ClassInfo(i, n, default_color(i)) for i, n in enumerate(names)]
    try:  # the worker and DDP before version 1 kept no class table: the data folder's, if there
        return read_classes(Path(cfg.data_root))
    except DatasetError:
        raise CheckpointError(
            f"{path} is an older worker or DDP checkpoint without a class table and its data "
            f"folder {cfg.data_root} is gone; put the dataset back there or retrain with this "
            "version"
        ) from None


def load(path: Path, map_location: str | torch.device = "cpu") -> Checkpoint:
    """Read any checkpoint this version knows (see the module docstring) or refuse clearly."""
    data = read(path, map_location)
    if data.get("format") == FORMAT and int(data.get("version", 0)) > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} is checkpoint format version {data['version']}; this adamcu reads up to "
            f"{FORMAT_VERSION}: upgrade adamcu"
        )
    if is_state_dict(data):
        raise CheckpointError(
            f"{path} is a bare state dict (an older pre-training cache, or torch.save of a "
            "model's weights): it has no config or class table. Use it as init_checkpoint in "
            "a config, or produce a checkpoint with `adamcu train` / `adamcu bench`"
        )
    if not isinstance(data.get("config"), dict) or not isinstance(data.get("model"), dict):
        raise CheckpointError(f"{path} is not an adamcu checkpoint (no config and model)")
    cfg = config_from(data["config"])
    size = data.get("image_size")
    return Checkpoint(
        config=cfg,
        classes=_classes_of(Path(path), data, cfg),
        state=data["model"],
        normalization=data.get("normalization") or normalization(),
        image_size=(int(size[0]), int(size[1])) if size else None,
        raw=data,
    )


def build(ckpt: Checkpoint, device: torch.device | str = "cpu") -> nn.Module:
    """The checkpoint's network, weights loaded, in eval mode on ``device``."""
    cfg = ckpt.config
    model = build_model(
        cfg.model, ckpt.num_classes, embed_dim=cfg.embed_dim, frozen_bn=cfg.frozen_bn
    )
    try:
        model.load_state_dict(ckpt.state)
    except RuntimeError as exc:
        raise CheckpointError(f"the weights do not fit model {cfg.model!r}: {exc}") from None
    return model.to(device).eval()


def init_weights(model: nn.Module, path: Path, class_names: list[str]) -> str:
    """Load a trained segmentation checkpoint into ``model`` (``init_checkpoint``).

    An adamcu checkpoint must have the same classes; a bare state dict is loaded into the
    whole model, or else into ``model.backbone`` (a user's own plain network wrapped by the
    logits adapter: its aux and projection heads start fresh). Returns what was loaded.
    """
    data = read(path)
    if not is_state_dict(data):
        ckpt = load(path)
        names = [c.name for c in ckpt.classes]
        if names != list(class_names):
            raise CheckpointError(
                f"init_checkpoint {path} has classes {names}, the data has {list(class_names)}"
            )
        data = ckpt.state
    try:
        model.load_state_dict(data)
        return "model"
    except RuntimeError as whole:
        inner = getattr(model, "backbone", None)
        if inner is not None:
            try:
                inner.load_state_dict(data)
                return "backbone"
            except RuntimeError:
                pass
        raise CheckpointError(f"init_checkpoint {path} does not fit the model: {whole}") from None

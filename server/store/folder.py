"""The folder backend: ``<root>/<dataset>/<path>``, nothing read outside a dataset's folder."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from server.store.base import CHUNK, UPLOADS, BadKey, check_key, missing


class FolderStore:
    """Datasets are the sub-folders of ``root`` (a dataset folder may itself be a link to a
    mounted disk) or the folders ``datasets`` names (``ADAMCU_STORE_DATASETS``); a file is
    opened only if its real path lies inside its dataset's real path, so ``..``, absolute paths
    and links that escape are refused (422 ``bad_store_key``). Only ``uploads`` is written."""

    name = "folder"

    def __init__(self, root: Path | str, datasets: dict[str, Path] | None = None) -> None:
        self.root = Path(root)
        self.datasets = {k: Path(v) for k, v in (datasets or {}).items() if k != UPLOADS}

    def _resolve(self, dataset: str, path: str) -> Path:
        check_key(dataset, path)
        base = os.path.realpath(self.datasets.get(dataset, self.root / dataset))
        real = os.path.realpath(os.path.join(base, path))
        if os.path.commonpath([base, real]) != base:
            raise BadKey(f"Path {path!r} leaves dataset {dataset!r} (a link out of the store?).")
        return Path(real)

    def open(self, dataset: str, path: str) -> BinaryIO:
        real = self._resolve(dataset, path)
        try:
            return real.open("rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise missing(dataset, path) from None

    def exists(self, dataset: str, path: str) -> bool:
        return self._resolve(dataset, path).is_file()

    def put_file(self, dataset: str, path: str, local: Path) -> None:
        target = self._resolve(dataset, path)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(local, target)

    def scratch(self) -> Path:
        folder = self.root / UPLOADS / ".incoming"
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def iter_bytes(self, dataset: str, path: str) -> Iterator[bytes]:
        with self.open(dataset, path) as f:
            yield from iter(lambda: f.read(CHUNK), b"")

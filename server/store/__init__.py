"""Image store: PNG files addressed by dataset and path, read where they already are.

Backends: a folder on disk (``folder``, the default: ``ADAMCU_STORE_ROOT``, one sub-folder
per dataset) or an S3-compatible bucket (``s3``: ``ADAMCU_S3_BUCKET``, one prefix per
dataset). Uploads land in the reserved dataset ``uploads``, content-addressed by sha256.
"""

from __future__ import annotations

from server.store.base import UPLOADS, Store, StoredFile, upload_path
from server.store.folder import FolderStore

__all__ = ["UPLOADS", "FolderStore", "Store", "StoredFile", "make_store", "upload_path"]


def make_store(settings) -> Store:  # noqa: ANN001  (server.settings.Settings; no cycle)
    """The store the settings name."""
    if settings.store_backend == "s3":
        from server.store.s3 import S3Store

        return S3Store.from_settings(settings)
    return FolderStore(settings.store_root, settings.store_datasets)

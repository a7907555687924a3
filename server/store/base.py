"""The store interface, key checks and the streamed hash shared by every backend."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from server.errors import BadRequest, ImageNotFound

UPLOADS = "uploads"  # the dataset the server writes uploads into; every other one is read-only
CHUNK = 1 << 20
_DATASET = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


class BadKey(BadRequest):
    status, code, message = 422, "bad_store_key", "The dataset or path is not a key in the store."


class HashMismatch(BadRequest):
    status, code, message = 422, "hash_mismatch", "The file's sha256 is not the one stated."


@dataclass(frozen=True)
class StoredFile:
    """What a registration records about one file: where it is and what it holds."""

    dataset: str
    path: str
    sha256: str
    bytes: int


def check_key(dataset: str, path: str) -> None:
    """A dataset is a plain name; a path is relative, ``/``-separated, with no empty, ``.`` or
    ``..`` segment, no backslash, ``:`` or control character (else 422 ``bad_store_key``)."""
    if not _DATASET.fullmatch(dataset):
        raise BadKey(f"Dataset {dataset!r} is not a name (letters, digits, '.', '_', '-').")
    if (
        not path
        or len(path) > 500
        or "\\" in path
        or ":" in path
        or any(ord(c) < 0x20 or c == "\x7f" for c in path)
        or any(part in ("", ".", "..") for part in path.split("/"))
    ):
        raise BadKey(f"Path {path!r} is not a relative path inside dataset {dataset!r}.")


def upload_path(sha256: str) -> str:
    """Where an upload with this content hash lives in the ``uploads`` dataset."""
    return f"{sha256[:2]}/{sha256}.png"


def hash_stream(stream: BinaryIO) -> tuple[str, int]:
    """sha256 hex and length of what is left in ``stream``, read in 1 MiB chunks."""
    digest, size = hashlib.sha256(), 0
    for chunk in iter(lambda: stream.read(CHUNK), b""):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def missing(dataset: str, path: str) -> ImageNotFound:
    return ImageNotFound(f"No file {path!r} in dataset {dataset!r} of the image store.")


class Store(Protocol):
    """What the server needs of a backend. Every method checks the key first."""

    name: str

    def open(self, dataset: str, path: str) -> BinaryIO:
        """The file for reading (seekable); ``ImageNotFound`` if absent."""
        ...

    def put_file(self, dataset: str, path: str, local: Path) -> None:
        """Move (folder) or copy (s3) the finished local file ``local`` to the key."""
        ...

    def exists(self, dataset: str, path: str) -> bool: ...

    def scratch(self) -> Path:
        """A folder for a streamed upload's temporary file (same filesystem when it can)."""
        ...

    def iter_bytes(self, dataset: str, path: str) -> Iterator[bytes]:
        """The file's bytes in chunks, for a streamed response."""
        ...

"""The S3 backend (AWS S3, MinIO, any S3-compatible store) through boto3.

Object key: ``<prefix><dataset>/<path>``. Reads spool to a temporary file past 8 MiB, so a
large object never sits whole in memory. Credentials come from boto3's usual sources
(``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``, a profile, an instance role).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from server.store.base import CHUNK, check_key, missing

SPOOL_BYTES = 8 << 20


class S3Store:
    name = "s3"

    def __init__(self, client: Any, bucket: str, prefix: str = "") -> None:
        self.client, self.bucket, self.prefix = client, bucket, prefix

    @classmethod
    def from_settings(cls, settings: Any) -> S3Store:
        try:
            import boto3
        except ImportError as exc:  # an optional dependency: pip install 'adamcu[s3]'
            raise RuntimeError("ADAMCU_STORE_BACKEND=s3 needs boto3: pip install boto3") from exc
        if not settings.s3_bucket:
            raise RuntimeError("ADAMCU_STORE_BACKEND=s3 needs ADAMCU_S3_BUCKET")
        client = boto3.client("s3", endpoint_url=settings.s3_endpoint_url or None)
        return cls(client, settings.s3_bucket, settings.s3_prefix)

    def _key(self, dataset: str, path: str) -> str:
        check_key(dataset, path)
        return f"{self.prefix}{dataset}/{path}"

    def _get(self, dataset: str, path: str) -> Any:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(dataset, path))["Body"]
        except self.client.exceptions.NoSuchKey:
            raise missing(dataset, path) from None

    def open(self, dataset: str, path: str) -> BinaryIO:
        body = self._get(dataset, path)
        spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)
        for chunk in iter(lambda: body.read(CHUNK), b""):
            spool.write(chunk)
        body.close()
        spool.seek(0)
        return spool  # type: ignore[return-value]

    def exists(self, dataset: str, path: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(dataset, path))
        except self.client.exceptions.ClientError:
            return False
        return True

    def put_file(self, dataset: str, path: str, local: Path) -> None:
        self.client.upload_file(str(local), self.bucket, self._key(dataset, path))
        local.unlink(missing_ok=True)

    def scratch(self) -> Path:
        return Path(tempfile.gettempdir())

    def iter_bytes(self, dataset: str, path: str) -> Iterator[bytes]:
        body = self._get(dataset, path)
        try:
            yield from iter(lambda: body.read(CHUNK), b"")
        finally:
            body.close()

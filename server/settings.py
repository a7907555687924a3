"""Server configuration from the environment (prefix ``ADAMCU_``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from server import resources

DEV_ADMIN_TOKEN = "dev-admin-token"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ADAMCU_", extra="ignore")

    database_url: str = "sqlite:///./adamcu.db"
    redis_url: str | None = None
    redis_prefix: str = "adamcu"
    admin_token: str = DEV_ADMIN_TOKEN
    environment: Literal["development", "production", "test"] = "development"
    cors_origins: list[str] = []
    max_body_bytes: int = 2 * 1024 * 1024
    # A request whose request line and headers are larger is refused (431)
    max_header_bytes: int = Field(default=64 * 1024, ge=1024)
    default_lease_seconds: int = 120
    # Requests that run at once in a worker process's thread pool (the rest wait in line, in
    # order). Many threads only fight over the GIL and the CPU: the tail latency grows.
    threads: int = Field(default=8, ge=1, le=256)
    # An uploaded image with more pixels is refused (413) before it is decoded.
    max_image_pixels: int = Field(default=40_000_000, ge=1, le=16384 * 16384)
    # The image store (server/store/): a folder with one sub-folder per dataset, or S3
    store_backend: Literal["folder", "s3"] = "folder"
    store_root: Path = Path("./adamcu-store")
    # more datasets by name, anywhere on disk: '{"cityscapes": "/mnt/cityscapes"}' (JSON)
    store_datasets: dict[str, Path] = {}
    s3_bucket: str = ""
    s3_endpoint_url: str = ""  # e.g. http://minio:9000; empty: AWS S3
    s3_prefix: str = ""
    # A streamed upload (POST /api/v1/uploads, raw image/png) larger than this is refused (413)
    max_upload_bytes: int = Field(default=64 * 1024 * 1024, ge=1)
    # Decoded images kept for crops, per server process (an LRU bounded in bytes)
    crop_cache_bytes: int = Field(default=256 * 1024 * 1024, ge=0)
    web_dir: Path | None = Field(default_factory=resources.web_dir)
    # adamcu-server's log lines: one JSON object each (with the request id), or plain text
    log_format: Literal["json", "text"] = "json"

    @model_validator(mode="after")
    def _refuse_default_secret(self) -> Settings:
        weak = not self.admin_token or self.admin_token == DEV_ADMIN_TOKEN
        if self.environment == "production" and weak:
            raise ValueError(
                "ADAMCU_ADMIN_TOKEN must be set to a non-default secret when "
                "ADAMCU_ENVIRONMENT=production"
            )
        if not self.admin_token:
            raise ValueError("ADAMCU_ADMIN_TOKEN must not be empty")
        return self

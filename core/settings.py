"""Every setting of the service, in one place, read from the environment.

With nothing set, the service runs embedded: SQLite and local storage under ``./data`` and
an in-process worker. Setting ``DATABASE_URL``, ``REDIS_URL`` and the ``S3_*`` variables
turns the same code into the distributed deployment.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    data_dir: Path = Field(Path("data"), description="Root for embedded SQLite and local storage.")
    database_url: str | None = Field(
        None, description="SQLAlchemy URL; default sqlite:///<data_dir>/xai-compress.db."
    )
    redis_url: str | None = Field(
        None, description="Celery broker; unset means the in-process (embedded) worker."
    )
    queue_name: str = "compress"

    storage_backend: Literal["local", "s3"] = "local"
    storage_path: Path | None = Field(
        None, description="Local storage root; default data_dir/objects."
    )
    s3_endpoint_url: str | None = None
    s3_public_endpoint_url: str | None = Field(
        None, description="S3 address clients use for downloads, if not s3_endpoint_url."
    )
    s3_bucket: str = "xai-compress"
    s3_access_key_id: str | None = None
    s3_secret_access_key: str | None = None
    s3_region: str = "us-east-1"
    presigned_url_seconds: int = Field(300, ge=10, le=86400)

    max_model_bytes: int = Field(512 * 1024**2, description="Largest model upload (413 above).")
    max_dataset_bytes: int = Field(2 * 1024**3, description="Largest dataset upload (413 above).")
    job_soft_time_limit: int = Field(3 * 3600, description="Seconds before a job is asked to stop.")
    job_time_limit: int = Field(3 * 3600 + 300, description="Seconds before a job is killed.")
    stale_job_seconds: int = Field(
        600, description="No heartbeat for this long: the job is reaped."
    )
    worker_threads: int = Field(0, description="torch threads per job; 0 = all cores / 1 job.")

    webhook_timeout_seconds: float = Field(10.0, gt=0, le=60)
    webhook_max_attempts: int = Field(6, ge=1, le=20)
    webhook_retry_base_seconds: float = Field(
        5.0, gt=0, description="Retry n waits base * 2**(n-1) seconds."
    )
    webhook_allow_private_networks: bool = Field(
        False,
        description="Let webhooks call loopback, private, link-local and other non-global "
        "addresses (development only: receivers on this machine or a private network). Off, "
        "every address a webhook host resolves to must be on the public internet.",
    )
    webhook_concurrency: int = Field(
        16, ge=1, le=256, description="Webhook attempts in flight at once, per sender."
    )
    webhook_per_endpoint_concurrency: int = Field(
        2, ge=1, le=64, description="Attempts in flight to any one endpoint, per sender."
    )
    webhook_max_response_bytes: int = Field(
        64 * 1024, ge=0, description="Bytes of a receiver's answer read, at most."
    )

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'xai-compress.db'}"

    @property
    def resolved_storage_path(self) -> Path:
        return self.storage_path or self.data_dir / "objects"

    @property
    def embedded(self) -> bool:
        return self.redis_url is None


@lru_cache
def get_settings() -> Settings:
    return Settings()

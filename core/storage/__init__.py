"""Object storage for models, datasets and results: one interface, a local and an S3 backend."""

from __future__ import annotations

from core.settings import Settings
from core.storage.contract import (
    ObjectNotFound,
    Storage,
    StorageError,
    StorageUnavailable,
    attachment_header,
    validate_key,
)
from core.storage.local import LocalStorage

__all__ = [
    "LocalStorage",
    "ObjectNotFound",
    "Storage",
    "StorageError",
    "StorageUnavailable",
    "attachment_header",
    "make_storage",
    "validate_key",
]


def make_storage(settings: Settings) -> Storage:
    """The backend the settings ask for: local files by default, S3 when configured."""
    if settings.storage_backend == "local":
        return LocalStorage(settings.resolved_storage_path)
    # Imported here so the embedded deployment never loads boto3.
    from core.storage.s3 import S3Storage

    return S3Storage(
        endpoint_url=settings.s3_endpoint_url,
        bucket=settings.s3_bucket,
        access_key_id=settings.s3_access_key_id,
        secret_access_key=settings.s3_secret_access_key,
        region=settings.s3_region,
        presign_seconds=settings.presigned_url_seconds,
        public_endpoint_url=settings.s3_public_endpoint_url,
        connect_timeout=settings.s3_connect_timeout_seconds,
        read_timeout=settings.s3_read_timeout_seconds,
    )

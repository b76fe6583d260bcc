"""S3-compatible storage (AWS, SeaweedFS, MinIO, moto) for the distributed deployment."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
from boto3.exceptions import Boto3Error
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from botocore.response import StreamingBody

from core.storage.contract import (
    DEFAULT_CHUNK_SIZE,
    ObjectNotFound,
    Storage,
    StorageUnavailable,
    attachment_header,
    validate_key,
    validate_prefix,
)

# Error codes that mean "nothing there". HEAD answers carry no body, hence the bare "404"; the
# bucket itself is created lazily on first write, so a missing bucket also means a missing object.
_NOT_FOUND = {"404", "NoSuchKey", "NotFound", "NoSuchBucket"}


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class S3Storage(Storage):
    """Objects in one bucket of an S3-compatible endpoint.

    Path-style addressing and signature v4 work with every S3-compatible server, where
    virtual-host buckets would need DNS for each bucket name. `connect_timeout`, `read_timeout` and
    `max_attempts` bound how long an unreachable or silent endpoint blocks a request or the
    readiness probe.
    """

    def __init__(
        self,
        endpoint_url: str | None,
        bucket: str,
        access_key_id: str | None,
        secret_access_key: str | None,
        region: str,
        presign_seconds: int,
        *,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        max_attempts: int = 3,
        public_endpoint_url: str | None = None,
    ) -> None:
        self.endpoint_url = endpoint_url
        self.bucket = bucket
        self.region = region
        self.presign_seconds = presign_seconds
        self._bucket_ready = False
        # A session per storage: boto3's default session is shared global state.
        session = boto3.session.Session()

        def client(url: str | None, attempts: int = max_attempts) -> Any:
            config = Config(
                signature_version="s3v4",
                s3={"addressing_style": "path"},
                connect_timeout=connect_timeout,
                read_timeout=read_timeout,
                # total, the first try included (botocore's "max_attempts" counts retries only)
                retries={"mode": "standard", "total_max_attempts": attempts},
            )
            return session.client(
                "s3",
                endpoint_url=url,
                aws_access_key_id=access_key_id,
                aws_secret_access_key=secret_access_key,
                region_name=region,
                config=config,
            )

        self._client = client(endpoint_url)
        self._one_try = client(endpoint_url, attempts=1)
        # Presigned URLs are signed for the address clients use, which in a container
        # network differs from the one the service uses.
        self._presigner = client(public_endpoint_url) if public_endpoint_url else self._client

    @contextlib.contextmanager
    def _errors(self, key: str | None = None) -> Iterator[None]:
        """Translate botocore errors into ObjectNotFound (for `key`) or StorageUnavailable."""
        try:
            yield
        except ClientError as exc:
            if key is not None and _code(exc) in _NOT_FOUND:
                raise ObjectNotFound(key) from exc
            raise self._unavailable(exc) from exc
        except (BotoCoreError, Boto3Error) as exc:  # upload_file wraps errors in Boto3Error
            raise self._unavailable(exc) from exc

    def _unavailable(self, exc: Exception) -> StorageUnavailable:
        where = self.endpoint_url or "AWS S3"
        return StorageUnavailable(f"S3 storage {where} bucket {self.bucket!r} failed: {exc}")

    def ensure_bucket(self) -> None:
        """Create the bucket if it does not exist yet, so a fresh deployment needs no setup."""
        with self._errors():
            try:
                self._client.head_bucket(Bucket=self.bucket)
            except ClientError as exc:
                if _code(exc) not in _NOT_FOUND:
                    raise
                kwargs = {}
                if self.region != "us-east-1":  # the one region S3 refuses as a constraint
                    kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
                try:
                    self._client.create_bucket(Bucket=self.bucket, **kwargs)
                except ClientError as create_exc:
                    # Another process may have won the race (servers differ in the code they send);
                    # a bucket that is really someone else's fails the next write instead.
                    if _code(create_exc) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                        raise
        self._bucket_ready = True

    def _ensure_bucket_once(self) -> None:
        if not self._bucket_ready:
            self.ensure_bucket()

    def put_file(self, key: str, path: Path) -> None:
        validate_key(key)
        self._ensure_bucket_once()
        # upload_file is boto3's managed transfer: multipart in bounded parts, constant memory.
        with self._errors():
            self._client.upload_file(str(path), self.bucket, key)

    def put_bytes(self, key: str, data: bytes) -> None:
        validate_key(key)
        self._ensure_bucket_once()
        with self._errors():
            self._client.put_object(Bucket=self.bucket, Key=key, Body=data)

    def iter_chunks(self, key: str, chunk_size: int = DEFAULT_CHUNK_SIZE) -> Iterator[bytes]:
        validate_key(key)
        if chunk_size <= 0:
            raise ValueError("chunk_size must be positive")
        with self._errors(key):
            body = self._client.get_object(Bucket=self.bucket, Key=key)["Body"]
        return self._read_chunks(key, body, chunk_size)

    def _read_chunks(self, key: str, body: StreamingBody, chunk_size: int) -> Iterator[bytes]:
        try:
            with self._errors(key):
                yield from body.iter_chunks(chunk_size)
        finally:
            body.close()

    def download_to(self, key: str, path: Path) -> None:
        validate_key(key)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        # download_file writes a temp file and renames it, so `path` is never half-written.
        with self._errors(key):
            self._client.download_file(self.bucket, key, str(path))

    def size(self, key: str) -> int:
        validate_key(key)
        with self._errors(key):
            return int(self._client.head_object(Bucket=self.bucket, Key=key)["ContentLength"])

    def exists(self, key: str) -> bool:
        try:
            self.size(key)
        except ObjectNotFound:
            return False
        return True

    def delete(self, key: str) -> None:
        validate_key(key)
        with contextlib.suppress(ObjectNotFound), self._errors(key):
            self._client.delete_object(Bucket=self.bucket, Key=key)

    def _forget(self, key: str) -> None:
        with contextlib.suppress(ObjectNotFound), self._errors(key):
            self._one_try.delete_object(Bucket=self.bucket, Key=key)

    def delete_prefix(self, prefix: str) -> None:
        folder = validate_prefix(prefix) + "/"
        paginator = self._client.get_paginator("list_objects_v2")
        with contextlib.suppress(ObjectNotFound), self._errors(folder):
            # Pages hold at most 1000 keys, exactly what one delete_objects call accepts.
            for page in paginator.paginate(Bucket=self.bucket, Prefix=folder):
                objects = [{"Key": obj["Key"]} for obj in page.get("Contents", [])]
                if not objects:
                    continue
                result = self._client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": objects, "Quiet": True}
                )
                if result.get("Errors"):
                    raise StorageUnavailable(
                        f"S3 could not delete under {folder!r}: {result['Errors'][:3]}"
                    )

    def presigned_url(self, key: str, filename: str | None = None) -> str | None:
        params = {"Bucket": self.bucket, "Key": validate_key(key)}
        if filename is not None:
            params["ResponseContentDisposition"] = attachment_header(filename)
        with self._errors():
            return self._presigner.generate_presigned_url(
                "get_object", Params=params, ExpiresIn=self.presign_seconds
            )

    def check(self) -> None:
        self.ensure_bucket()
        probe = f".readiness/{uuid.uuid4().hex}"
        with self._errors():
            self._client.put_object(Bucket=self.bucket, Key=probe, Body=b"ok")
            self._client.delete_object(Bucket=self.bucket, Key=probe)

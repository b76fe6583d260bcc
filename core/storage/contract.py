"""The storage interface every backend implements, its errors and key rules.

Models, datasets and results are stored as objects under relative POSIX keys such as
``projects/prj_x/models/mdl_y/model.bin``. The API and the worker only talk to `Storage`, so the
embedded deployment (local disk) and the distributed one (S3-compatible store) share all code
above this layer.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

DEFAULT_CHUNK_SIZE = 1 << 20
log = logging.getLogger("core.storage")


class StorageError(Exception):
    """Base of the errors a backend raises, so callers can catch storage trouble in one place."""


class ObjectNotFound(StorageError):
    """No object under the key; the API answers 404 instead of a server error."""

    def __init__(self, key: str) -> None:
        super().__init__(f"no object under key {key!r}")
        self.key = key


class StorageUnavailable(StorageError):
    """The backend cannot be reached or written; readiness fails and requests answer 503."""


def validate_key(key: str) -> str:
    """Return `key` if it is a safe relative POSIX key, else raise ValueError.

    Keys come partly from user-visible ids, so this is defense in depth against path traversal.
    Empty and ``.`` components are refused too: ``a//b`` and ``a/./b`` are distinct S3 keys but
    the same local file, and the backends must agree on what a key names.
    """
    if not isinstance(key, str) or not key:
        raise ValueError("storage key must be a non-empty string")
    if "\x00" in key or "\\" in key:
        raise ValueError(f"storage key must not contain NUL or backslash: {key!r}")
    if key.startswith("/"):
        raise ValueError(f"storage key must be relative: {key!r}")
    if any(part in ("", ".", "..") for part in key.split("/")):
        raise ValueError(f"storage key has an empty, '.' or '..' component: {key!r}")
    return key


def validate_prefix(prefix: str) -> str:
    """Return the folder a prefix names, without its trailing slash; raise ValueError if unsafe.

    The empty prefix is refused so that one bad call cannot wipe the whole store.
    """
    return validate_key(prefix.removesuffix("/"))


def attachment_header(filename: str) -> str:
    """Content-Disposition value that makes browsers save the download as `filename`.

    RFC 6266: an ASCII fallback for old clients plus the exact UTF-8 name in ``filename*``.
    Shared by S3 presigned URLs and the API's own streaming of local objects.
    """
    fallback = "".join(
        c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in filename
    )
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


class Storage(ABC):
    """Object storage behind one interface; every method validates its key first."""

    @abstractmethod
    def put_file(self, key: str, path: Path) -> None:
        """Store the finished local file `path` under `key`, replacing any previous object.

        Big uploads are spooled to disk first and handed over here, so this must not read the
        file into memory. The file may be moved or deleted by this call; callers clean up with
        ``path.unlink(missing_ok=True)`` afterwards.
        """

    def put_new_file(self, key: str, path: Path) -> None:
        """`put_file` under a key nothing else uses (one made of a fresh id), leaving nothing
        behind when it fails.

        A write that fails may still have landed: the store took the bytes and the answer was
        lost, or the retry after a timeout went through. So on failure the key is deleted too,
        as far as the store can be reached, and the write's error is raised; a store that is
        down for deletes as well keeps the object (the delete is logged, never hides the error).
        """
        try:
            self.put_file(key, path)
        except StorageError:
            try:
                self._forget(key)
            except StorageError as exc:
                log.warning("a failed write may have left %r behind: %s", key, exc)
            raise

    def _forget(self, key: str) -> None:
        """The delete after a failed write; a backend whose calls retry makes it one try, so
        a store that hangs costs the caller one more timeout, not another round of retries."""
        self.delete(key)

    @abstractmethod
    def put_bytes(self, key: str, data: bytes) -> None:
        """Store a small object (such as metrics.json) held in memory."""

    @abstractmethod
    def iter_chunks(self, key: str, chunk_size: int = DEFAULT_CHUNK_SIZE) -> Iterator[bytes]:
        """Stream the object in chunks of at most `chunk_size` bytes, in constant memory.

        Raises ObjectNotFound when called, before the first chunk, so the API can answer 404
        before a streaming response starts.
        """

    @abstractmethod
    def download_to(self, key: str, path: Path) -> None:
        """Copy the object to the local file `path` (the worker needs a real file to load)."""

    @abstractmethod
    def size(self, key: str) -> int:
        """Size of the object in bytes."""

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Whether an object is stored under `key`."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Delete the object; a missing key is not an error, so retries are safe."""

    @abstractmethod
    def delete_prefix(self, prefix: str) -> None:
        """Delete every object under the folder `prefix` (``a/b`` covers ``a/b/...``, not ``a/bc``).

        Used when a project or model goes away; idempotent like `delete`.
        """

    @abstractmethod
    def presigned_url(self, key: str, filename: str | None = None) -> str | None:
        """A time-limited GET URL for the object, or None when the API must stream it itself.

        With `filename` the download is served as an attachment of that name. The URL is signed
        offline: it does not check that the object exists.
        """

    @abstractmethod
    def check(self) -> None:
        """Readiness probe: raise StorageUnavailable unless the backend can be written now."""

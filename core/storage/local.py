"""Local-filesystem storage: the embedded default, one file per key under a root directory."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from core.storage.contract import (
    DEFAULT_CHUNK_SIZE,
    ObjectNotFound,
    Storage,
    StorageUnavailable,
    validate_key,
    validate_prefix,
)

_TMP_PREFIX = ".tmp-"


@contextlib.contextmanager
def _atomic_target(dest: Path) -> Iterator[Path]:
    """Yield a temp path next to `dest` and move it over `dest` only if the block succeeds.

    Readers never see a half-written object, and a crash leaves at most a stray temp file.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=_TMP_PREFIX, dir=dest.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def _read_chunks(f: BinaryIO, chunk_size: int) -> Iterator[bytes]:
    with f:
        while chunk := f.read(chunk_size):
            yield chunk


class LocalStorage(Storage):
    """Objects as files under `root`, which is created on first use."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        """The file for `key`, verified to lie inside the root even through symlinks."""
        root = self.root.resolve()
        path = (root / validate_key(key)).resolve()
        if not path.is_relative_to(root):
            raise ValueError(f"storage key escapes the storage root: {key!r}")
        return path

    def put_file(self, key: str, path: Path) -> None:
        dest = self._path(key)
        with self._unwritable(key):
            dest.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.replace(path, dest)
            except OSError as exc:
                if exc.errno != errno.EXDEV:
                    raise
                # Different filesystem: rename is impossible, copy then swap in atomically.
                with _atomic_target(dest) as tmp:
                    shutil.copyfile(path, tmp)
                Path(path).unlink()

    def put_bytes(self, key: str, data: bytes) -> None:
        with self._unwritable(key), _atomic_target(self._path(key)) as tmp:
            tmp.write_bytes(data)

    @contextlib.contextmanager
    def _unwritable(self, key: str) -> Iterator[None]:
        """A disk that is full, read-only or gone is the store being unavailable (503)."""
        try:
            yield
        except OSError as exc:
            raise StorageUnavailable(
                f"local storage {self.root} cannot store {key!r}: {exc}"
            ) from exc

    def iter_chunks(self, key: str, chunk_size: int = DEFAULT_CHUNK_SIZE) -> Iterator[bytes]:
        if chunk_size <= 0:
            raise ValueError("chunk_size must be positive")
        try:
            f = self._path(key).open("rb")
        except (FileNotFoundError, IsADirectoryError) as exc:
            raise ObjectNotFound(key) from exc
        return _read_chunks(f, chunk_size)

    def download_to(self, key: str, path: Path) -> None:
        src = self._path(key)
        if not src.is_file():
            raise ObjectNotFound(key)
        with _atomic_target(Path(path)) as tmp:
            shutil.copyfile(src, tmp)

    def size(self, key: str) -> int:
        path = self._path(key)
        if not path.is_file():
            raise ObjectNotFound(key)
        return path.stat().st_size

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        with contextlib.suppress(NotADirectoryError):  # a file where a folder should be: gone
            self._path(key).unlink(missing_ok=True)

    def delete_prefix(self, prefix: str) -> None:
        path = self._path(validate_prefix(prefix))
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            shutil.rmtree(path)

    def presigned_url(self, key: str, filename: str | None = None) -> str | None:
        validate_key(key)
        return None

    def check(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(prefix=_TMP_PREFIX, dir=self.root) as probe:
                probe.write(b"ok")
                probe.flush()
        except OSError as exc:
            raise StorageUnavailable(
                f"local storage root {self.root} is not writable: {exc}"
            ) from exc

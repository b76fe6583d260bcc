"""Read files out of an untrusted zip or tar archive, in memory, without being abused by it.

Uploaded archives are attacker-controlled. Nothing is extracted to disk, so path traversal
cannot overwrite files, but such names (and links, devices) only appear in crafted archives,
so they are refused outright. Sizes are bounded four ways: the number of members, the sum of
the sizes members declare, how many times a member (or a compressed tar stream) inflates, and
a read that never takes more than a member declared; together they stop zip bombs before
they reach memory.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import re
import stat
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from functools import partial
from typing import IO

from compression.data.sniff import ACCEPTED_FORMATS, Container, sniff
from compression.errors import UnsafeArchive, UnsupportedFormat
from compression.intake_limits import (
    COMPRESSION_RATIO_FLOOR_BYTES,
    DEFAULT_LIMITS,
    IntakeLimits,
    check_ratio,
)

# Tar headers, long-name/pax records and block padding surround every member's data; this is a
# generous bound per member for the cap on the decompressed tar stream as a whole.
_TAR_OVERHEAD_PER_MEMBER = 4096
_TAR_OVERHEAD_FIXED = 20 * 1024

_DECOMPRESSORS: dict[Container, Callable[[str | os.PathLike[str]], IO[bytes]]] = {
    Container.TAR: partial(open, mode="rb"),
    Container.GZIP: gzip.open,
    Container.BZIP2: bz2.open,
    Container.XZ: lzma.open,
}

_READ_ERRORS = (
    tarfile.TarError,
    zipfile.BadZipFile,
    EOFError,
    lzma.LZMAError,
    OSError,
    NotImplementedError,
)


@dataclass(frozen=True)
class _Entry:
    """One archive member, as much as the safety checks need before it is read."""

    name: str
    kind: str  # "file", "folder", or what a refused member is ("symbolic link", ...)
    size: int
    open: Callable[[], IO[bytes]]
    compressed: int | None = None  # stored size of a zip member; tar streams are capped whole


def read_files(
    path: str | os.PathLike[str],
    wanted: Callable[[str], bool],
    limits: IntakeLimits = DEFAULT_LIMITS,
) -> Iterator[tuple[str, bytes]]:
    """Yield ``(name, content)`` for each regular file whose normalised name is ``wanted``.

    Every member is checked, wanted or not, so an unsafe archive is refused as a whole. Names
    come back with ``/`` separators and without ``.`` components. Members are read one at a
    time; only the current one is held by this generator. ``limits`` bounds the number of
    members, their total size and how much each inflates.
    """
    max_members, max_total_bytes = limits.max_archive_members, limits.max_archive_expanded_bytes
    max_ratio = limits.max_compression_ratio
    container = sniff(path)
    if container is None:
        raise UnsupportedFormat(f"The file is not a zip or tar archive. Upload {ACCEPTED_FORMATS}.")
    if container is Container.ZIP:
        entries = _zip_entries(path)
    else:
        stream_cap = max_total_bytes + _TAR_OVERHEAD_PER_MEMBER * max_members + _TAR_OVERHEAD_FIXED
        if container is not Container.TAR:
            inflated = max(max_ratio * os.path.getsize(path), COMPRESSION_RATIO_FLOOR_BYTES)
            stream_cap = min(stream_cap, int(min(inflated, stream_cap)))
        entries = _tar_entries(path, container, stream_cap)
    declared = 0
    try:
        for count, entry in enumerate(entries, start=1):
            if count > max_members:
                raise UnsafeArchive(
                    f"The archive has more than {max_members} members (the limit "
                    "max_archive_members); split it or upload fewer files."
                )
            name = safe_name(entry.name)
            if entry.kind == "folder":
                continue
            if entry.kind != "file":
                raise UnsafeArchive(
                    f"Member {entry.name!r} is a {entry.kind}; archives may only hold regular "
                    "files and folders."
                )
            declared += entry.size
            if declared > max_total_bytes:
                raise UnsafeArchive(
                    f"The archive expands to more than {max_total_bytes} bytes (the limit "
                    "max_archive_expanded_bytes); upload a smaller archive."
                )
            if entry.compressed is not None:
                check_ratio(max_ratio, entry.size, entry.compressed, f"Member {entry.name!r}")
            if wanted(name):
                yield name, _read_bounded(entry)
    except _READ_ERRORS as exc:
        raise UnsupportedFormat(
            f"The archive could not be read ({exc}); it may be damaged. Upload {ACCEPTED_FORMATS}."
        ) from exc


def safe_name(name: str) -> str:
    """Normalise a member name, refusing absolute paths and ``..`` (path traversal)."""
    posix = name.replace("\\", "/")
    if posix.startswith("/") or re.match(r"[A-Za-z]:(/|$)", posix):
        raise UnsafeArchive(
            f"Member {name!r} has an absolute path; use paths relative to the root."
        )
    parts = [part for part in posix.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchive(f"Member {name!r} points outside the archive ('..'); remove it.")
    return "/".join(parts)


def _read_bounded(entry: _Entry) -> bytes:
    """Read a member, taking at most one byte more than it declared to detect a lie."""
    try:
        with entry.open() as fh:
            data = fh.read(entry.size + 1)
    except zipfile.BadZipFile as exc:  # zipfile stops at the declared size; the CRC then fails
        raise UnsafeArchive(
            f"Member {entry.name!r} does not match its declared size or checksum; the archive is "
            "damaged or crafted to expand beyond its stated size."
        ) from exc
    if len(data) > entry.size:
        raise UnsafeArchive(
            f"Member {entry.name!r} expands beyond the {entry.size} bytes it declares."
        )
    return data


def _zip_entries(path: str | os.PathLike[str]) -> Iterator[_Entry]:
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            yield _Entry(
                info.filename, _zip_kind(info), info.file_size, partial(archive.open, info),
                info.compress_size,
            )  # fmt: skip


def _zip_kind(info: zipfile.ZipInfo) -> str:
    if info.is_dir():
        return "folder"
    mode = info.external_attr >> 16  # Unix st_mode, where the creating tool recorded one
    if stat.S_ISLNK(mode):
        return "symbolic link"
    if stat.S_IFMT(mode) not in (0, stat.S_IFREG):
        return "special file"
    if info.flag_bits & 0x1:
        raise UnsupportedFormat(f"Member {info.filename!r} is encrypted; upload it unencrypted.")
    return "file"


def _tar_entries(
    path: str | os.PathLike[str], container: Container, stream_cap: int
) -> Iterator[_Entry]:
    with ExitStack() as stack:
        raw = stack.enter_context(_DECOMPRESSORS[container](path))
        archive = stack.enter_context(
            tarfile.open(fileobj=_CappedReader(raw, stream_cap), mode="r|")
        )
        for member in archive:
            # In stream mode only the current member is readable, so it must be read before the
            # loop advances; read_files does that before asking for the next entry.
            yield _Entry(member.name, _tar_kind(member), member.size, _opener(archive, member))


def _opener(archive: tarfile.TarFile, member: tarfile.TarInfo) -> Callable[[], IO[bytes]]:
    def open_member() -> IO[bytes]:
        fh = archive.extractfile(member)
        assert fh is not None, "regular tar members always have data"
        return fh

    return open_member


def _tar_kind(member: tarfile.TarInfo) -> str:
    if member.isreg():
        return "file"
    if member.isdir():
        return "folder"
    if member.issym():
        return "symbolic link"
    if member.islnk():
        return "hard link"
    return "device or special file"


class _CappedReader(io.RawIOBase):
    """A decompressed stream that refuses to yield more than ``limit`` bytes in total.

    tarfile reads long-name and pax records into memory whole, before any per-member check can
    run; capping the stream underneath bounds those too.
    """

    def __init__(self, raw: IO[bytes], limit: int) -> None:
        super().__init__()
        self._raw = raw
        self._left = limit

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:
        data = self._raw.read(min(len(buffer), self._left + 1))
        if len(data) > self._left:
            raise UnsafeArchive(
                "The archive decompresses to more data than its size limits allow "
                "(max_archive_expanded_bytes, max_compression_ratio); upload a smaller archive."
            )
        self._left -= len(data)
        buffer[: len(data)] = data
        return len(data)

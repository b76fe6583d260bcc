"""Recognise an upload's container by its first bytes, never by its file name.

Users rename files freely (``data.zip`` that is a tarball, ``.npz`` saved as ``.bin``), so the
loaders decide what they hold from magic bytes, which cannot disagree with the content.
"""

from __future__ import annotations

import os
from enum import Enum

ACCEPTED_FORMATS = (
    "an .npz with arrays x (samples) and y (integer labels), or a .zip, .tar or .tar.gz of "
    "image folders (class_name/image.png, .jpg, .jpeg or .bmp)"
)

_TAR_MAGIC_OFFSET = 257


class Container(Enum):
    """The outer layer of an upload; compressed kinds are read as tar streams."""

    ZIP = "zip"
    TAR = "tar"
    GZIP = "gzip"
    BZIP2 = "bzip2"
    XZ = "xz"


_PREFIXES = (
    (b"PK\x03\x04", Container.ZIP),
    (b"PK\x05\x06", Container.ZIP),  # an empty zip: caught later as "no images"
    (b"\x1f\x8b", Container.GZIP),
    (b"BZh", Container.BZIP2),
    (b"\xfd7zXZ\x00", Container.XZ),
)


def sniff(path: str | os.PathLike[str]) -> Container | None:
    """Return the container ``path`` holds, or None when it is none of the accepted ones."""
    with open(path, "rb") as fh:
        head = fh.read(_TAR_MAGIC_OFFSET + 5)
    for prefix, container in _PREFIXES:
        if head.startswith(prefix):
            return container
    if head[_TAR_MAGIC_OFFSET:] == b"ustar":
        return Container.TAR
    return None

"""The byte framing of a packed file: a fixed prefix, a deflated JSON header, the sections.

    magic b"XAIC" | version u16 | header length u32 | header (raw deflate of UTF-8 JSON) | ...

All integers little-endian. The sections follow the header back to back in the order
``section_order`` gives; the framing checks that their lengths add up to exactly the rest of
the file, so a truncated or spliced file is caught before any payload is decoded.
"""

from __future__ import annotations

import struct
import zlib

from pydantic import ValidationError

from compression.errors import InvalidModel
from compression.packed.header import Header, section_order

MAGIC = b"XAIC"
FORMAT_VERSION = 2
PREFIX = struct.Struct("<4sHI")
MAX_HEADER_BYTES = 64 << 20
"""A header that inflates beyond this is refused (a deflate bomb in 4 bytes of length)."""


def assemble(header: Header, sections: list[bytes]) -> bytes:
    """The file: ``sections`` must be the payloads in ``section_order(header)``."""
    expected = [stream.length for _, stream in section_order(header)]
    if [len(data) for data in sections] != expected:
        raise ValueError("section payloads do not match the lengths the header gives")
    deflater = zlib.compressobj(9, zlib.DEFLATED, -15)
    text = header.model_dump_json(exclude_defaults=True).encode()
    packed = deflater.compress(text) + deflater.flush()
    return b"".join([PREFIX.pack(MAGIC, FORMAT_VERSION, len(packed)), packed, *sections])


def parse(data: bytes) -> tuple[Header, list[tuple[str, bytes]]]:
    """Check the framing; return the header and every section as (name, bytes) in order."""
    if len(data) < PREFIX.size:
        raise InvalidModel(
            f"packed file is truncated: {len(data)} bytes, shorter than its "
            f"{PREFIX.size}-byte prefix"
        )
    magic, version, header_length = PREFIX.unpack_from(data)
    if magic != MAGIC:
        raise InvalidModel(f"not a packed model file: it starts with {magic!r}, not {MAGIC!r}")
    if version != FORMAT_VERSION:
        raise InvalidModel(
            f"packed format version {version} is not supported; this reader reads version "
            f"{FORMAT_VERSION}"
        )
    payload_start = PREFIX.size + header_length
    if len(data) < payload_start:
        raise InvalidModel(
            f"packed file is truncated inside its header: {len(data)} bytes, the header ends "
            f"at byte {payload_start}"
        )
    header = _header(data[PREFIX.size : payload_start])
    sections = []
    offset = payload_start
    for name, stream in section_order(header):
        end = offset + stream.length
        if end > len(data):
            raise InvalidModel(
                f"packed file is truncated: section {name!r} ends at byte {end}, but the file "
                f"has {len(data)} bytes"
            )
        sections.append((name, data[offset:end]))
        offset = end
    if offset != len(data):
        raise InvalidModel(
            f"packed file has {len(data) - offset} trailing bytes after its last section"
        )
    return header, sections


def _header(packed: bytes) -> Header:
    inflater = zlib.decompressobj(-15)
    try:
        text = inflater.decompress(packed, MAX_HEADER_BYTES + 1)
    except zlib.error as exc:
        raise InvalidModel(f"packed file header does not inflate: {exc}") from exc
    if len(text) > MAX_HEADER_BYTES:
        raise InvalidModel(f"packed file header inflates beyond {MAX_HEADER_BYTES} bytes")
    if not inflater.eof or inflater.unused_data:
        raise InvalidModel("packed file header is cut short or followed by stray bytes")
    try:
        return Header.model_validate_json(text)
    except ValidationError as exc:
        raise InvalidModel(f"packed file header is not valid: {_first_error(exc)}") from exc


def _first_error(exc: ValidationError) -> str:
    error = exc.errors(include_url=False)[0]
    where = ".".join(str(part) for part in error["loc"]) or "document"
    return f"{where}: {error['msg']}"

"""The byte framing of a packed file: a fixed prefix, a JSON header, sections back to back.

    magic b"XAIC" | version u16 | header length u32 | header (UTF-8 JSON) | sections...

All integers little-endian. The framing knows nothing about layers; it only guarantees that
every section the header names lies exactly inside the file, in order, with nothing missing
and nothing left over, so a truncated or spliced file is caught before any payload is read.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from pydantic import ValidationError

from compression.errors import InvalidModel
from compression.packed.header import Header, LayerEntry, Section

MAGIC = b"XAIC"
FORMAT_VERSION = 1
PREFIX = struct.Struct("<4sHI")


def assemble(layers: Sequence[LayerEntry], sections: Sequence[tuple[str, bytes]]) -> bytes:
    """Lay out the sections in the given order and write the header that indexes them."""
    index: list[Section] = []
    offset = 0
    for name, data in sections:
        index.append(Section(name=name, offset=offset, length=len(data)))
        offset += len(data)
    header = Header(sections=index, layers=list(layers)).model_dump_json().encode()
    prefix = PREFIX.pack(MAGIC, FORMAT_VERSION, len(header))
    return b"".join([prefix, header, *(data for _, data in sections)])


def parse(data: bytes) -> tuple[Header, dict[str, bytes]]:
    """Check the framing and return the header and every section's bytes by name."""
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
    try:
        header = Header.model_validate_json(data[PREFIX.size : payload_start])
    except ValidationError as exc:
        raise InvalidModel(f"packed file header is not valid: {_first_error(exc)}") from exc
    return header, _sections(header, data, payload_start)


def _sections(header: Header, data: bytes, payload_start: int) -> dict[str, bytes]:
    payload_length = len(data) - payload_start
    sections: dict[str, bytes] = {}
    expected = 0
    for section in header.sections:
        if section.name in sections:
            raise InvalidModel(f"packed file names section {section.name!r} twice")
        if section.offset != expected:
            raise InvalidModel(
                f"packed section {section.name!r} starts at {section.offset}, expected "
                f"{expected}: sections must follow each other without gaps"
            )
        expected += section.length
        if expected > payload_length:
            raise InvalidModel(
                f"packed file is truncated: section {section.name!r} ends at payload byte "
                f"{expected}, but the payload has {payload_length} bytes"
            )
        start = payload_start + section.offset
        sections[section.name] = data[start : start + section.length]
    if expected != payload_length:
        raise InvalidModel(
            f"packed file has {payload_length - expected} trailing bytes after its last section"
        )
    return sections


def _first_error(exc: ValidationError) -> str:
    error = exc.errors(include_url=False)[0]
    where = ".".join(str(part) for part in error["loc"]) or "document"
    return f"{where}: {error['msg']}"

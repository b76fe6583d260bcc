"""Stream a multipart upload to storage in constant memory, with a hard size limit.

The request body is parsed as it arrives (python-multipart's push parser): the file part goes
to a temporary file chunk by chunk while its SHA-256 and size are computed, small form fields
are kept in memory (bounded). The limit is enforced on the bytes actually received, so a
client that lies about Content-Length or streams chunked still gets a 413, and nothing of a
refused upload is kept.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from fastapi import Request
from python_multipart import MultipartParser
from python_multipart.multipart import parse_options_header

from core.problems import Problem

MAX_FIELD_BYTES = 64 * 1024
FILE_FIELD = "file"


@dataclass
class ReceivedUpload:
    path: Path
    filename: str
    size: int
    sha256: str
    fields: dict[str, str]


@dataclass
class _State:
    limit: int
    sink: IO[bytes]
    hasher: hashlib._Hash = field(default_factory=hashlib.sha256)
    size: int = 0
    filename: str | None = None
    fields: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    header_name: bytes = b""
    header_value: bytes = b""
    part_name: str | None = None
    part_is_file: bool = False
    part_value: bytearray = field(default_factory=bytearray)

    def header_field(self, data: bytes, start: int, end: int) -> None:
        self.header_name += data[start:end]

    def header_value_part(self, data: bytes, start: int, end: int) -> None:
        self.header_value += data[start:end]

    def header_end(self) -> None:
        self.headers[self.header_name.decode("latin-1").lower()] = self.header_value.decode(
            "latin-1"
        )
        self.header_name, self.header_value = b"", b""

    def headers_done(self) -> None:
        _, options = parse_options_header(self.headers.get("content-disposition", ""))
        self.part_name = options.get(b"name", b"").decode()
        raw_filename = options.get(b"filename")
        self.part_is_file = self.part_name == FILE_FIELD and raw_filename is not None
        if self.part_is_file:
            self.filename = os.path.basename(raw_filename.decode("utf-8", "replace")) or "upload"
        self.part_value = bytearray()
        self.headers = {}

    def data(self, data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        if self.part_is_file:
            self.size += len(chunk)
            if self.size > self.limit:
                raise Problem(
                    413, "payload_too_large", "Upload too large",
                    f"The file exceeds the limit of {self.limit} bytes.", limit_bytes=self.limit,
                )  # fmt: skip
            self.hasher.update(chunk)
            self.sink.write(chunk)
        else:
            self.part_value += chunk
            if len(self.part_value) > MAX_FIELD_BYTES:
                raise Problem(400, "bad_request", "Form field too large", self.part_name or "")

    def part_end(self) -> None:
        if not self.part_is_file and self.part_name:
            self.fields[self.part_name] = self.part_value.decode("utf-8", "replace")


async def receive_upload(request: Request, limit: int) -> ReceivedUpload:
    """Parse the multipart body; the caller owns (and must delete or move) ``path``."""
    content_type, options = parse_options_header(request.headers.get("content-type", ""))
    if content_type != b"multipart/form-data" or b"boundary" not in options:
        raise Problem(
            415, "unsupported_media_type", "Expected multipart/form-data",
            f"Send the file as multipart/form-data in a field named '{FILE_FIELD}'.",
        )  # fmt: skip
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit + MAX_FIELD_BYTES * 4:
        raise Problem(
            413, "payload_too_large", "Upload too large",
            f"The request declares {declared} bytes; the limit is {limit}.", limit_bytes=limit,
        )  # fmt: skip
    handle = tempfile.NamedTemporaryFile(prefix="upload-", delete=False)  # noqa: SIM115
    state = _State(limit=limit, sink=handle)
    parser = MultipartParser(
        options[b"boundary"],
        callbacks={
            "on_header_field": state.header_field,
            "on_header_value": state.header_value_part,
            "on_header_end": state.header_end,
            "on_headers_finished": state.headers_done,
            "on_part_data": state.data,
            "on_part_end": state.part_end,
        },
    )  # fmt: skip
    try:
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
    except BaseException:
        handle.close()
        os.unlink(handle.name)
        raise
    handle.close()
    if state.filename is None:
        os.unlink(handle.name)
        raise Problem(
            422, "validation_error", "No file",
            f"The multipart body has no file field named '{FILE_FIELD}'.",
        )  # fmt: skip
    return ReceivedUpload(
        Path(handle.name), state.filename, state.size, state.hasher.hexdigest(), state.fields
    )

"""Stream a multipart upload to storage in constant memory, with a hard size limit.

The request body is parsed as it arrives (python-multipart's push parser): the file part goes
to a temporary file while its SHA-256 and size are computed (hashing and disk writes run in
the threadpool, a megabyte at a time, never on the event loop), small form fields
are kept in memory (bounded in size and number). The limit is enforced on the bytes actually
received, so a client that lies about Content-Length or streams chunked still gets a 413.
A body that is not well-formed multipart (garbage, oversized part headers, cut off before
its closing boundary, two file parts) is a 400 ``invalid_multipart``; a file name that could
not name a stored object is a 422 ``invalid_filename``. Nothing of a refused upload is kept.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from fastapi import Request
from python_multipart import MultipartParser
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import parse_options_header
from starlette.concurrency import run_in_threadpool

from api.incoming import new_temp_file
from core.problems import Problem

MAX_FIELD_BYTES = 64 * 1024
MAX_FIELDS = 16
MAX_FILENAME_BYTES = 255
FILE_FIELD = "file"
FLUSH_BYTES = 1024 * 1024
"""File bytes gathered before they are hashed and written off the event loop."""


def invalid_multipart(detail: str) -> Problem:
    return Problem(400, "invalid_multipart", "Malformed multipart body", detail)


def _filename(raw: bytes) -> str:
    """The upload's base name, refused (not repaired) when it could not name a stored object."""
    name = raw.decode("utf-8", "replace").rsplit("/", 1)[-1]
    problem = (
        "contains a control character" if any(ord(c) < 32 or ord(c) == 127 for c in name)
        else "contains a backslash or a quote" if "\\" in name or '"' in name
        else "is empty, '.' or '..'" if name in ("", ".", "..")
        else f"is longer than {MAX_FILENAME_BYTES} bytes"
        if len(name.encode()) > MAX_FILENAME_BYTES
        else None
    )  # fmt: skip
    if problem:
        raise Problem(
            422, "invalid_filename", "Invalid file name",
            f"The file name {name[:80]!r} {problem}; send a plain file name such as model.pt2.",
        )  # fmt: skip
    return name


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
    known_fields: frozenset[str]
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
    pending: bytearray = field(default_factory=bytearray)
    ended: bool = False

    def flush(self) -> None:
        """Hash and write the gathered file bytes (blocking: called in the threadpool)."""
        self.hasher.update(self.pending)
        self.sink.write(self.pending)
        self.pending.clear()

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
            if self.filename is not None:
                raise invalid_multipart(f"The body has more than one '{FILE_FIELD}' part.")
            self.filename = _filename(raw_filename)
        elif self.part_name == FILE_FIELD:
            raise invalid_multipart(f"Part '{FILE_FIELD}' must be a file (with a filename).")
        elif len(self.fields) >= MAX_FIELDS:
            raise invalid_multipart(f"The body has more than {MAX_FIELDS} form fields.")
        elif self.part_name in self.fields:
            raise invalid_multipart(f"Form field {self.part_name[:80]!r} appears twice.")
        elif self.part_name not in self.known_fields:
            known = ", ".join(sorted({FILE_FIELD, *self.known_fields}))
            raise Problem(
                422, "validation_error", "Unknown form field",
                f"Form field {self.part_name[:80]!r} is not one of: {known}.",
            )  # fmt: skip
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
            self.pending += chunk
        else:
            self.part_value += chunk
            if len(self.part_value) > MAX_FIELD_BYTES:
                raise invalid_multipart(
                    f"Form field {self.part_name!r} is larger than {MAX_FIELD_BYTES} bytes."
                )

    def part_end(self) -> None:
        if not self.part_is_file and self.part_name is not None:
            self.fields[self.part_name] = self.part_value.decode("utf-8", "replace")

    def end(self) -> None:
        self.ended = True


async def receive_upload(
    request: Request, limit: int, fields: frozenset[str], directory: Path
) -> ReceivedUpload:
    """Parse the multipart body (the file and the form ``fields`` named) into a file in
    ``directory``; the caller owns (and must delete or move) ``path``."""
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
    handle = new_temp_file(directory)
    state = _State(limit=limit, sink=handle, known_fields=fields)
    callbacks = {
        "on_header_field": state.header_field,
        "on_header_value": state.header_value_part,
        "on_header_end": state.header_end,
        "on_headers_finished": state.headers_done,
        "on_part_data": state.data,
        "on_part_end": state.part_end,
        "on_end": state.end,
    }
    try:
        try:
            parser = MultipartParser(options[b"boundary"], callbacks=callbacks)
            async for chunk in request.stream():
                parser.write(chunk)
                if len(state.pending) >= FLUSH_BYTES:
                    await run_in_threadpool(state.flush)
            parser.finalize()
            await run_in_threadpool(state.flush)
        except FormParserError as exc:
            raise invalid_multipart(f"The body is not valid multipart/form-data: {exc}") from exc
        if not state.ended:
            raise invalid_multipart(
                "The body ends before the closing boundary; the upload was cut off."
            )
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

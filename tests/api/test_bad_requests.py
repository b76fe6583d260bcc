"""Ordinary bad input answers 4xx problem+json with a stable code, never 500, and leaves
nothing behind: no row, no stored object, no temporary file.

Multipart bodies are written byte by byte here, so the tests send exactly what a hostile or
broken client would (NUL in a file name, a part header of 64 KiB, a body cut off mid-way).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from core.tables import DatasetRecord, Job, ModelRecord
from tests.api.helpers import assert_problem, leftover_files

BOUNDARY = "xai-test-boundary"


@pytest.fixture(autouse=True)
def scratch_tmp(tmp_path: Path) -> Iterator[Path]:
    """Temporary files of this test land here, so the test can see that none are left."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    saved, tempfile.tempdir = tempfile.tempdir, str(folder)
    yield folder
    tempfile.tempdir = saved


def assert_nothing_left(client: TestClient, scratch: Path) -> None:
    with client.app.state.sessionmaker() as session:
        for table in (ModelRecord, DatasetRecord, Job):
            assert session.scalar(select(func.count()).select_from(table)) == 0, table
    storage = client.app.state.settings.resolved_storage_path
    assert not storage.exists() or not [p for p in storage.rglob("*") if p.is_file()]
    assert leftover_files(client, scratch) == []


def part(name: str, content: bytes, filename: bytes | None = None, extra: bytes = b"") -> bytes:
    disposition = b'form-data; name="' + name.encode() + b'"'
    if filename is not None:
        disposition += b'; filename="' + filename + b'"'
    head = b"--" + BOUNDARY.encode() + b"\r\nContent-Disposition: " + disposition + b"\r\n"
    return head + extra + b"\r\n" + content + b"\r\n"


def body(*parts: bytes, closed: bool = True) -> bytes:
    return b"".join(parts) + (b"--" + BOUNDARY.encode() + b"--\r\n" if closed else b"")


def post_raw(client: TestClient, path: str, content: bytes) -> Any:
    headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    return client.post(path, content=content, headers=headers)


FILE = b"\x80\x02 not a model"


@pytest.mark.parametrize(
    ("filename", "case"),
    [
        (b"..", "dot-dot"),
        (b".", "dot"),
        (b"", "empty"),
        (b"mod\x00el.pt2", "NUL"),
        (b"evil\r\nX-Injected: 1.pt2", "CRLF"),
        (b"..\\..\\evil.pt2", "backslash"),
        (b"m" * 252 + b".pt2", "256 bytes"),
    ],
)
def test_unusable_file_names_are_422(
    client: TestClient, scratch_tmp: Path, filename: bytes, case: str
) -> None:
    response = post_raw(client, "/v1/models", body(part("file", FILE, filename)))
    assert_problem(response, 422, "invalid_filename")
    assert_nothing_left(client, scratch_tmp)


@pytest.mark.parametrize(
    ("content", "case"),
    [
        (b"this is not multipart at all", "garbage"),
        (body(part("file", FILE, b"m.pt2", b"X-Long: " + b"a" * 65536 + b"\r\n")), "big header"),
        (body(part("file", FILE * 1000, b"m.pt2"), closed=False), "cut off"),
        (body(part("file", FILE, b"a.pt2"), part("file", FILE, b"b.pt2")), "two files"),
        (body(*(part("name", b"x") for _ in range(5000)), part("file", FILE, b"m.pt2")), "5000"),
        (body(part("name", b"x" * (64 * 1024 + 1)), part("file", FILE, b"m.pt2")), "big field"),
    ],
)
def test_malformed_multipart_is_400(
    client: TestClient, scratch_tmp: Path, content: bytes, case: str
) -> None:
    response = post_raw(client, "/v1/models", content)
    assert_problem(response, 400, "invalid_multipart")
    assert_nothing_left(client, scratch_tmp)


def test_upload_that_is_not_multipart_is_415(client: TestClient, scratch_tmp: Path) -> None:
    response = client.post("/v1/models", content=FILE, headers={"Content-Type": "text/plain"})
    assert_problem(response, 415, "unsupported_media_type")
    assert_nothing_left(client, scratch_tmp)


@pytest.mark.parametrize(
    ("fields", "case"),
    [
        ({"name": "n" * 201}, "name longer than its column"),
        ({"architecture": "a" * 65}, "architecture longer than its column"),
        ({"architecture": "mlp", "architecture_args": "{not json"}, "args not JSON"),
        ({"architecture": "mlp", "architecture_args": "[1, 2]"}, "args not an object"),
        ({"nmae": "typo"}, "unknown field"),
    ],
)
def test_refused_form_fields_leave_no_upload_behind(
    client: TestClient, scratch_tmp: Path, fields: dict[str, str], case: str
) -> None:
    parts = [part(name, value.encode()) for name, value in fields.items()]
    response = post_raw(client, "/v1/models", body(part("file", FILE, b"m.pt2"), *parts))
    assert_problem(response, 422, "validation_error")
    assert_nothing_left(client, scratch_tmp)


def _job(uploaded: dict[str, str], **extra: Any) -> dict[str, Any]:
    return {**uploaded, "steps": [{"type": "prune_filters"}], **extra}


@pytest.mark.parametrize(
    ("text", "case"),
    [
        ('"sweep": {"parameter": "ratio", "values": [Infinity]}', "Infinity in sweep"),
        ('"sweep": {"parameter": "ratio", "values": [NaN]}', "NaN in sweep"),
        ('"metadata": {"score": -Infinity}', "Infinity in metadata"),
        ('"seed": 1180591620717411303424', "seed 2**70"),
        ('"seed": -1', "negative seed"),
        ('"attribution": {"samples": 100000000000000000000}', "samples beyond reason"),
    ],
)
def test_job_values_json_or_the_engine_cannot_hold_are_422(
    client: TestClient, uploaded: dict[str, str], text: str, case: str
) -> None:
    prefix = json.dumps(_job(uploaded))[:-1]
    response = client.post(
        "/v1/jobs", content=f"{prefix}, {text}}}", headers={"Content-Type": "application/json"}
    )
    assert_problem(response, 422, "validation_error")
    assert client.get("/v1/jobs").json()["data"] == []


def test_ids_longer_than_their_columns_are_422(
    client: TestClient, uploaded: dict[str, str]
) -> None:
    response = client.post("/v1/jobs", json=_job(uploaded, model_id="mdl_" + "x" * 300))
    assert_problem(response, 422, "validation_error")


def test_a_json_body_beyond_the_limit_is_413(client: TestClient, uploaded: dict[str, str]) -> None:
    huge = _job(uploaded, metadata={"blob": "x" * (5 * 1024**2)})
    assert_problem(client.post("/v1/jobs", json=huge), 413, "payload_too_large")
    assert client.get("/v1/jobs").json()["data"] == []


def test_a_body_that_is_not_json_is_a_problem(client: TestClient) -> None:
    response = client.post(
        "/v1/jobs", content=b"model_id=x", headers={"Content-Type": "application/json"}
    )
    assert_problem(response, 422, "validation_error")


@pytest.mark.parametrize("after", ["1" + "0" * 39, str(2**63)])
def test_event_cursor_beyond_64_bits_is_422(
    client: TestClient, uploaded: dict[str, str], after: str
) -> None:
    job = client.post("/v1/jobs", json=_job(uploaded)).json()
    response = client.get(f"/v1/jobs/{job['id']}/events", params={"after": after})
    assert_problem(response, 422, "validation_error")
    response = client.get(
        f"/v1/jobs/{job['id']}/events",
        params={"limit": 1},
        headers={"Last-Event-ID": "1" + "0" * 39},
    )
    assert_problem(response, 422, "validation_error")


def test_405_names_the_allowed_methods(client: TestClient) -> None:
    response = client.put("/v1/models")
    assert_problem(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "GET, POST"
    response = client.post(f"/v1/models/{'mdl_x'}")
    assert_problem(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "DELETE, GET"

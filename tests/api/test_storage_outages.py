"""An S3 store that fails an upload's write (answers 503, never answers, or takes the write and
loses the answer): the API answers 503 problem+json with Retry-After in bounded time and leaves
no record, no object, no unfinished multipart upload and no temporary file. A real moto server
over HTTP behind a front that breaks the chosen requests; real Postgres."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from core.settings import Settings
from tests.api.helpers import assert_problem
from tests.s3_faults import FaultyS3, MotoServer

BUCKET = "uploads"
READ_TIMEOUT = 1.0


@pytest.fixture
def settings(clean_postgres: str, tmp_path: Path, faulty_s3: FaultyS3) -> Settings:
    return Settings(
        database_url=clean_postgres,
        redis_url=None,
        data_dir=tmp_path / "data",
        upload_temp_dir=tmp_path / "incoming",
        storage_backend="s3",
        s3_endpoint_url=faulty_s3.url,
        s3_bucket=BUCKET,
        s3_access_key_id="test",
        s3_secret_access_key="test",
        s3_connect_timeout_seconds=READ_TIMEOUT,
        s3_read_timeout_seconds=READ_TIMEOUT,
        readiness_timeout_seconds=1,
    )


class HeldDispatcher:
    """Keeps what it is handed: these tests end at the upload's write (validation has tests of
    its own), and a refused upload must hand nothing over."""

    def __init__(self) -> None:
        self.submitted: list[tuple[str, str]] = []

    def submit(self, task: str, record_id: str) -> None:
        self.submitted.append((task, record_id))

    def check(self) -> None:
        pass

    def queue_depth(self) -> int | None:
        return len(self.submitted)


@pytest.fixture
def app_client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings, HeldDispatcher())) as client:
        yield client


def _refused(client: TestClient, content: bytes, within: float) -> None:
    started = time.monotonic()
    response = client.post("/v1/datasets", files={"file": ("d.npz", content)})
    assert time.monotonic() - started < within
    body = assert_problem(response, 503, "storage_unavailable")
    assert response.headers["Retry-After"] == "5"
    assert "storage" in body["detail"] and "S3" not in body["detail"]  # no internals
    assert client.get("/v1/datasets").json()["data"] == []  # no half record
    assert list(client.app.state.incoming_dir.iterdir()) == []  # nor the received file
    assert client.app.state.dispatcher.submitted == []


@pytest.mark.parametrize("action", ["error", "hang", "lose"])
def test_a_failed_write_of_an_upload_is_a_503_that_leaves_nothing(
    client: TestClient, faulty_s3: FaultyS3, s3_server: MotoServer, action: str
) -> None:
    faulty_s3.fail("PUT", "/d.npz", action)
    _refused(client, b"samples", within=8 * READ_TIMEOUT)
    assert faulty_s3.met and {met[2] for met in faulty_s3.met} == {action}
    assert s3_server.keys(BUCKET) == []  # no orphan object, even where the write landed
    faulty_s3.heal()
    created = client.post("/v1/datasets", files={"file": ("d.npz", b"samples")})
    assert created.status_code == 201  # the same upload goes through once the store is back
    [stored] = s3_server.keys(BUCKET)
    assert stored.endswith(f"/datasets/{created.json()['id']}/d.npz")


def test_an_s3_that_never_answers_is_a_503_within_the_read_timeouts(
    client: TestClient, faulty_s3: FaultyS3, s3_server: MotoServer
) -> None:
    for method in ("HEAD", "GET", "PUT", "POST", "DELETE"):
        faulty_s3.fail(method, "/", "hang")  # connections are accepted, nothing is answered
    started = time.monotonic()
    body = assert_problem(client.get("/readyz"), 503, "not_ready")
    assert time.monotonic() - started < 2
    assert body["checks"]["storage"] is False
    _refused(client, b"samples", within=8 * READ_TIMEOUT)
    faulty_s3.heal()
    assert client.get("/readyz").status_code == 200


def test_a_multipart_upload_failing_in_a_part_is_aborted(
    client: TestClient, faulty_s3: FaultyS3, s3_server: MotoServer
) -> None:
    big = bytes(9 * 1024**2)  # above boto3's 8 MiB threshold: sent in parts
    faulty_s3.fail("PUT", "partNumber=2", "error")
    _refused(client, big, within=8 * READ_TIMEOUT)
    assert any("partNumber=2" in met[1] for met in faulty_s3.met)
    assert s3_server.keys(BUCKET) == []
    assert s3_server.multipart_uploads(BUCKET) == []  # no parts left billed in the bucket

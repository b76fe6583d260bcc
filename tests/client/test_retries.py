"""Retries: what is retried, how long the SDK waits, and that a retried create is one job."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from xai_compress_client import (
    Client,
    Dataset,
    JobCancelled,
    Model,
    NotFoundError,
    ServerError,
    TransportError,
    XaiCompressError,
)
from xai_compress_client.retry import retry_after_seconds

from tests.client.conftest import SLOW, Service, free_port
from tests.client.loopback import DroppingProxy, Reply, ScriptedServer, header

CREATED = "2026-01-01T00:00:00Z"
MODEL = {
    "object": "model", "id": "mdl_1", "name": "m", "filename": "m.pt2", "size_bytes": 3,
    "sha256": "0" * 64, "status": "ready", "error": None, "format": "pt2", "created_at": CREATED,
    "architecture": None, "architecture_args": None, "input_shape": [1, 8, 8],
    "num_classes": 10, "parameters": 1, "macs": 1, "a_field_from_a_newer_server": True,
}  # fmt: skip
JOB = {
    "object": "job", "id": "job_1", "status": "succeeded", "stage": None, "progress": 1.0,
    "eta_seconds": None, "error": None, "metrics": {}, "model_id": "mdl_1", "dataset_id": "ds_1",
    "eval_dataset_id": None, "spec": {}, "metadata": {}, "attempts": 1, "created_at": CREATED,
    "started_at": CREATED, "finished_at": CREATED,
}  # fmt: skip


def problem(status: int, code: str, **headers: str) -> Reply:
    return Reply(status, {"status": status, "code": code, "title": code, "detail": code}, headers)


def test_503_and_429_are_retried_after_the_advised_delay() -> None:
    script = {
        ("GET", "/v1/models/mdl_1"): [
            problem(503, "unavailable", **{"Retry-After": "1"}),
            problem(429, "rate_limited", **{"Retry-After": "1"}),
            Reply(200, MODEL),
        ]
    }
    with ScriptedServer(script) as server, Client(server.url, "key") as client:
        model = client.models.get("mdl_1")
    assert model.id == "mdl_1" and model.created_at.year == 2026
    first, second, third = server.seen
    assert second.at - first.at >= 0.95 and third.at - second.at >= 0.95
    assert third.at - first.at < 5


def test_retries_stop_after_max_retries() -> None:
    script = {("GET", "/v1/models/mdl_1"): [problem(503, "unavailable", **{"Retry-After": "0"})]}
    with (
        ScriptedServer(script) as server,
        Client(server.url, "key", max_retries=2) as client,
        pytest.raises(ServerError) as caught,
    ):
        client.models.get("mdl_1")
    assert (caught.value.status, caught.value.code) == (503, "unavailable")
    assert len(server.seen) == 3


@pytest.mark.parametrize(
    ("status", "code", "error"),
    [(400, "invalid_cursor", XaiCompressError), (404, "not_found", NotFoundError)],
)
def test_other_client_errors_are_not_retried(
    status: int, code: str, error: type[XaiCompressError]
) -> None:
    script = {("GET", "/v1/models/mdl_1"): [problem(status, code), Reply(200, MODEL)]}
    with (
        ScriptedServer(script) as server,
        Client(server.url, "key") as client,
        pytest.raises(error) as caught,
    ):
        client.models.get("mdl_1")
    assert type(caught.value) is error and caught.value.code == code
    assert len(server.seen) == 1


def test_an_unreachable_server_is_a_transport_error_after_retries() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with Client(url, "key", max_retries=1) as client, pytest.raises(TransportError) as caught:
        client.models.get("mdl_1")
    assert "2 attempt(s)" in str(caught.value)


def test_a_misconfigured_url_fails_at_once() -> None:
    with (
        Client("ftp://127.0.0.1", "key") as client,
        pytest.raises(TransportError, match=r"after 1 attempt\(s\)"),
    ):
        client.models.get("mdl_1")


def test_retry_after_is_read_as_seconds_or_as_an_http_date() -> None:
    in_30_s = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 28 <= retry_after_seconds(in_30_s) <= 30
    assert retry_after_seconds("2") == 2.0
    assert retry_after_seconds("next week") is None and retry_after_seconds(None) is None


def test_a_retried_upload_sends_the_whole_file_again(tmp_path: Path) -> None:
    weights = tmp_path / "weights.safetensors"
    weights.write_bytes(b"0123456789" * 10_000)
    script = {("POST", "/v1/models"): [problem(502, "bad_gateway"), Reply(201, MODEL)]}
    with ScriptedServer(script) as server, Client(server.url, "key") as client:
        client.models.upload(weights, architecture="mlp", architecture_args={"hidden": [8]})
    assert len(server.seen) == 2
    for seen in server.seen:  # each attempt carries the whole file (boundaries differ)
        assert weights.read_bytes() in seen.body and b'{"hidden": [8]}' in seen.body


def test_a_redirected_download_does_not_carry_the_api_key(tmp_path: Path) -> None:
    content = b"packed model bytes"
    artifact = {
        "name": "model.xaic", "content_type": "application/octet-stream",
        "size_bytes": len(content), "sha256": hashlib.sha256(content).hexdigest(),
        "download_url": "/v1/jobs/job_1/artifacts/model.xaic", "created_at": CREATED,
    }  # fmt: skip
    with ScriptedServer({("GET", "/bucket/model.xaic"): [Reply(200, content)]}) as store:
        script = {
            ("GET", "/v1/jobs/job_1"): [Reply(200, JOB)],
            ("GET", "/v1/jobs/job_1/artifacts"): [Reply(200, [artifact])],
            ("GET", "/v1/jobs/job_1/artifacts/model.xaic"): [
                Reply(307, None, {"Location": f"{store.url}/bucket/model.xaic?X-Amz-Signature=s"})
            ],
        }
        with ScriptedServer(script) as api, Client(api.url, "secret-key") as client:
            [path] = client.jobs.get("job_1").download(tmp_path)
    assert path.read_bytes() == content
    assert all(seen.headers["Authorization"] == "Bearer secret-key" for seen in api.seen)
    [fetch] = store.seen
    assert "Authorization" not in fetch.headers and "X-Amz-Signature" in fetch.path


def test_a_create_retried_after_a_lost_response_makes_exactly_one_job(
    client: Client, service: Service, uploaded: tuple[Model, Dataset]
) -> None:
    before = {job.id for job in client.jobs.list(limit=100)}
    proxy = DroppingProxy(urlsplit(service.url).port, drop=b"POST /v1/jobs ")
    try:
        with Client(proxy.url, service.key) as through_proxy:
            job = through_proxy.jobs.create(*uploaded, **SLOW)
    finally:
        proxy.close()

    posts = [r for r in proxy.first_requests if r.startswith(b"POST /v1/jobs ")]
    assert len(posts) == 2  # the lost one and the retry
    keys = {header(request, "Idempotency-Key") for request in posts}
    assert len(keys) == 1 and None not in keys
    created = {j.id for j in client.jobs.list(limit=100)} - before
    assert created == {job.id}

    with pytest.raises(JobCancelled):
        client.jobs.get(job.id).cancel().wait(timeout=60, progress=False, poll_interval=0.1)

"""The SDK against a real embedded server: upload, submit, follow, download, page, fail."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from pathlib import Path

import pytest
from xai_compress_client import (
    AuthenticationError,
    Client,
    ConflictError,
    Dataset,
    IntegrityError,
    Job,
    JobCancelled,
    JobFailed,
    Model,
    NotFoundError,
    UploadInvalid,
    ValidationError,
    WaitTimeout,
)

from tests.client.conftest import FAILING, FAST, PRUNE, SLOW, Service

ARTIFACTS = [
    "metrics.json",
    "model.fp32.onnx",
    "model.onnx",
    "model.pt2",
    "model.xaic",
    "report.html",
    "scores.safetensors",
]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def finished_job(client: Client, uploaded: tuple[Model, Dataset]) -> Job:
    model, data = uploaded
    job = client.jobs.create(model, data, steps=PRUNE, metadata={"suite": "client"}, **FAST)
    assert job.status == "queued" and job.metadata == {"suite": "client"}
    return job.wait(timeout=120, progress=False, poll_interval=0.2)


def test_uploads_are_validated_by_the_server(
    uploaded: tuple[Model, Dataset], service: Service
) -> None:
    model, data = uploaded
    assert (model.status, model.name, model.format) == ("ready", "digits cnn", "pt2")
    assert model.sha256 == sha256(service.model_file)
    assert model.input_shape == [1, 8, 8] and model.num_classes == 10 and model.parameters > 0
    assert (data.status, data.samples, data.sample_shape) == ("ready", 1797, [1, 8, 8])


def test_an_invalid_upload_raises_with_the_servers_code(client: Client, tmp_path: Path) -> None:
    bogus = tmp_path / "model.onnx"
    bogus.write_bytes(b"this is not a model")
    record = client.models.upload(bogus)
    with pytest.raises(UploadInvalid) as caught:
        client.models.wait_ready(record.id, timeout=60)
    assert caught.value.code and caught.value.code == caught.value.record.error.code
    assert caught.value.record.status == "invalid"


def test_a_job_runs_to_success_and_its_feed_tells_the_story(
    finished_job: Job, client: Client
) -> None:
    job = finished_job
    assert (job.status, job.progress, job.error) == ("succeeded", 1.0, None)
    assert job.metrics["after"]["parameters"] < job.metrics["before"]["parameters"]
    assert job.finished_at >= job.started_at >= job.created_at
    assert job.created_at.utcoffset() == timedelta(0)  # RFC 3339 with its offset, parsed as UTC

    events = list(job.events())
    assert [e.data["status"] for e in events if e.type == "status"] == [
        "queued", "running", "succeeded"
    ]  # fmt: skip
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert {e.data["stage"] for e in events if e.type == "progress"} >= {"loading", "exporting"}
    assert [e.seq for e in job.events(after=3)] == [e.seq for e in events[3:]]
    assert list(job.events(follow=True)) == events  # a finished job's feed ends

    again = client.jobs.get(job.id)
    assert again == job and again is not job


def test_download_verifies_every_artifact(finished_job: Job, tmp_path: Path) -> None:
    listing = {artifact.name: artifact for artifact in finished_job.artifacts()}
    assert sorted(listing) == ARTIFACTS

    paths = finished_job.download(tmp_path / "all")
    assert sorted(path.name for path in paths) == ARTIFACTS
    assert sorted(p.name for p in (tmp_path / "all").iterdir()) == ARTIFACTS  # no partial files
    for path in paths:
        assert sha256(path) == listing[path.name].sha256
        assert path.stat().st_size == listing[path.name].size_bytes

    [metrics] = finished_job.download(tmp_path / "one", names=["metrics.json"])
    assert json.loads(metrics.read_text())["after"] == finished_job.metrics["after"]
    with pytest.raises(NotFoundError, match=r"model\.exe"):
        finished_job.download(tmp_path / "none", names=["model.exe"])


def test_a_corrupted_artifact_raises_integrity_error_and_leaves_no_file(
    finished_job: Job, service: Service, tmp_path: Path
) -> None:
    # Corrupt the stored object itself (same size), as a bad disk or a broken store would.
    objects = service.workdir / "data/objects/projects"
    [stored] = objects.glob(f"*/jobs/{finished_job.id}/attempt-1/model.onnx")
    original = stored.read_bytes()
    stored.write_bytes(original[:100] + bytes([original[100] ^ 0xFF]) + original[101:])
    try:
        with pytest.raises(IntegrityError, match="sha256"):
            finished_job.download(tmp_path, names=["model.onnx"])
    finally:
        stored.write_bytes(original)
    assert list(tmp_path.iterdir()) == []
    finished_job.download(tmp_path, names=["model.onnx"])  # fine again once restored


def test_lists_follow_the_cursor_across_pages(
    client: Client, uploaded: tuple[Model, Dataset], finished_job: Job, service: Service
) -> None:
    model, data = uploaded
    extra = [client.datasets.upload(service.data_file, name=f"copy {i}") for i in range(2)]
    one_by_one = [dataset.id for dataset in client.datasets.list(limit=1)]
    assert one_by_one == [dataset.id for dataset in client.datasets.list(limit=100)]
    assert one_by_one[:2] == [extra[1].id, extra[0].id] and data.id in one_by_one
    assert len(one_by_one) == len(set(one_by_one)) >= 3

    jobs = [client.jobs.create(model, data, **SLOW) for _ in range(2)]
    for job in jobs:
        job.cancel()
    listed = [job.id for job in client.jobs.list(limit=1)]
    assert listed[:2] == [jobs[1].id, jobs[0].id] and finished_job.id in listed
    assert listed == [job.id for job in client.jobs.list(limit=100)]
    succeeded = list(client.jobs.list(status="succeeded", limit=1))
    assert finished_job.id in {job.id for job in succeeded}
    assert {job.status for job in succeeded} == {"succeeded"}
    assert {job.model_id for job in client.jobs.list(model_id=model.id)} == {model.id}

    for dataset in extra:
        client.datasets.delete(dataset.id)
        with pytest.raises(NotFoundError):
            client.datasets.get(dataset.id)
    for job in jobs:
        with pytest.raises(JobCancelled):
            job.wait(timeout=60, progress=False, poll_interval=0.2)


def test_api_errors_map_to_typed_exceptions(
    client: Client, service: Service, uploaded: tuple[Model, Dataset]
) -> None:
    with pytest.raises(NotFoundError) as missing:
        client.jobs.get("job_missing")
    assert (missing.value.status, missing.value.code) == (404, "not_found")
    assert "job_missing" in missing.value.detail

    with Client(service.url, "xc_wrong_key") as stranger, pytest.raises(AuthenticationError) as bad:
        next(stranger.models.list())
    assert (bad.value.status, bad.value.code) == (401, "unauthorized")

    model, data = uploaded
    with pytest.raises(ValidationError) as invalid:
        client.jobs.create(model, data, steps=[{"type": "prune_filters", "ratio": 2}])
    assert invalid.value.code == "validation_error"
    assert any(error["loc"][-1] == "ratio" for error in invalid.value.errors)

    job = client.jobs.create(model, data, idempotency_key="errors-1", **SLOW)
    with pytest.raises(ConflictError) as reused:
        client.jobs.create(model, data, steps=PRUNE, idempotency_key="errors-1")
    assert reused.value.code == "idempotency_key_reused"
    same = client.jobs.create(model, data, idempotency_key="errors-1", **SLOW)
    assert same.id == job.id
    job.cancel()
    with pytest.raises(JobCancelled):
        job.wait(timeout=60, progress=False, poll_interval=0.2)


def test_the_environment_configures_the_client(
    service: Service, monkeypatch: pytest.MonkeyPatch, uploaded: tuple[Model, Dataset]
) -> None:
    monkeypatch.setenv("XAI_COMPRESS_URL", service.url)
    monkeypatch.setenv("XAI_COMPRESS_API_KEY", service.key)
    with Client.from_env() as client:
        assert client.models.get(uploaded[0].id) == uploaded[0]
    monkeypatch.delenv("XAI_COMPRESS_API_KEY")
    with Client(service.url) as keyless, pytest.raises(AuthenticationError):
        keyless.models.get(uploaded[0].id)


def test_a_failed_job_raises_job_failed_with_the_engines_code(
    client: Client, uploaded: tuple[Model, Dataset]
) -> None:
    job = client.jobs.create(*uploaded, **FAILING, **FAST)
    with pytest.raises(JobFailed) as failed:
        job.wait(timeout=60, progress=False, poll_interval=0.2)
    assert failed.value.code == "invalid_spec" and "no_such_layer" in failed.value.detail
    assert failed.value.job is job and job.status == "failed"


def test_waiting_times_out_and_cancel_stops_the_job(
    client: Client, uploaded: tuple[Model, Dataset]
) -> None:
    model, data = uploaded
    job = client.jobs.create(model, data, **SLOW)
    with pytest.raises(WaitTimeout):
        job.wait(timeout=0.3, progress=False, poll_interval=0.1)
    assert not job.done

    with pytest.raises(ConflictError) as in_use:
        client.models.delete(model.id)
    assert in_use.value.code == "model_in_use"

    assert job.cancel().status in {"cancelled", "cancelling"}
    with pytest.raises(JobCancelled) as cancelled:
        job.wait(timeout=60, progress=False, poll_interval=0.1)
    assert cancelled.value.job.status == "cancelled"
    assert job.cancel().status == "cancelled"  # idempotent
    assert list(job.events())[-1].data["status"] == "cancelled"

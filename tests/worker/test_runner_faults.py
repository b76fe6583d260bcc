"""Every write of an attempt is fenced by its attempt number; a cancel sees the row as it is
after the lock; the heartbeat survives the database going away; a store that fails while
artifacts are written gives the attempt back instead of failing the job, and the job lists one
attempt's whole set or nothing, with no object left beside it. Real Postgres throughout; a
real directory, or a real S3 server (moto's) over HTTP behind a front that breaks requests."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from core.job_state import AttemptSuperseded, locked_job, request_cancel
from core.settings import Settings
from core.storage import StorageUnavailable
from core.tables import (
    Artifact,
    Job,
    JobEvent,
    WebhookDelivery,
    WebhookEndpoint,
    utcnow,
)
from tests.s3_faults import FaultyS3, MotoServer
from tests.worker.rows import add_project_with_uploads, job_1
from tests.worker.tcp_proxy import TcpProxy
from worker import runner
from worker.job_progress import Heartbeat, JobProgress
from worker.reaper import reap
from worker.resources import Resources, build_resources

BUCKET = "artifacts"
ARTIFACTS = ("metrics.json", "model.onnx", "model.pt2", "report.html")


def _settings(database_url: str, tmp_path: Path, **storage: Any) -> Settings:
    return Settings(database_url=database_url, data_dir=tmp_path, stale_job_seconds=3, **storage)


@pytest.fixture
def resources(clean_postgres: str, tmp_path: Path) -> Iterator[Resources]:
    yield from _seeded(_settings(clean_postgres, tmp_path))


@pytest.fixture
def s3_resources(clean_postgres: str, tmp_path: Path, faulty_s3: FaultyS3) -> Iterator[Resources]:
    """Storage on a real S3 server over HTTP, behind the front that breaks what a test asks."""
    s3 = {
        "storage_backend": "s3", "s3_endpoint_url": faulty_s3.url, "s3_bucket": BUCKET,
        "s3_access_key_id": "test", "s3_secret_access_key": "test",
        "s3_connect_timeout_seconds": 1, "s3_read_timeout_seconds": 1,
    }  # fmt: skip
    yield from _seeded(_settings(clean_postgres, tmp_path, **s3))


def _seeded(settings: Settings) -> Iterator[Resources]:
    """Resources with project prj_1, its model, dataset, webhook endpoint and queued job_1."""
    resources = build_resources(settings)
    with resources.sessionmaker() as session, session.begin():
        add_project_with_uploads(session)
        events = ["job.succeeded", "job.failed"]
        session.add(WebhookEndpoint(id="wh_1", project_id="prj_1", url="https://example.com/h",
                                    secret="whsec_x", events=events))  # fmt: skip
        session.flush()
        session.add(job_1())
    yield resources
    with resources.sessionmaker() as session, session.begin():  # deliveries are not truncated
        session.query(WebhookDelivery).delete()
        session.query(WebhookEndpoint).delete()
    resources.close()


def _requeue_and_claim_again(resources: Resources) -> int:
    """The reaper takes attempt 1 for dead (its heartbeat is old); attempt 2 claims the job."""
    with resources.sessionmaker() as session, session.begin():
        session.get(Job, "job_1").heartbeat_at = utcnow() - timedelta(minutes=5)
    assert reap(resources) == ["job_1"]
    return runner._claim(resources, "job_1")


def _deliveries(resources: Resources) -> list[str]:
    with resources.sessionmaker() as session:
        return list(session.scalars(select(WebhookDelivery.event)))


def test_a_superseded_attempt_writes_nothing_and_sends_no_second_webhook(
    resources: Resources, tmp_path: Path
) -> None:
    first = runner._claim(resources, "job_1")
    assert first == 1
    stale = JobProgress(resources.sessionmaker, "job_1", first)
    assert _requeue_and_claim_again(resources) == 2

    with pytest.raises(AttemptSuperseded):  # its progress report stops the engine
        stale.update("pruning", 0.5, 0.5)
    with pytest.raises(AttemptSuperseded):
        stale.should_cancel()
    artifact = tmp_path / "model.xaic"
    artifact.write_bytes(b"stale bytes")
    with pytest.raises(AttemptSuperseded):
        runner._store_artifacts(resources, "job_1", first, [artifact])
    assert not list(resources.settings.resolved_storage_path.rglob("model.xaic"))  # no orphan
    assert runner._end(resources, "job_1", first, "failed", "internal_error", "x") == "superseded"

    with resources.sessionmaker() as session:
        job = session.get(Job, "job_1")
        assert (job.status, job.attempts, job.error_code) == ("running", 2, None)
        assert session.scalar(select(func.count()).select_from(Artifact)) == 0
    assert _deliveries(resources) == []

    artifact.write_bytes(b"the owner's bytes")  # (local storage moved the first file away)
    runner._store_artifacts(resources, "job_1", 2, [artifact])  # the owner's writes go through
    assert runner._end(resources, "job_1", 2, "failed", "bad_input", "x") == "failed"
    assert runner._end(resources, "job_1", first, "cancelled") == "superseded"
    with resources.sessionmaker() as session:
        job = session.get(Job, "job_1")
        assert (job.status, job.error_code) == ("failed", "bad_input")
        statuses = session.scalars(
            select(JobEvent.data).where(JobEvent.type == "status").order_by(JobEvent.seq)
        ).all()
        [stored] = session.scalars(select(Artifact.storage_key)).all()
    assert [event["status"] for event in statuses] == [
        "running", "queued", "running", "failed"
    ]  # fmt: skip
    assert stored.endswith("/attempt-2/model.xaic")
    assert _deliveries(resources) == ["job.failed"]  # exactly one terminal webhook


def test_a_cancel_sees_the_claim_that_happened_after_it_read_the_job(
    resources: Resources,
) -> None:
    with resources.sessionmaker() as session, session.begin():
        seen = session.get(Job, "job_1")  # the API looked the job up: queued
        assert seen.status == "queued"
        assert runner._claim(resources, "job_1") == 1  # a worker claims it meanwhile
        job = locked_job(session, "job_1")
        request_cancel(session, job)
    with resources.sessionmaker() as session:
        job = session.get(Job, "job_1")
    assert job.status == "cancelling"  # asked to stop, not "cancelled" under a running worker
    assert runner._end(resources, "job_1", 1, "cancelled") == "cancelled"


def test_the_heartbeat_survives_the_database_going_away(
    resources: Resources, clean_postgres: str, tmp_path: Path
) -> None:
    url = make_url(clean_postgres)
    proxy = TcpProxy((url.host, url.port or 5432))
    through_proxy = url.set(host="127.0.0.1", port=proxy.port)
    settings = _settings(through_proxy.render_as_string(hide_password=False), tmp_path)
    flaky = build_resources(settings)
    attempt = runner._claim(flaky, "job_1")
    progress = JobProgress(flaky.sessionmaker, "job_1", attempt)

    def beat() -> object:
        with resources.sessionmaker() as session:
            return session.get(Job, "job_1").heartbeat_at

    try:
        with Heartbeat(flaky.sessionmaker, "job_1", progress, interval=0.2) as heartbeat:
            time.sleep(1.5)
            proxy.cut()
            time.sleep(2.5)  # beats fail: the database is unreachable
            during = beat()
            progress.update("pruning", 0.5, 0.5)  # progress is best-effort: no error
            proxy.restore()
            time.sleep(3.0)
            assert heartbeat.thread.is_alive()
            after = beat()
        assert after > during + timedelta(seconds=1)
        assert not progress.should_cancel()
    finally:
        proxy.close()
        flaky.close()


def test_a_store_failing_while_artifacts_are_written_retries_the_attempt(
    resources: Resources, tmp_path: Path
) -> None:
    root = resources.settings.resolved_storage_path
    root.parent.mkdir(parents=True, exist_ok=True)
    root.write_text("not a directory")  # the store's mount is gone
    artifact = tmp_path / "model.xaic"
    for attempt in (1, 2, 3):
        assert runner._claim(resources, "job_1") == attempt
        artifact.write_bytes(b"bytes")
        with pytest.raises(StorageUnavailable) as failure:
            runner._store_artifacts(resources, "job_1", attempt, [artifact])
        outcome = runner._requeue(resources, "job_1", attempt, failure.value)
        with resources.sessionmaker() as session:
            job = session.get(Job, "job_1")
            assert session.scalar(select(func.count()).select_from(Artifact)) == 0  # no half
            if attempt < 3:
                assert (outcome, job.status, job.dispatched_at) == ("requeued", "queued", None)
            else:
                assert (outcome, job.status, job.error_code) == (
                    "failed", "failed", "storage_unavailable"
                )  # fmt: skip
    assert _deliveries(resources) == ["job.failed"]


def _outputs(tmp_path: Path, attempt: int) -> list[Path]:
    out = tmp_path / f"out-{attempt}"
    out.mkdir()
    for name in ARTIFACTS:
        (out / name).write_text(f"{name} of attempt {attempt}")
    return sorted(out.iterdir())


def _recorded(resources: Resources) -> list[str]:
    with resources.sessionmaker() as session:
        return sorted(session.scalars(select(Artifact.storage_key)))


def _attempt_keys(attempt: int) -> list[str]:
    return [f"projects/prj_1/jobs/job_1/attempt-{attempt}/{name}" for name in ARTIFACTS]


def _fail_attempt(resources: Resources, tmp_path: Path, attempt: int) -> str:
    """Attempt ``attempt`` claims job_1, fails to store its set, and gives the job back."""
    assert runner._claim(resources, "job_1") == attempt
    with pytest.raises(StorageUnavailable) as failure:
        runner._store_artifacts(resources, "job_1", attempt, _outputs(tmp_path, attempt))
    assert _recorded(resources) == []  # no half set: metrics.json and model.onnx went in first
    return runner._requeue(resources, "job_1", attempt, failure.value)


@pytest.mark.parametrize("action", ["error", "hang", "lose"])
def test_s3_failing_mid_set_retries_the_attempt_and_the_bucket_ends_with_one_set(
    s3_resources: Resources, faulty_s3: FaultyS3, s3_server: MotoServer, tmp_path: Path,
    action: str,
) -> None:  # fmt: skip
    faulty_s3.fail("PUT", "/attempt-1/model.pt2", action)  # "lose": it lands, unanswered
    assert _fail_attempt(s3_resources, tmp_path, 1) == "requeued"
    assert {met[2] for met in faulty_s3.met} == {action}
    assert s3_server.keys(BUCKET, "projects/prj_1/jobs/") == []  # what went in was deleted

    assert runner._claim(s3_resources, "job_1") == 2
    runner._store_artifacts(s3_resources, "job_1", 2, _outputs(tmp_path, 2))
    assert runner._end(s3_resources, "job_1", 2, "succeeded") == "succeeded"
    assert _recorded(s3_resources) == _attempt_keys(2)
    assert s3_server.keys(BUCKET, "projects/prj_1/jobs/") == _attempt_keys(2)
    report = b"".join(s3_resources.storage.iter_chunks(_attempt_keys(2)[-1]))
    assert report == b"report.html of attempt 2"


def test_objects_a_store_down_for_deletes_kept_go_once_an_attempt_records_its_set(
    s3_resources: Resources, faulty_s3: FaultyS3, s3_server: MotoServer, tmp_path: Path
) -> None:
    faulty_s3.fail("PUT", "/attempt-1/model.pt2", "error")
    faulty_s3.fail("POST", "?delete", "error")  # S3's DeleteObjects
    faulty_s3.fail("DELETE", "/attempt-1/", "error")
    assert _fail_attempt(s3_resources, tmp_path, 1) == "requeued"
    kept = s3_server.keys(BUCKET, "projects/prj_1/jobs/")
    assert kept == _attempt_keys(1)[:2]  # metrics.json, model.onnx: no row lists them
    faulty_s3.heal()
    assert runner._claim(s3_resources, "job_1") == 2
    runner._store_artifacts(s3_resources, "job_1", 2, _outputs(tmp_path, 2))
    assert s3_server.keys(BUCKET, "projects/prj_1/jobs/") == _attempt_keys(2)


def test_s3_failing_in_every_attempt_fails_the_job_leaving_no_artifact_and_no_object(
    s3_resources: Resources, faulty_s3: FaultyS3, s3_server: MotoServer, tmp_path: Path
) -> None:
    faulty_s3.fail("PUT", "/model.pt2", "error")
    assert [_fail_attempt(s3_resources, tmp_path, n) for n in (1, 2, 3)] == [
        "requeued", "requeued", "failed"
    ]  # fmt: skip
    with s3_resources.sessionmaker() as session:
        job = session.get(Job, "job_1")
        assert (job.status, job.error_code) == ("failed", "storage_unavailable")
    assert s3_server.keys(BUCKET, "projects/prj_1/jobs/") == []
    assert _deliveries(s3_resources) == ["job.failed"]

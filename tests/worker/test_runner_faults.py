"""Every write of an attempt is fenced by its attempt number; a cancel sees the row as it is
after the lock; the heartbeat survives the database going away; a store that fails while
artifacts are written gives the attempt back instead of failing the job. Real Postgres and a
real directory throughout."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from core.job_state import AttemptSuperseded, locked_job, request_cancel
from core.settings import Settings
from core.storage import StorageUnavailable
from core.tables import (
    Artifact,
    DatasetRecord,
    Job,
    JobEvent,
    ModelRecord,
    Project,
    WebhookDelivery,
    WebhookEndpoint,
    utcnow,
)
from tests.worker.tcp_proxy import TcpProxy
from worker import runner
from worker.job_progress import Heartbeat, JobProgress
from worker.reaper import reap
from worker.resources import Resources, build_resources


def _settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(database_url=database_url, data_dir=tmp_path, stale_job_seconds=3)


@pytest.fixture
def resources(clean_postgres: str, tmp_path: Path) -> Iterator[Resources]:
    resources = build_resources(_settings(clean_postgres, tmp_path))
    upload = {"name": "u", "filename": "u", "storage_key": "k", "size_bytes": 1, "sha256": "0"}
    with resources.sessionmaker() as session, session.begin():
        session.add(Project(id="prj_1", name="p"))
        session.flush()
        session.add(ModelRecord(id="mdl_1", project_id="prj_1", **upload))
        session.add(DatasetRecord(id="ds_1", project_id="prj_1", **upload))
        events = ["job.succeeded", "job.failed"]
        session.add(WebhookEndpoint(id="wh_1", project_id="prj_1", url="https://example.com/h",
                                    secret="whsec_x", events=events))  # fmt: skip
        session.flush()
        session.add(Job(id="job_1", project_id="prj_1", model_id="mdl_1", dataset_id="ds_1",
                        spec={}))  # fmt: skip
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
        runner._store_artifact(resources, "job_1", first, artifact)
    assert not list(resources.settings.resolved_storage_path.rglob("model.xaic"))  # no orphan
    assert runner._end(resources, "job_1", first, "failed", "internal_error", "x") == "superseded"

    with resources.sessionmaker() as session:
        job = session.get(Job, "job_1")
        assert (job.status, job.attempts, job.error_code) == ("running", 2, None)
        assert session.scalar(select(func.count()).select_from(Artifact)) == 0
    assert _deliveries(resources) == []

    artifact.write_bytes(b"the owner's bytes")  # (local storage moved the first file away)
    runner._store_artifact(resources, "job_1", 2, artifact)  # the owner's writes go through
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
            runner._store_artifact(resources, "job_1", attempt, artifact)
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

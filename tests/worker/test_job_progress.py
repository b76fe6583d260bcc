"""A stage that is busy inside one long operation still tells followers it is alive."""

from __future__ import annotations

import itertools
import threading
import time

import pytest
from sqlalchemy import select, text

from core.db import make_engine, make_sessionmaker, upgrade_schema
from core.settings import Settings
from core.tables import Job, JobEvent
from tests.worker.rows import add_project_with_uploads, job_1
from worker import job_progress
from worker.job_progress import Heartbeat, JobProgress
from worker.resources import build_resources
from worker.runner import _read


@pytest.fixture
def job(clean_postgres: str, tmp_path):
    factory = make_sessionmaker(make_engine(Settings(database_url=clean_postgres,
                                                     data_dir=tmp_path)))  # fmt: skip
    with factory() as session, session.begin():
        add_project_with_uploads(session)
        session.add(job_1(status="running"))
    yield factory, "job_1"
    factory.kw["bind"].dispose()


def test_quiet_stages_get_heartbeat_events_naming_them(job, monkeypatch):
    factory, job_id = job
    monkeypatch.setattr(job_progress, "QUIET_SECONDS", 0.4)
    monkeypatch.setattr(job_progress, "TICK", 0.05)
    progress = JobProgress(factory, job_id, 0)
    with Heartbeat(factory, job_id, progress):
        progress.enter("loading", 0.0, 0.1)
        time.sleep(1.3)  # one long call: no progress reported
        progress.update("pruning", 0.5, 0.5)
        time.sleep(1.3)
    with factory() as session:
        events = session.scalars(
            select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.seq)
        ).all()
        beat = session.get(Job, job_id).heartbeat_at
    kinds = [(e.type, e.data["stage"]) for e in events]
    assert kinds[0] == ("progress", "loading")
    assert kinds.count(("heartbeat", "loading")) >= 2
    assert ("progress", "pruning") in kinds and kinds.count(("heartbeat", "pruning")) >= 2
    stamps = [e.created_at for e in events]
    for earlier, later in itertools.pairwise(stamps):
        assert (later - earlier).total_seconds() < 0.4 + 0.3  # quiet limit + tick + slack
    last = events[-1].data
    assert last["stage"] == "pruning" and last["stage_progress"] == 0.5
    assert last["stage_seconds"] >= 0.4 and beat is not None


def test_the_worker_reads_embedded_sqlite_without_waiting_for_the_write_lock(tmp_path) -> None:
    """The cancel check and the runner's reads use read sessions: on SQLite they begin
    DEFERRED, so an API request holding the write lock does not stall a running job."""
    settings = Settings(database_url=None, redis_url=None, data_dir=tmp_path / "data")
    upgrade_schema(settings)
    resources = build_resources(settings)
    with resources.sessionmaker() as session, session.begin():
        add_project_with_uploads(session)
        session.add(job_1(status="cancelling"))
    locked, release = threading.Event(), threading.Event()

    def hold_write_lock() -> None:
        with resources.sessionmaker() as session, session.begin():  # BEGIN IMMEDIATE
            session.execute(text("UPDATE projects SET name = 'renamed'"))
            locked.set()
            release.wait(10)

    writer = threading.Thread(target=hold_write_lock)
    writer.start()
    try:
        assert locked.wait(5)
        started = time.monotonic()
        progress = JobProgress(resources.sessionmaker, "job_1", 0, resources.read_sessionmaker)
        assert progress.should_cancel() is True
        assert _read(resources, "job_1", lambda s: s.get(Job, "job_1").status) == "cancelling"
        assert time.monotonic() - started < 1.0  # a write-locked read would wait 10 s
    finally:
        release.set()
        writer.join()
        resources.close()

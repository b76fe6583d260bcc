"""A stage that is busy inside one long operation still tells followers it is alive."""

from __future__ import annotations

import itertools
import time

import pytest
from sqlalchemy import select

from core.db import make_engine, make_sessionmaker
from core.settings import Settings
from core.tables import DatasetRecord, Job, JobEvent, ModelRecord, Project
from worker import job_progress
from worker.job_progress import Heartbeat, JobProgress


@pytest.fixture
def job(clean_postgres: str, tmp_path):
    factory = make_sessionmaker(make_engine(Settings(database_url=clean_postgres,
                                                     data_dir=tmp_path)))  # fmt: skip
    upload = {"name": "u", "filename": "u", "storage_key": "k", "size_bytes": 1, "sha256": "0"}
    with factory() as session, session.begin():
        session.add(Project(id="prj_1", name="p"))
        session.flush()
        session.add(ModelRecord(id="mdl_1", project_id="prj_1", **upload))
        session.add(DatasetRecord(id="ds_1", project_id="prj_1", **upload))
        session.flush()
        session.add(Job(id="job_1", project_id="prj_1", model_id="mdl_1", dataset_id="ds_1",
                        spec={}, status="running"))  # fmt: skip
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

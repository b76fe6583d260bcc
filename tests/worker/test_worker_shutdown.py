"""A Celery worker asked to stop (SIGTERM to its main process, as an orchestrator sends it)
gives its running job a grace period, then hands it back: the job is ``queued`` again on the
same attempt number, dispatched at once, with nothing of the stopped attempt left in the
database or in storage, no terminal status, and no process of the worker left; another worker
then runs it, is asked to stop too, but within its (longer) grace, so it finishes the job
first. End states are read from the database, storage and the broker."""

from __future__ import annotations

import os
import secrets
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.main import create_app
from core.settings import Settings
from core.tables import Artifact, Job
from tests.api.helpers import sign_in, upload, wait_for
from tests.conftest import REDIS
from tests.worker.processes import CeleryProcess, service_env, wait_until

BROKER = f"{REDIS}/14"
GRACE_SECONDS = 1
SPEC = {  # fine-tuning makes the job long enough to be asked back mid-work on a fast machine
    "steps": [{"type": "prune_filters", "ratio": 0.5}, {"type": "finetune", "epochs": 30}],
    "attribution": {"samples": 256},
    "evaluation": {"latency_repeats": 3},
}


@pytest.fixture
def settings(clean_postgres: str, tmp_path: Path) -> Settings:
    run = secrets.token_hex(4)
    return Settings(
        queue_name=f"compress-shutdown-{run}",
        housekeeping_queue=f"housekeeping-shutdown-{run}",
        database_url=clean_postgres,
        redis_url=BROKER,
        data_dir=tmp_path / "data",
        storage_path=tmp_path / "objects",
    )


@pytest.fixture
def env(settings: Settings) -> dict[str, str]:
    return {
        **service_env(settings, BROKER),
        "WORKER_SHUTDOWN_GRACE_SECONDS": str(GRACE_SECONDS),
    }


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as client:
        sign_in(client, "shutdown")
        yield client


def _group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


def _status(client: TestClient, job_id: str) -> str:
    return client.get(f"/v1/jobs/{job_id}").json()["status"]


def _stage(client: TestClient, job_id: str) -> str | None:
    return client.get(f"/v1/jobs/{job_id}").json()["stage"]


def _statuses(client: TestClient, job_id: str) -> list[tuple[str, str | None]]:
    events = client.get(f"/v1/jobs/{job_id}/events", params={"limit": 1000}).json()["data"]
    return [(e["data"]["status"], e["data"].get("reason")) for e in events if e["type"] == "status"]


@pytest.mark.slow
def test_a_worker_asked_to_stop_hands_its_job_back_and_another_finishes_it(
    client: TestClient, settings: Settings, env: dict[str, str], tmp_path: Path,
    digits_model_pt2: bytes, digits_npz: bytes,
) -> None:  # fmt: skip
    first = CeleryProcess.job_worker(env, tmp_path / "first.log")
    second = None
    try:
        model = upload(client, "models", digits_model_pt2, "digits.pt2")["id"]
        dataset = upload(client, "datasets", digits_npz, "digits.npz")["id"]
        wait_for(client, f"/v1/models/{model}", {"ready"}, timeout=120)
        wait_for(client, f"/v1/datasets/{dataset}", {"ready"}, timeout=120)
        body = {"model_id": model, "dataset_id": dataset, **SPEC}
        job_id = client.post("/v1/jobs", json=body).json()["id"]
        wait_until(lambda: _stage(client, job_id) == "finetuning", 120, "the job's fine-tuning")

        first.process.send_signal(signal.SIGTERM)  # the main process only, as docker stop does
        started = time.monotonic()
        try:
            wait_until(lambda: _status(client, job_id) == "queued", 30, "the hand-back")
        except AssertionError:
            job = client.get(f"/v1/jobs/{job_id}").json()
            raise AssertionError(f"not handed back: {job}\n{first.log.read_text()}") from None
        handed_back_after = time.monotonic() - started
        assert GRACE_SECONDS <= handed_back_after < GRACE_SECONDS + 8, handed_back_after
        assert first.process.wait(timeout=30) == 0, first.log.read_text()  # a clean exit
        wait_until(lambda: _group_gone(first.process.pid), 10, "the worker's processes to end")
        assert "asking xai.run_job" in first.log.read_text()

        with client.app.state.sessionmaker() as session:
            job = session.get(Job, job_id)
            assert (job.status, job.attempts, job.error_code) == ("queued", 1, None)
            assert job.dispatched_at is not None  # handed to the queue again at once
            assert session.scalars(select(Artifact).where(Artifact.job_id == job_id)).all() == []
        assert not list((settings.resolved_storage_path).rglob(f"jobs/{job_id}/*"))
        assert _statuses(client, job_id) == [
            ("queued", None), ("running", None), ("queued", "its worker shut down; handed back"),
        ]  # fmt: skip
        assert redis.Redis.from_url(BROKER).llen(settings.queue_name) == 1  # its message

        patient = {**env, "WORKER_SHUTDOWN_GRACE_SECONDS": "600"}  # longer than the job
        second = CeleryProcess.job_worker(patient, tmp_path / "second.log")
        wait_for(client, f"/v1/jobs/{job_id}", {"running"}, timeout=120)
        second.process.send_signal(signal.SIGTERM)  # within its grace: the job runs to its end
        done = wait_for(client, f"/v1/jobs/{job_id}", {"succeeded", "failed"}, timeout=300)
        assert done["status"] == "succeeded", done["error"]
        assert done["attempts"] == 2
        assert second.process.wait(timeout=60) == 0
        assert "asking" not in second.log.read_text()
        assert [status for status, _ in _statuses(client, job_id)] == [
            "queued",
            "running",
            "queued",
            "running",
            "succeeded",
        ]  # fmt: skip  one terminal status: one terminal webhook
        with client.app.state.sessionmaker() as session:
            keys = session.scalars(select(Artifact.storage_key).where(Artifact.job_id == job_id))
            keys = list(keys)
        assert keys and all("/attempt-2/" in key for key in keys)
        root = settings.resolved_storage_path
        stored = [p.relative_to(root).as_posix() for p in root.rglob(f"jobs/{job_id}/*/*")]
        assert sorted(stored) == sorted(keys)  # nothing of attempt 1 left
    finally:
        for worker in (first, second):
            if worker is not None:
                worker.stop()

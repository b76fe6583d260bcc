"""The distributed deployment for real: API with a Celery client, a Celery worker process on
Redis, Postgres as the source of truth. A worker killed mid-job loses nothing."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from core.dispatch import RUN_JOB
from core.keys import create_key, create_project
from core.settings import Settings
from tests.api.helpers import upload, wait_for
from tests.conftest import REDIS, ROOT
from worker.reaper import reap
from worker.resources import build_resources

BROKER = f"{REDIS}/14"
QUEUE = f"compress-test-{secrets.token_hex(4)}"  # runs on the same Redis never share tasks
SPEC = {
    "steps": [{"type": "prune_filters", "ratio": 0.5}],
    "attribution": {"samples": 128},
    "evaluation": {"latency_repeats": 3},
}


@pytest.fixture
def settings(clean_postgres: str, tmp_path: Path) -> Settings:
    return Settings(
        queue_name=QUEUE,
        database_url=clean_postgres,
        redis_url=BROKER,
        data_dir=tmp_path / "data",
        storage_path=tmp_path / "objects",
        stale_job_seconds=3,
    )


class Worker:
    """``celery -A worker.celery_app worker`` in its own process group."""

    def __init__(self, settings: Settings, log: Path) -> None:
        env = {
            **os.environ,
            "DATABASE_URL": settings.resolved_database_url,
            "REDIS_URL": BROKER,
            "STORAGE_PATH": str(settings.resolved_storage_path),
            "DATA_DIR": str(settings.data_dir),
            "STALE_JOB_SECONDS": str(settings.stale_job_seconds),
            "QUEUE_NAME": QUEUE,
        }
        self.log = log
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker",
             "--queues", QUEUE, "--concurrency", "1", "--loglevel", "INFO",
             "--without-gossip", "--without-mingle", "--hostname", f"test-{log.stem}@%h"],
            cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while "ready." not in log.read_text():
            assert self.process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "worker did not start"
            time.sleep(0.2)

    def kill(self) -> None:
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def start_worker(settings: Settings, tmp_path: Path) -> Iterator:
    workers: list[Worker] = []

    def start() -> Worker:
        workers.append(Worker(settings, tmp_path / f"worker{len(workers)}.log"))
        return workers[-1]

    yield start
    for worker in workers:
        worker.stop()


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as client:
        with client.app.state.sessionmaker() as session, session.begin():
            key = create_key(session, create_project(session, "celery")).key
        client.headers["Authorization"] = f"Bearer {key}"
        yield client


def _submit(client: TestClient, model: bytes, data: bytes, spec: dict) -> str:
    model_id = upload(client, "models", model, "digits.pt2")["id"]
    dataset_id = upload(client, "datasets", data, "digits.npz")["id"]
    wait_for(client, f"/v1/models/{model_id}", {"ready", "invalid"})
    wait_for(client, f"/v1/datasets/{dataset_id}", {"ready", "invalid"})
    body = {"model_id": model_id, "dataset_id": dataset_id, **spec}
    return client.post("/v1/jobs", json=body).json()["id"]


def test_a_celery_worker_runs_the_job(
    client: TestClient, start_worker, digits_model_pt2: bytes, digits_npz: bytes
) -> None:
    start_worker()
    job_id = _submit(client, digits_model_pt2, digits_npz, SPEC)
    done = wait_for(client, f"/v1/jobs/{job_id}", {"succeeded", "failed"}, timeout=180)
    assert done["status"] == "succeeded", done["error"]
    assert done["attempts"] == 1
    names = [a["name"] for a in client.get(f"/v1/jobs/{job_id}/artifacts").json()]
    assert names == [
        "metrics.json", "model.fp32.onnx", "model.onnx", "model.pt2", "model.xaic",
        "report.html", "scores.safetensors",
    ]  # fmt: skip
    assert client.get("/readyz").json()["checks"]["broker"] is True


def test_a_job_survives_its_worker_being_killed(
    client: TestClient, settings: Settings, start_worker, digits_model_pt2: bytes,
    digits_npz: bytes,
) -> None:  # fmt: skip
    first = start_worker()
    slow = {
        **SPEC,
        "steps": [{"type": "prune_filters", "ratio": 0.5, "iterative_steps": 20}],
        "attribution": {"samples": 1024, "batch_size": 1},
    }
    job_id = _submit(client, digits_model_pt2, digits_npz, slow)
    wait_for(client, f"/v1/jobs/{job_id}", {"running"}, timeout=120)
    time.sleep(1.0)
    first.kill()
    assert client.get(f"/v1/jobs/{job_id}").json()["status"] == "running"

    start_worker()
    time.sleep(settings.stale_job_seconds + 1)
    resources = build_resources(settings)
    requeued = reap(resources)
    assert requeued == [job_id]
    for job in requeued:
        client.app.state.dispatcher.submit(RUN_JOB, job)

    done = wait_for(client, f"/v1/jobs/{job_id}", {"succeeded", "failed"}, timeout=240)
    assert done["status"] == "succeeded", done["error"]
    assert done["attempts"] == 2
    statuses = [
        e["data"]["status"]
        for e in client.get(f"/v1/jobs/{job_id}/events", params={"limit": 1000}).json()["data"]
        if e["type"] == "status"
    ]
    assert statuses == ["queued", "running", "queued", "running", "succeeded"]

"""The distributed deployment for real: API with a Celery client, a Celery worker process on
Redis, Postgres as the source of truth. A worker killed mid-job loses nothing: beat and the
housekeeping worker's reaper requeue it, and another worker finishes it."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from core.settings import Settings
from tests.api.helpers import sign_in, upload, wait_for
from tests.conftest import REDIS
from tests.worker.processes import CeleryProcess, service_env

BROKER = f"{REDIS}/14"
RUN = secrets.token_hex(4)  # runs on the same Redis never share tasks
QUEUE = f"compress-test-{RUN}"
SPEC = {
    "steps": [{"type": "prune_filters", "ratio": 0.5}],
    "attribution": {"samples": 128},
    "evaluation": {"latency_repeats": 3},
}


@pytest.fixture
def settings(clean_postgres: str, tmp_path: Path) -> Settings:
    return Settings(
        queue_name=QUEUE,
        housekeeping_queue=f"housekeeping-test-{RUN}",
        database_url=clean_postgres,
        redis_url=BROKER,
        data_dir=tmp_path / "data",
        storage_path=tmp_path / "objects",
        stale_job_seconds=3,
        reap_interval_seconds=1,
    )


@pytest.fixture
def start_worker(settings: Settings, tmp_path: Path) -> Iterator:
    processes: list[CeleryProcess] = []

    def start(kind: str = "job_worker") -> CeleryProcess:
        log = tmp_path / f"{kind}{len(processes)}.log"
        processes.append(getattr(CeleryProcess, kind)(service_env(settings, BROKER), log))
        return processes[-1]

    yield start
    for process in processes:
        process.stop()


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as client:
        sign_in(client, "celery")
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
    job_id = _submit(client, digits_model_pt2, digits_npz, SPEC)
    wait_for(client, f"/v1/jobs/{job_id}", {"running"}, timeout=120)
    time.sleep(1.0)
    first.kill()
    assert client.get(f"/v1/jobs/{job_id}").json()["status"] == "running"

    start_worker()
    start_worker("housekeeping")  # beat -> reaper -> requeue, as deployed: nobody reaps by hand

    done = wait_for(client, f"/v1/jobs/{job_id}", {"succeeded", "failed"}, timeout=360)
    assert done["status"] == "succeeded", done["error"]
    assert done["attempts"] == 2
    statuses = [
        e["data"]["status"]
        for e in client.get(f"/v1/jobs/{job_id}/events", params={"limit": 1000}).json()["data"]
        if e["type"] == "status"
    ]
    assert statuses == ["queued", "running", "queued", "running", "succeeded"]

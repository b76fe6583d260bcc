"""Faults with real processes: a throwaway Redis (the broker) stopped while work is created,
Postgres cut off behind a proxy while a job runs, a Celery job worker, the housekeeping worker
with beat. Nothing is lost, nothing needs a hand: the end state is read from the database and
from storage."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import make_url

from api.main import create_app
from core.settings import Settings
from core.tables import Artifact, Job
from tests.api.helpers import sign_in, upload, wait_for
from tests.worker.processes import CeleryProcess, RedisServer, service_env
from tests.worker.tcp_proxy import TcpProxy

SPEC = {
    "steps": [{"type": "prune_filters", "ratio": 0.5}],
    "attribution": {"samples": 64},
    "evaluation": {"latency_repeats": 3},
}


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    yield server
    server.stop()


@pytest.fixture
def settings(clean_postgres: str, tmp_path: Path, broker: RedisServer) -> Settings:
    run = secrets.token_hex(4)
    return Settings(
        queue_name=f"compress-{run}",
        housekeeping_queue=f"housekeeping-{run}",
        database_url=clean_postgres,
        redis_url=broker.url,
        data_dir=tmp_path / "data",
        storage_path=tmp_path / "objects",
        sweep_interval_seconds=1,
        dispatch_grace_seconds=1,
    )


@pytest.fixture
def deployment(settings: Settings, broker: RedisServer, tmp_path: Path) -> Iterator[None]:
    env = service_env(settings, broker.url)
    processes = [
        CeleryProcess.job_worker(env, tmp_path / "jobs.log"),
        CeleryProcess.housekeeping(env, tmp_path / "housekeeping.log"),
    ]
    yield
    for process in processes:
        process.stop()
        if process.exits:  # shown with a failure: what a restart hid
            print(f"{process.log.name}: restarted after", *process.exits, sep="\n")


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as client:
        sign_in(client, "outage")
        yield client


@pytest.mark.slow
def test_work_created_while_the_broker_is_down_runs_once_it_is_back(
    client: TestClient, broker: RedisServer, deployment: None, settings: Settings,
    digits_model_pt2: bytes, digits_npz: bytes,
) -> None:  # fmt: skip
    model = upload(client, "models", digits_model_pt2, "digits.pt2")
    dataset = upload(client, "datasets", digits_npz, "digits.npz")
    wait_for(client, f"/v1/models/{model['id']}", {"ready"}, timeout=120)
    wait_for(client, f"/v1/datasets/{dataset['id']}", {"ready"}, timeout=120)

    broker.stop()
    body = {"model_id": model["id"], "dataset_id": dataset["id"], **SPEC}
    started = time.monotonic()
    created = client.post("/v1/jobs", json=body, headers={"Idempotency-Key": "k1"})
    assert created.status_code == 201, created.text  # kept, not a 500
    assert time.monotonic() - started < 10
    job_id = created.json()["id"]
    replay = client.post("/v1/jobs", json=body, headers={"Idempotency-Key": "k1"})
    assert (replay.status_code, replay.json()["id"]) == (201, job_id)  # the SDK's retry
    late = upload(client, "datasets", digits_npz, "late.npz")
    assert late["status"] == "pending"
    time.sleep(3)  # sweeps and beats meet a dead broker meanwhile
    assert client.get(f"/v1/jobs/{job_id}").json()["status"] == "queued"

    broker.start()  # empty: whatever it held is gone; the database knows what is due
    done = wait_for(client, f"/v1/jobs/{job_id}", {"succeeded", "failed"}, timeout=240)
    assert done["status"] == "succeeded", done["error"]
    assert done["attempts"] == 1
    assert wait_for(client, f"/v1/datasets/{late['id']}", {"ready", "invalid"})["status"] == (
        "ready"
    )
    with client.app.state.sessionmaker() as session:
        assert session.get(Job, job_id).dispatched_at is not None
        keys = [a.storage_key for a in session.query(Artifact).filter_by(job_id=job_id)]
    assert "model.onnx" in {Path(key).name for key in keys}
    for key in keys:
        assert (settings.resolved_storage_path / key).is_file()


@pytest.mark.slow
def test_a_database_outage_mid_job_is_ridden_out(
    clean_postgres: str, tmp_path: Path, broker: RedisServer, digits_model_pt2: bytes,
    digits_npz: bytes,
) -> None:  # fmt: skip
    """The worker and the API reach Postgres through a proxy that is cut for 20 s while the job
    runs: the API answers 503 meanwhile, the job's heartbeat and progress ride it out, and the
    job finishes on its first attempt."""
    url = make_url(clean_postgres)
    proxy = TcpProxy((url.host, url.port or 5432))
    through = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    run = secrets.token_hex(4)
    settings = Settings(
        queue_name=f"compress-{run}", housekeeping_queue=f"housekeeping-{run}",
        database_url=through, redis_url=broker.url, data_dir=tmp_path / "data",
        storage_path=tmp_path / "objects", database_connect_timeout_seconds=2,
    )  # fmt: skip
    worker = CeleryProcess.job_worker(service_env(settings, broker.url), tmp_path / "jobs.log")
    try:
        with TestClient(create_app(settings)) as client:
            sign_in(client, "db-outage")
            model = upload(client, "models", digits_model_pt2, "digits.pt2")["id"]
            dataset = upload(client, "datasets", digits_npz, "digits.npz")["id"]
            wait_for(client, f"/v1/datasets/{dataset}", {"ready"}, timeout=120)
            wait_for(client, f"/v1/models/{model}", {"ready"}, timeout=120)
            body = {"model_id": model, "dataset_id": dataset, **SPEC}
            job_id = client.post("/v1/jobs", json=body).json()["id"]
            wait_for(client, f"/v1/jobs/{job_id}", {"running"}, timeout=120)

            proxy.cut()
            started = time.monotonic()
            response = client.get(f"/v1/jobs/{job_id}")
            assert (response.status_code, response.json()["code"]) == (503, "database_unavailable")
            assert time.monotonic() - started < 1.5
            time.sleep(20)
            proxy.restore()

            done = wait_for(client, f"/v1/jobs/{job_id}", {"succeeded", "failed"}, timeout=300)
            assert done["status"] == "succeeded", done["error"]
            assert done["attempts"] == 1
    finally:
        worker.stop()
        proxy.close()

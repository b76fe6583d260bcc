"""The dispatch outbox: a job or upload whose dispatch failed after its row was committed is
kept, and handed over later by a replay of the create or by the sweeper (``core.outbox``).

The broker here is real: a Celery client pointed at a port where nothing listens (down), then
at the test Redis (back), whose queue is read to see exactly what was sent.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from api.main import create_app
from core import outbox
from core.dispatch import RUN_JOB, VALIDATE_DATASET, VALIDATE_MODEL, CeleryDispatcher
from core.outbox import Due
from core.settings import Settings
from core.tables import DatasetRecord, Job, ModelRecord, utcnow
from launcher.embedded import requeue_leftovers
from tests.api.helpers import sign_in, upload
from tests.conftest import REDIS
from tests.worker.processes import free_port
from worker.in_process import InProcessDispatcher
from worker.resources import build_resources

BROKER = f"{REDIS}/14"


@pytest.fixture
def queue() -> Iterator[str]:
    name = f"outbox-test-{secrets.token_hex(4)}"
    yield name
    redis.Redis.from_url(BROKER).delete(name)


@pytest.fixture
def settings(clean_postgres: str, tmp_path: Path, queue: str) -> Settings:
    return Settings(
        database_url=clean_postgres,
        redis_url=BROKER,
        queue_name=queue,
        data_dir=tmp_path / "data",
        dispatch_grace_seconds=0,
    )


@pytest.fixture
def client(settings: Settings, queue: str) -> Iterator[TestClient]:
    down = CeleryDispatcher(f"redis://127.0.0.1:{free_port()}/0", queue)
    with TestClient(create_app(settings, down)) as client:
        sign_in(client, "outbox")
        yield client


def sent(queue: str) -> list[tuple[str, str]]:
    """(task, record id) of every message in the broker's queue, oldest first."""
    messages = []
    for raw in reversed(redis.Redis.from_url(BROKER).lrange(queue, 0, -1)):
        message = json.loads(raw)
        args = json.loads(base64.b64decode(message["body"]))[0]
        messages.append((message["headers"]["task"], args[0]))
    return messages


def dispatched_at(client: TestClient, table, record_id: str):
    with client.app.state.sessionmaker() as session:
        return session.get(table, record_id).dispatched_at


def test_broker_down_keeps_the_work_and_hands_it_over_when_it_is_back(
    client: TestClient, settings: Settings, queue: str
) -> None:
    model = upload(client, "models", b"weights", "m.safetensors", architecture="small_cnn")
    dataset = upload(client, "datasets", b"samples", "d.npz")
    assert model["status"] == dataset["status"] == "pending"
    body = {
        "model_id": model["id"],
        "dataset_id": dataset["id"],
        "steps": [{"type": "prune_filters", "ratio": 0.5}],
    }
    headers = {"Idempotency-Key": "retry-me"}

    created = client.post("/v1/jobs", json=body, headers=headers)
    assert created.status_code == 201, created.text
    job_id = created.json()["id"]
    assert created.json()["status"] == "queued"
    assert dispatched_at(client, Job, job_id) is None

    replay = client.post("/v1/jobs", json=body, headers=headers)  # the SDK's retry, still down
    assert (replay.status_code, replay.json()["id"]) == (201, job_id)
    assert dispatched_at(client, Job, job_id) is None
    assert sent(queue) == []

    client.app.state.dispatcher = CeleryDispatcher(BROKER, queue)  # the broker is back
    replay = client.post("/v1/jobs", json=body, headers=headers)
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert sent(queue) == [(RUN_JOB, job_id)]  # the replay dispatched the stuck job
    assert dispatched_at(client, Job, job_id) is not None
    client.post("/v1/jobs", json=body, headers=headers)
    assert len(sent(queue)) == 1  # once dispatched, a replay sends nothing more

    factory = client.app.state.sessionmaker
    swept = outbox.sweep(factory, client.app.state.dispatcher, settings)
    assert swept == [Due(VALIDATE_MODEL, model["id"]), Due(VALIDATE_DATASET, dataset["id"])]
    assert sent(queue)[1:] == [(VALIDATE_MODEL, model["id"]), (VALIDATE_DATASET, dataset["id"])]
    assert dispatched_at(client, ModelRecord, model["id"]) is not None
    assert outbox.sweep(factory, client.app.state.dispatcher, settings) == []

    with factory() as session:  # a message the broker lost: due again after redispatch_seconds
        later = utcnow() + timedelta(seconds=settings.redispatch_seconds + 1)
        assert {item.record_id for item in outbox.due(session, 0, settings.redispatch_seconds,
                                                      later)} == {job_id, model["id"],
                                                                  dataset["id"]}  # fmt: skip


def test_the_grace_period_leaves_a_fresh_dispatch_alone(
    client: TestClient, settings: Settings
) -> None:
    model = upload(client, "models", b"weights", "m.safetensors", architecture="small_cnn")
    with client.app.state.sessionmaker() as session:
        assert outbox.due(session, grace_seconds=60, redispatch_seconds=3600) == []
        assert outbox.due(session, grace_seconds=0, redispatch_seconds=3600) == [
            Due(VALIDATE_MODEL, model["id"])
        ]


def test_an_embedded_restart_dispatches_everything_left_waiting(
    client: TestClient, settings: Settings
) -> None:
    model = upload(client, "models", b"weights", "m.safetensors", architecture="small_cnn")
    dataset = upload(client, "datasets", b"samples", "d.npz")
    body = {
        "model_id": model["id"],
        "dataset_id": dataset["id"],
        "steps": [{"type": "prune_filters", "ratio": 0.5}],
    }
    job_id = client.post("/v1/jobs", json=body).json()["id"]
    with client.app.state.sessionmaker() as session, session.begin():
        session.get(DatasetRecord, dataset["id"]).dispatched_at = utcnow()  # sent, then lost

    restarted = InProcessDispatcher(build_resources(settings))  # not started: its queue is read
    requeue_leftovers(restarted.resources, restarted)
    queued = [restarted.tasks.get_nowait() for _ in range(restarted.tasks.qsize())]
    assert queued == [
        (VALIDATE_MODEL, model["id"]), (VALIDATE_DATASET, dataset["id"]), (RUN_JOB, job_id)
    ]  # fmt: skip
    restarted.resources.close()


def test_a_message_the_broker_lost_is_sent_again_once_its_queue_is_empty(
    client: TestClient, settings: Settings, queue: str
) -> None:
    client.app.state.dispatcher = CeleryDispatcher(BROKER, queue)
    model = upload(client, "models", b"weights", "m.safetensors", architecture="small_cnn")
    assert sent(queue) == [(VALIDATE_MODEL, model["id"])]
    with client.app.state.sessionmaker() as session, session.begin():
        record = session.get(ModelRecord, model["id"])
        record.dispatched_at = utcnow() - timedelta(seconds=settings.lost_message_seconds + 1)
    factory, dispatcher = client.app.state.sessionmaker, client.app.state.dispatcher
    assert outbox.sweep(factory, dispatcher, settings) == []  # its message still waits
    redis.Redis.from_url(BROKER).delete(queue)  # the broker restarted without its data
    assert outbox.sweep(factory, dispatcher, settings) == [Due(VALIDATE_MODEL, model["id"])]
    assert sent(queue) == [(VALIDATE_MODEL, model["id"])]

"""The API process (uvicorn, as deployed) drains on SIGTERM: an upload that is streaming in
when the signal comes completes with its normal answer, its record and object kept, while new
connections are refused at once and an event stream following a job ends (its client resumes
elsewhere with Last-Event-ID) instead of holding the drain open until the job finishes; then
the process ends after a clean application shutdown."""

from __future__ import annotations

import hashlib
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from sqlalchemy.orm import Session

from core.db import make_engine, make_sessionmaker
from core.ids import new_id
from core.keys import create_key, create_project
from core.settings import Settings
from core.tables import DatasetRecord, Job, ModelRecord
from tests.conftest import REDIS, ROOT
from tests.worker.processes import free_port, service_env, wait_until

BROKER = f"{REDIS}/14"
CHUNK = 256 * 1024
CHUNKS = 24
CHUNK_PAUSE_SECONDS = 0.1  # the upload takes about 2.4 s to arrive


@pytest.fixture
def settings(clean_postgres: str, tmp_path: Path) -> Settings:
    return Settings(
        queue_name=f"compress-drain-{secrets.token_hex(4)}",
        database_url=clean_postgres,
        redis_url=BROKER,
        data_dir=tmp_path / "data",
        storage_path=tmp_path / "objects",
        upload_temp_dir=tmp_path / "incoming",
    )


@pytest.fixture
def server(settings: Settings, tmp_path: Path) -> Iterator[tuple[subprocess.Popen, str, Path]]:
    port = free_port()
    log = tmp_path / "api.log"
    env = {**service_env(settings, BROKER), "UPLOAD_TEMP_DIR": str(settings.upload_temp_dir)}
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "api.main:create_app", "--factory",
         "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert process.poll() is None, log.read_text()
        try:
            return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    wait_until(up, 60, "uvicorn", interval=0.2)
    yield process, url, log
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    redis.Redis.from_url(BROKER).delete(settings.queue_name)


def _waiting_job(session: Session, project_id: str) -> str:
    """A queued job of ``project_id`` (its model and dataset rows only; no file is read)."""
    records = [
        table(id=new_id(kind), name=kind, project_id=project_id, filename="f", storage_key=kind,
              size_bytes=1, sha256="0" * 64, status="ready")
        for table, kind in ((ModelRecord, "model"), (DatasetRecord, "dataset"))
    ]  # fmt: skip
    job = Job(id=new_id("job"), project_id=project_id, model_id=records[0].id,
              dataset_id=records[1].id, spec={})  # fmt: skip
    session.add_all(records)
    session.flush()  # the job's foreign keys need them first
    session.add(job)
    return job.id


def _refused(url: str) -> bool:
    try:
        httpx.get(f"{url}/healthz", timeout=1)
    except httpx.ConnectError:
        return True
    return False


def test_sigterm_drains_an_upload_in_flight_and_refuses_new_connections(
    server: tuple[subprocess.Popen, str, Path], settings: Settings
) -> None:
    process, url, log = server
    engine = make_engine(settings)
    with make_sessionmaker(engine)() as session, session.begin():
        project = create_project(session, "drain")
        key = create_key(session, project).key
        job_id = _waiting_job(session, project.id)
    stream_ended: list[float] = []
    following = threading.Event()

    def follow() -> None:  # a client following a job that nobody runs: it never finishes
        headers = {"Authorization": f"Bearer {key}", "Accept": "text/event-stream"}
        with httpx.stream("GET", f"{url}/v1/jobs/{job_id}/events", headers=headers,
                          timeout=60) as stream:  # fmt: skip
            assert stream.status_code == 200
            following.set()
            for _ in stream.iter_bytes():
                pass
        stream_ended.append(time.monotonic())

    follower = threading.Thread(target=follow, daemon=True)
    follower.start()
    assert following.wait(30)

    data = os.urandom(CHUNK * CHUNKS)
    boundary = "drainboundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="d.npz"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    first_chunk_sent = threading.Event()

    def body() -> Iterator[bytes]:
        yield head
        for index in range(CHUNKS):
            yield data[index * CHUNK : (index + 1) * CHUNK]
            first_chunk_sent.set()
            time.sleep(CHUNK_PAUSE_SECONDS)
        yield tail

    answer: dict[str, httpx.Response] = {}

    def upload() -> None:
        answer["response"] = httpx.post(
            f"{url}/v1/datasets", content=body(), timeout=60,
            headers={
                "Authorization": f"Bearer {key}",
                "Content-Type": f"multipart/form-data; boundary={boundary}",
                "Content-Length": str(len(head) + len(data) + len(tail)),
            },
        )  # fmt: skip

    sender = threading.Thread(target=upload)
    sender.start()
    assert first_chunk_sent.wait(30)
    wait_until(lambda: any(settings.upload_temp_dir.iterdir()), 10, "the upload to arrive")

    process.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    wait_until(lambda: _refused(url), 3, "new connections to be refused")
    refused_after = time.monotonic() - signalled
    assert sender.is_alive()  # refused while the upload is still streaming in
    follower.join(5)
    assert stream_ended and stream_ended[0] - signalled < 1.5  # the stream did not wait
    sender.join(60)

    response = answer["response"]
    assert response.status_code == 201, response.text
    dataset = response.json()
    assert (dataset["status"], dataset["size_bytes"]) == ("pending", len(data))
    assert process.wait(timeout=30) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal
    drained_after = time.monotonic() - signalled
    shown = log.read_text()
    assert "Application shutdown complete" in shown and "Finished server process" in shown
    assert refused_after < 1.5 and drained_after > 1, (refused_after, drained_after)

    with make_sessionmaker(engine)() as session:
        record = session.get(DatasetRecord, dataset["id"])
        assert (record.size_bytes, record.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert (settings.resolved_storage_path / record.storage_key).read_bytes() == data
    assert list(settings.upload_temp_dir.iterdir()) == []
    engine.dispose()

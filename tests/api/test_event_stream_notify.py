"""Server-Sent Events on Postgres wake on NOTIFY, not by polling.

The streams' poll intervals are set to ten minutes, so an event that reaches the client
within two seconds can only have been announced by the writer's notification; the server is a
real uvicorn, the writer a separate session (as the worker is).
"""

from __future__ import annotations

import queue
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from api.main import create_app
from core.db import make_engine, make_sessionmaker
from core.job_state import append_event, set_status
from core.keys import create_key, create_project
from core.settings import Settings
from core.tables import DatasetRecord, Job, ModelRecord
from worker.in_process import InProcessDispatcher

NEVER = 600.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def server(clean_postgres: str, tmp_path: Path) -> Iterator[tuple[str, Settings]]:
    settings = Settings(
        database_url=clean_postgres,
        redis_url=None,
        data_dir=tmp_path / "data",
        sse_poll_seconds=NEVER,
        sse_notified_poll_seconds=NEVER,
    )
    app = create_app(settings, InProcessDispatcher(None))  # type: ignore[arg-type] - unused
    port = _free_port()
    uvicorn_server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=uvicorn_server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not uvicorn_server.started:
        assert time.monotonic() < deadline and thread.is_alive()
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", settings
    finally:
        uvicorn_server.should_exit = True
        thread.join(timeout=30)


def _job_with_key(settings: Settings) -> tuple[str, str, object]:
    factory = make_sessionmaker(make_engine(settings))
    with factory() as session, session.begin():
        project = create_project(session, "alpha")
        key = create_key(session, project).key
        files = {"project_id": project.id, "size_bytes": 1, "sha256": "0" * 64}
        session.add(ModelRecord(id="mdl_s", name="m", filename="m.pt2", storage_key="m", **files))
        session.add(DatasetRecord(id="ds_s", name="d", filename="d.npz", storage_key="d", **files))
        session.flush()
        job = Job(id="job_s", project_id=project.id, model_id="mdl_s", dataset_id="ds_s", spec={})
        session.add(job)
        session.flush()
        append_event(session, job, "status", {"status": "queued"})
    return key, job.id, factory


def test_a_new_event_reaches_the_stream_at_once(server: tuple[str, Settings]) -> None:
    url, settings = server
    key, job_id, factory = _job_with_key(settings)
    received: queue.Queue[tuple[float, str]] = queue.Queue()

    def follow() -> None:
        headers = {"Authorization": f"Bearer {key}", "Accept": "text/event-stream"}
        with httpx.stream(
            "GET", f"{url}/v1/jobs/{job_id}/events", headers=headers, timeout=60
        ) as stream:
            for line in stream.iter_lines():
                if line.startswith("event:"):
                    received.put((time.monotonic(), line.removeprefix("event: ")))
        received.put((time.monotonic(), "closed"))

    follower = threading.Thread(target=follow, daemon=True)
    follower.start()
    assert received.get(timeout=10)[1] == "status"  # the feed so far, read on connect
    time.sleep(0.5)  # the stream is now waiting (for ten minutes, unless woken)

    for kind in ("progress", "heartbeat"):
        with factory() as session, session.begin():
            append_event(session, session.get(Job, job_id), kind, {"stage": "loading"})
        written = time.monotonic()
        arrived, seen = received.get(timeout=5)
        assert seen == kind
        assert arrived - written < 2.0  # ten minutes if it had polled

    with factory() as session, session.begin():
        set_status(session, session.get(Job, job_id), "cancelled", reason="test")
    written = time.monotonic()
    assert received.get(timeout=5)[1] == "status"
    arrived, seen = received.get(timeout=5)
    assert seen == "closed" and arrived - written < 2.0  # a finished job ends its stream
    follower.join(timeout=5)

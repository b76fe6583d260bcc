"""Embedded SQLite under concurrency: reads never wait for the write lock, writes do.

A writer (the embedded worker recording progress, say) holds SQLite's write lock; requests
that only read must answer at once from their snapshot, and a request that writes must
queue for the lock rather than fail.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import event, text

from api.main import create_app
from core.db import make_engine, make_sessionmaker, upgrade_schema
from core.keys import create_key, create_project
from core.settings import Settings
from tests.api.helpers import assert_problem, sign_in
from worker.in_process import InProcessDispatcher

HOLD_SECONDS = 5.0
READERS = 8


def test_reads_proceed_while_a_writer_holds_the_lock(tmp_path: Path) -> None:
    settings = Settings(database_url=None, redis_url=None, data_dir=tmp_path / "data")
    upgrade_schema(settings)
    writer_factory = make_sessionmaker(make_engine(settings))
    with writer_factory() as session, session.begin():
        key = create_key(session, create_project(session, "alpha")).key
    dispatcher = InProcessDispatcher(None)  # type: ignore[arg-type] - never started
    locked, release = threading.Event(), threading.Event()

    def hold_write_lock() -> None:
        with writer_factory() as session, session.begin():  # BEGIN IMMEDIATE
            session.execute(text("UPDATE projects SET name = 'renamed'"))
            locked.set()
            release.wait(HOLD_SECONDS)

    with TestClient(create_app(settings, dispatcher)) as client:
        client.headers["Authorization"] = f"Bearer {key}"
        writer = threading.Thread(target=hold_write_lock)
        writer.start()
        assert locked.wait(5)
        held_since = time.monotonic()

        def read(path: str) -> tuple[int, float]:
            start = time.monotonic()
            status = client.get(path).status_code
            return status, time.monotonic() - start

        paths = ["/v1/models", "/v1/datasets", "/v1/jobs", "/v1/webhooks"] * (READERS // 4)
        with ThreadPoolExecutor(READERS) as pool:
            reads = list(pool.map(read, paths))
        assert [status for status, _ in reads] == [200] * READERS
        assert max(seconds for _, seconds in reads) < HOLD_SECONDS / 2, reads
        assert time.monotonic() - held_since < HOLD_SECONDS  # all answered while it was held

        # a write queues for the lock and goes through once it is released
        start = time.monotonic()
        assert_problem(client.delete("/v1/webhooks/webhook_unknown"), 404, "not_found")
        waited = time.monotonic() - start
        writer.join()
    assert waited >= HOLD_SECONDS - (start - held_since) - 0.2, waited


def test_a_request_uses_one_connection_and_reads_without_the_lock(tmp_path: Path) -> None:
    """The key lookup and the route share one session: one pooled connection per GET, whose
    transaction begins DEFERRED; a writing request's lookup is DEFERRED too, and only the
    route's own transaction takes the lock."""
    settings = Settings(database_url=None, redis_url=None, data_dir=tmp_path / "data")
    upgrade_schema(settings)
    dispatcher = InProcessDispatcher(None)  # type: ignore[arg-type] - never started
    with TestClient(create_app(settings, dispatcher)) as client:
        sign_in(client, "alpha")
        checkouts: list[object] = []
        begins: list[str] = []

        def record_begin(_connection, _cursor, statement: str, *_: object) -> None:
            if statement.startswith("BEGIN"):
                begins.append(statement)

        engine = client.app.state.engine
        event.listen(engine, "checkout", lambda *args: checkouts.append(args))
        event.listen(engine, "before_cursor_execute", record_begin)
        assert client.get("/v1/jobs").status_code == 200
        assert (len(checkouts), begins) == (1, ["BEGIN DEFERRED"])
        begins.clear()
        assert client.delete("/v1/webhooks/webhook_unknown").status_code == 404
        assert begins == ["BEGIN DEFERRED", "BEGIN IMMEDIATE"]

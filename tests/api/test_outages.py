"""Dependencies that are down or hung: the API answers 503 problem+json with Retry-After in
bounded time (never 500, never a hang), leaves no half record or orphan object, and recovers by
itself. The database is the real Postgres behind a proxy the test cuts, a listener that never
answers, or a throwaway Postgres frozen with SIGSTOP; the storage is a real directory made
unusable."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.engine import make_url

from api.incoming import PREFIX
from api.main import create_app
from core.settings import Settings
from tests.api.helpers import assert_problem, sign_in
from tests.conftest import migrate
from tests.worker.processes import PostgresServer, wait_until
from tests.worker.tcp_proxy import TcpProxy
from worker.in_process import InProcessDispatcher
from worker.resources import build_resources


def _settings(database_url: str, tmp_path: Path, **extra) -> Settings:
    return Settings(
        database_url=database_url,
        redis_url=None,
        data_dir=tmp_path / "data",
        upload_temp_dir=tmp_path / "incoming",
        readiness_timeout_seconds=1,
        database_connect_timeout_seconds=2,
        database_hang_seconds=1,
        **extra,
    )


@pytest.fixture
def proxy(clean_postgres: str) -> Iterator[TcpProxy]:
    url = make_url(clean_postgres)
    proxy = TcpProxy((url.host, url.port or 5432))
    yield proxy
    proxy.close()


@pytest.fixture
def client(proxy: TcpProxy, clean_postgres: str, tmp_path: Path) -> Iterator[TestClient]:
    url = make_url(clean_postgres).set(host="127.0.0.1", port=proxy.port)
    settings = _settings(url.render_as_string(hide_password=False), tmp_path)
    dispatcher = InProcessDispatcher(build_resources(settings)).start()
    with TestClient(create_app(settings, dispatcher)) as client:
        sign_in(client, "outages")
        yield client
    dispatcher.stop()


def test_a_database_outage_answers_503_at_once_and_recovers_by_itself(
    client: TestClient, proxy: TcpProxy
) -> None:
    assert client.get("/v1/jobs").status_code == 200
    proxy.cut()
    for path in ("/v1/jobs", "/v1/models", "/readyz"):
        started = time.monotonic()
        response = client.get(path)
        assert time.monotonic() - started < 1.5, path
        code = "not_ready" if path == "/readyz" else "database_unavailable"
        body = assert_problem(response, 503, code)
        assert response.headers["Retry-After"] == "5"
    assert body["checks"] == {"database": False, "broker": True, "storage": True}
    created = client.post("/v1/datasets", files={"file": ("d.npz", b"samples")})
    assert_problem(created, 503, "database_unavailable")
    proxy.restore()  # the guard's background probe notices within about half a second
    wait_until(lambda: client.get("/v1/jobs").status_code == 200, 3, "recovery")
    assert client.get("/v1/datasets").json()["data"] == []  # no half record ...
    assert not list((client.app.state.settings.data_dir / "objects").rglob("d.npz"))  # nor object


def test_a_slow_query_on_a_healthy_database_is_not_taken_for_a_hang(
    client: TestClient,
) -> None:
    """A statement running past database_hang_seconds makes the guard probe the database;
    the probe answers, so the statement finishes and nothing answers 503."""
    with client.app.state.read_sessionmaker() as session:
        assert session.execute(text("SELECT pg_sleep(1.5), 1")).one()[1] == 1
    guard = client.app.state.db_guard
    assert not guard.is_open and guard.probes >= 1  # it looked, and let it be
    assert client.get("/v1/jobs").status_code == 200


def _timed_503s(client: TestClient, paths: tuple[str, ...]) -> list[float]:
    """Ask each path; each must answer 503 problem+json; return how long each took."""
    took = []
    for path in paths:
        started = time.monotonic()
        response = client.get(path)
        took.append(time.monotonic() - started)
        code = "not_ready" if path == "/readyz" else "database_unavailable"
        assert_problem(response, 503, code)
        assert response.headers["Retry-After"] == "5"
    return took


def test_a_hung_database_is_a_503_within_a_second(tmp_path: Path) -> None:
    """A server that accepts connections and never answers: the first request gives up on
    its connection after database_hang_seconds (libpq alone would wait 2 s at least), the
    next ones do not wait at all."""
    silent = socket.create_server(("127.0.0.1", 0))  # accepts connections, never answers
    port = silent.getsockname()[1]
    settings = _settings(f"postgresql+psycopg://postgres@127.0.0.1:{port}/x", tmp_path)
    dispatcher = InProcessDispatcher(build_resources(settings))
    try:
        with TestClient(create_app(settings, dispatcher)) as client:
            client.headers["Authorization"] = "Bearer xk_nothing"
            first, *then = _timed_503s(client, ("/v1/jobs", "/readyz", "/v1/models", "/v1/jobs"))
            assert 0.9 < first < 2, first  # database_hang_seconds, not libpq's 2 s floor
            assert max(then) < 0.3, then
    finally:
        silent.close()
        dispatcher.resources.close()


@pytest.fixture
def postgres_to_freeze() -> Iterator[PostgresServer]:
    if not shutil.which("initdb"):
        pytest.skip("initdb is not installed")
    server = PostgresServer()
    yield server
    server.stop()


def test_a_frozen_postgres_is_a_503_within_a_second_and_recovers_by_itself(
    postgres_to_freeze: PostgresServer, tmp_path: Path
) -> None:
    """Postgres stopped with SIGSTOP while the API holds pooled connections to it: the pings
    and statements on those connections would wait forever (the kernel still acknowledges);
    the guard's watchdog finds the database hung and fails them, then everything fails fast
    until Postgres is thawed, and the service recovers by itself."""
    server = postgres_to_freeze
    migrate(server.url)
    settings = _settings(server.url, tmp_path)
    dispatcher = InProcessDispatcher(build_resources(settings))
    try:
        with TestClient(create_app(settings, dispatcher)) as client:
            sign_in(client, "frozen")
            assert client.get("/v1/jobs").status_code == 200  # pooled connections exist

            server.freeze()
            first, *then = _timed_503s(client, ("/v1/jobs", "/v1/models", "/readyz"))
            assert first < 2, first  # hang_seconds to find the hang, then fail fast
            assert max(then) < 0.3, then
            created = client.post("/v1/datasets", files={"file": ("d.npz", b"samples")})
            assert_problem(created, 503, "database_unavailable")

            server.thaw()
            started = time.monotonic()
            wait_until(lambda: client.get("/v1/jobs").status_code == 200, 5, "recovery")
            assert time.monotonic() - started < 2
            assert client.get("/v1/datasets").json()["data"] == []  # no half record ...
            assert not list(settings.resolved_storage_path.rglob("d.npz"))  # ... nor object
    finally:
        server.thaw()
        dispatcher.resources.close()


def test_unwritable_storage_refuses_an_upload_with_503_and_leaves_nothing(
    client: TestClient,
) -> None:
    root = client.app.state.settings.resolved_storage_path
    shutil.rmtree(root, ignore_errors=True)
    root.parent.mkdir(parents=True, exist_ok=True)
    root.write_text("not a directory")  # the store's root is gone (a lost mount)
    response = client.post("/v1/datasets", files={"file": ("d.npz", b"samples")})
    assert_problem(response, 503, "storage_unavailable")
    assert response.headers["Retry-After"] == "5"
    assert client.get("/v1/datasets").json()["data"] == []
    assert list(client.app.state.incoming_dir.iterdir()) == []  # the received file is gone too


def test_files_of_killed_uploads_are_swept_at_start(clean_postgres: str, tmp_path: Path) -> None:
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    gone = subprocess.Popen(["true"])
    gone.wait()  # a process that has exited: the upload it was receiving is dead
    orphan = incoming / f"{PREFIX}{gone.pid}-abc"
    orphan.write_bytes(b"x" * 1024)
    live = subprocess.Popen(["sleep", "30"])
    receiving = incoming / f"{PREFIX}{live.pid}-def"  # another API process, mid-upload
    receiving.write_bytes(b"y")
    stalled = incoming / f"{PREFIX}{live.pid}-ghi"
    stalled.write_bytes(b"z")
    hour_ago = time.time() - 3700
    os.utime(stalled, (hour_ago, hour_ago))
    settings = _settings(clean_postgres, tmp_path)
    dispatcher = InProcessDispatcher(build_resources(settings))
    try:
        with TestClient(create_app(settings, dispatcher)):
            deadline = time.monotonic() + 5
            while orphan.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
        assert sorted(p.name for p in incoming.iterdir()) == [receiving.name]
    finally:
        live.kill()
        live.wait()
        dispatcher.resources.close()

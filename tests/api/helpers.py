"""Small helpers for driving the API in tests."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from core.keys import create_key, create_project
from worker.in_process import InProcessDispatcher

PROBLEM = "application/problem+json"


def new_key(client: TestClient, project: str) -> str:
    """An API key of a new project named ``project``, written through the app's database."""
    with client.app.state.sessionmaker() as session, session.begin():
        return create_key(session, create_project(session, project)).key


def sign_in(client: TestClient, project: str) -> None:
    """Every later request of ``client`` acts for a new project named ``project``."""
    client.headers["Authorization"] = f"Bearer {new_key(client, project)}"


def upload(client: TestClient, kind: str, content: bytes, filename: str, **fields: str) -> Any:
    response = client.post(f"/v1/{kind}", files={"file": (filename, content)}, data=fields)
    assert response.status_code == 201, response.text
    return response.json()


def settle(client: TestClient, dispatcher: InProcessDispatcher) -> None:
    """Wait for the in-process worker to finish everything queued so far."""
    dispatcher.join()


def wait_for(client: TestClient, path: str, done: set[str], timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.get(path).json()
        if body["status"] in done:
            return body
        time.sleep(0.1)
    raise AssertionError(f"{path} did not reach {done}: {body}")


def leftover_files(client: TestClient, scratch: Path) -> list[Path]:
    """Files left in the test's temporary folder and in the app's upload folder."""
    folders = (scratch, client.app.state.incoming_dir)
    return [path for folder in folders for path in folder.rglob("*") if path.is_file()]


def assert_problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["code"] == code and body["status"] == status
    assert body["title"] and body["detail"]
    return body

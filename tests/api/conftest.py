"""An app wired to real Postgres and local storage, with the real job runner working
in-process, and an authenticated client for one project."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from core.settings import Settings
from tests.api.helpers import new_key, settle, sign_in, upload
from worker.in_process import InProcessDispatcher
from worker.resources import build_resources


@pytest.fixture
def settings(clean_postgres: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=clean_postgres,
        redis_url=None,
        data_dir=tmp_path / "data",
        upload_temp_dir=tmp_path / "incoming",
        storage_backend="local",
        max_model_bytes=5 * 1024**2,
        max_dataset_bytes=5 * 1024**2,
    )


@pytest.fixture
def dispatcher(settings: Settings) -> InProcessDispatcher:
    return InProcessDispatcher(build_resources(settings))


@pytest.fixture
def app_client(settings: Settings, dispatcher: InProcessDispatcher) -> Iterator[TestClient]:
    dispatcher.start()
    with TestClient(create_app(settings, dispatcher)) as client:
        yield client
    dispatcher.stop()


@pytest.fixture
def client(app_client: TestClient) -> TestClient:
    """Authenticated as project "alpha"."""
    sign_in(app_client, "alpha")
    return app_client


@pytest.fixture
def other_key(app_client: TestClient) -> str:
    return new_key(app_client, "beta")


@pytest.fixture
def uploaded(
    client: TestClient, dispatcher: InProcessDispatcher, digits_model_pt2: bytes, digits_npz: bytes
) -> dict[str, str]:
    model = upload(client, "models", digits_model_pt2, "digits.pt2")
    dataset = upload(client, "datasets", digits_npz, "digits.npz")
    settle(client, dispatcher)
    return {"model_id": model["id"], "dataset_id": dataset["id"]}

"""The admin command creates projects and keys that the API accepts, and revokes them."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from core import admin
from core.settings import get_settings
from tests.api.helpers import assert_problem


@pytest.fixture
def admin_env(app_client: TestClient, monkeypatch: pytest.MonkeyPatch) -> TestClient:
    monkeypatch.setenv("DATABASE_URL", app_client.app.state.settings.resolved_database_url)
    get_settings.cache_clear()
    yield app_client
    get_settings.cache_clear()


def test_create_project_key_and_revoke(
    admin_env: TestClient, capsys: pytest.CaptureFixture
) -> None:
    assert admin.main(["create-project", "gamma"]) == 0
    printed = dict(line.split(":", 1) for line in capsys.readouterr().out.splitlines()[:3])
    key, key_id = printed["api key"].strip(), printed["key id"].strip()
    headers = {"Authorization": f"Bearer {key}"}
    assert admin_env.get("/v1/jobs", headers=headers).status_code == 200

    assert admin.main(["create-project", "gamma"]) == 1
    assert admin.main(["create-key", "gamma", "--name", "ci"]) == 0
    assert admin.main(["create-key", "nope"]) == 1

    assert admin.main(["revoke-key", key_id]) == 0
    assert_problem(admin_env.get("/v1/jobs", headers=headers), 401, "unauthorized")

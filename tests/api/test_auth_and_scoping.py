"""Keys are required, stored hashed, and never see another project's objects."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import select

from core.keys import hash_key
from core.tables import ApiKey
from tests.api.helpers import assert_problem, upload


def test_requests_without_a_valid_key_are_401(app_client: TestClient) -> None:
    assert_problem(app_client.get("/v1/models"), 401, "unauthorized")
    bad = {"Authorization": "Bearer xc_nope_nope"}
    assert_problem(app_client.get("/v1/jobs", headers=bad), 401, "unauthorized")
    assert_problem(
        app_client.get("/v1/jobs", headers={"Authorization": "Basic x"}), 401, "unauthorized"
    )


def test_keys_are_stored_as_hashes_only(client: TestClient) -> None:
    key = client.headers["Authorization"].removeprefix("Bearer ")
    with client.app.state.sessionmaker() as session:
        stored = session.scalars(select(ApiKey)).all()
    assert [k.key_hash for k in stored] == [hash_key(key)]
    assert all(key not in (k.key_hash, k.prefix, k.name) for k in stored)
    assert key.startswith(f"xc_{stored[0].prefix}_")


def test_another_projects_objects_answer_404(
    client: TestClient, other_key: str, digits_npz: bytes
) -> None:
    mine = upload(client, "datasets", digits_npz, "mine.npz")
    theirs = {"Authorization": f"Bearer {other_key}"}
    assert_problem(client.get(f"/v1/datasets/{mine['id']}", headers=theirs), 404, "not_found")
    assert_problem(client.delete(f"/v1/datasets/{mine['id']}", headers=theirs), 404, "not_found")
    assert client.get("/v1/datasets", headers=theirs).json()["data"] == []
    body = {"model_id": "mdl_x", "dataset_id": mine["id"], "steps": [{"type": "prune_filters"}]}
    assert_problem(client.post("/v1/jobs", json=body, headers=theirs), 404, "not_found")
    assert client.get(f"/v1/datasets/{mine['id']}").status_code == 200

"""Small exposures closed: the list cursor is no existence oracle across projects,
timestamps are RFC 3339 in UTC with their offset, and the 4xx answers are in OpenAPI."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi.testclient import TestClient

from tests.api.helpers import assert_problem, upload


def test_another_projects_id_as_cursor_answers_like_an_unknown_one(
    client: TestClient, other_key: str, digits_npz: bytes
) -> None:
    theirs = client.post(
        "/v1/datasets",
        files={"file": ("d.npz", digits_npz)},
        headers={"Authorization": f"Bearer {other_key}"},
    ).json()["id"]
    mine = upload(client, "datasets", digits_npz, "mine.npz")["id"]
    assert client.get("/v1/datasets", params={"after": mine}).json()["data"] == []
    for kind in ("datasets", "models", "jobs", "webhooks"):
        foreign = assert_problem(client.get(f"/v1/{kind}", params={"after": theirs}), 400,
                                 "invalid_cursor")  # fmt: skip
        unknown = assert_problem(client.get(f"/v1/{kind}", params={"after": "ds_nothing"}), 400,
                                 "invalid_cursor")  # fmt: skip
        assert foreign["detail"].replace(theirs, "ID") == unknown["detail"].replace(
            "ds_nothing", "ID"
        )


def test_timestamps_are_rfc3339_utc_with_an_offset(client: TestClient, digits_npz: bytes) -> None:
    before = datetime.now(UTC)
    created = upload(client, "datasets", digits_npz, "d.npz")["created_at"]
    assert created.endswith("Z")
    moment = datetime.fromisoformat(created)
    assert moment.utcoffset().total_seconds() == 0
    assert abs((moment - before).total_seconds()) < 60


def test_openapi_documents_the_4xx_answers(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    upload_responses = paths["/v1/models"]["post"]["responses"]
    assert {"400", "401", "413", "415", "422"} <= set(upload_responses)
    assert "invalid_multipart" in upload_responses["400"]["description"]
    listing = paths["/v1/jobs"]["get"]["responses"]
    assert "invalid_cursor" in listing["400"]["description"]
    created = paths["/v1/jobs"]["post"]["responses"]
    assert {"400", "409", "413", "422"} <= set(created)
    assert "unknown_mlflow_target" in created["422"]["description"]
    assert created["422"]["content"]["application/problem+json"]
    schema = client.get("/openapi.json").json()["components"]["schemas"]
    assert schema["ModelOut"]["properties"]["created_at"]["format"] == "date-time"

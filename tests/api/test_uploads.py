"""Uploads stream to storage with their SHA-256, are validated by the worker, and are
refused clearly when too large, hostile or broken."""

from __future__ import annotations

import hashlib
import pickle

from fastapi.testclient import TestClient

from tests.api.helpers import assert_problem, settle, upload
from worker.in_process import InProcessDispatcher


def test_model_upload_is_hashed_stored_and_validated(
    client: TestClient, dispatcher: InProcessDispatcher, digits_model_pt2: bytes
) -> None:
    created = upload(client, "models", digits_model_pt2, "digits.pt2", name="digits cnn")
    assert created["id"].startswith("mdl_")
    assert created["status"] == "pending"
    assert created["sha256"] == hashlib.sha256(digits_model_pt2).hexdigest()
    assert created["size_bytes"] == len(digits_model_pt2)
    assert created["name"] == "digits cnn"

    settle(client, dispatcher)
    model = client.get(f"/v1/models/{created['id']}").json()

    assert model["status"] == "ready" and model["error"] is None
    assert model["format"] == "pt2"
    assert model["input_shape"] == [1, 8, 8] and model["num_classes"] == 10
    # small_cnn: conv 1->16 (160), conv 16->32 (4640), fc 512->64 (32832), fc 64->10 (650)
    assert model["parameters"] == 160 + 4640 + 32832 + 650
    assert model["macs"] == 64 * 16 * 9 + 64 * 32 * 144 + 64 * 512 + 10 * 64


def test_dataset_upload_is_validated(
    client: TestClient, dispatcher: InProcessDispatcher, digits_npz: bytes
) -> None:
    created = upload(client, "datasets", digits_npz, "digits.npz")
    settle(client, dispatcher)
    dataset = client.get(f"/v1/datasets/{created['id']}").json()
    assert dataset["status"] == "ready" and dataset["format"] == "npz"
    assert dataset["samples"] == 1797 and dataset["num_classes"] == 10
    assert dataset["sample_shape"] == [1, 8, 8]
    assert dataset["classes"] == [str(i) for i in range(10)]


class Payload:
    def __reduce__(self):
        return (print, ("executed",))


def test_pickle_upload_becomes_invalid_with_a_code(
    client: TestClient, dispatcher: InProcessDispatcher
) -> None:
    created = upload(client, "models", pickle.dumps(Payload(), protocol=2), "model.pt")
    settle(client, dispatcher)
    model = client.get(f"/v1/models/{created['id']}").json()
    assert model["status"] == "invalid"
    assert model["error"]["code"] == "unsupported_format"
    assert "pickle" in model["error"]["message"]


def test_broken_npz_becomes_invalid(client: TestClient, dispatcher: InProcessDispatcher) -> None:
    created = upload(client, "datasets", b"not a dataset at all", "data.npz")
    settle(client, dispatcher)
    dataset = client.get(f"/v1/datasets/{created['id']}").json()
    assert dataset["status"] == "invalid" and dataset["error"]["code"] == "unsupported_format"


def test_oversized_upload_is_413_and_nothing_is_kept(client: TestClient) -> None:
    too_big = b"\0" * (5 * 1024**2 + 1)
    response = client.post("/v1/models", files={"file": ("big.onnx", too_big)})
    body = assert_problem(response, 413, "payload_too_large")
    assert body["limit_bytes"] == 5 * 1024**2
    assert client.get("/v1/models").json()["data"] == []
    storage_root = client.app.state.settings.resolved_storage_path
    assert not storage_root.exists() or not any(storage_root.rglob("big.onnx"))


def test_oversized_chunked_upload_is_413(client: TestClient) -> None:
    boundary = "xyz"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()

    def body():
        yield head
        for _ in range(6):
            yield b"\1" * 1024**2
        yield f"\r\n--{boundary}--\r\n".encode()

    response = client.post(
        "/v1/models",
        content=body(),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert_problem(response, 413, "payload_too_large")


def test_upload_needs_multipart_with_a_file(client: TestClient) -> None:
    assert_problem(client.post("/v1/models", content=b"raw"), 415, "unsupported_media_type")
    response = client.post("/v1/models", files={"other": ("x", b"1")})
    assert_problem(response, 422, "validation_error")
    response = client.post(
        "/v1/models", files={"file": ("w.safetensors", b"1")}, data={"architecture_args": "{"}
    )
    assert_problem(response, 422, "validation_error")


def test_lists_page_with_a_cursor(client: TestClient, digits_npz: bytes) -> None:
    ids = [upload(client, "datasets", digits_npz, f"d{i}.npz")["id"] for i in range(5)]
    first = client.get("/v1/datasets", params={"limit": 2}).json()
    assert [d["id"] for d in first["data"]] == ids[::-1][:2]
    assert first["has_more"] and first["next_cursor"] == ids[3]
    second = client.get("/v1/datasets", params={"limit": 2, "after": first["next_cursor"]}).json()
    third = client.get("/v1/datasets", params={"limit": 2, "after": second["next_cursor"]}).json()
    assert [d["id"] for d in second["data"] + third["data"]] == ids[::-1][2:]
    assert not third["has_more"] and third["next_cursor"] is None
    assert_problem(client.get("/v1/datasets", params={"after": "ds_nope"}), 400, "invalid_cursor")
    assert_problem(client.get("/v1/datasets", params={"limit": 1000}), 422, "validation_error")


def test_delete_removes_the_record_and_the_file(
    client: TestClient, dispatcher: InProcessDispatcher, digits_npz: bytes
) -> None:
    created = upload(client, "datasets", digits_npz, "digits.npz")
    settle(client, dispatcher)
    storage = client.app.state.storage
    with client.app.state.sessionmaker() as session:
        from core.tables import DatasetRecord

        key = session.get(DatasetRecord, created["id"]).storage_key
    assert storage.exists(key)
    assert client.delete(f"/v1/datasets/{created['id']}").status_code == 204
    assert not storage.exists(key)
    assert_problem(client.get(f"/v1/datasets/{created['id']}"), 404, "not_found")
    assert_problem(client.delete(f"/v1/datasets/{created['id']}"), 404, "not_found")

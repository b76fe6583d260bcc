"""Jobs end to end through the API with the real runner: submit, follow, download."""

from __future__ import annotations

import hashlib
import io
import json

import numpy as np
import onnxruntime
import torch
from fastapi.testclient import TestClient
from safetensors.numpy import load as load_safetensors

from tests.api.helpers import assert_problem, settle, upload, wait_for
from worker.in_process import InProcessDispatcher

SPEC = {
    "steps": [
        {"type": "prune_filters", "ratio": 0.5},
        {"type": "prune_weights", "sparsity": 0.8, "layers": ["fc1"]},
    ],
    "attribution": {"samples": 128},
    "evaluation": {"latency_repeats": 3},
}


def test_a_job_runs_to_success_with_metrics_events_and_artifacts(
    client: TestClient, uploaded: dict[str, str], digits_npz: bytes
) -> None:
    response = client.post("/v1/jobs", json={**uploaded, **SPEC, "metadata": {"run": "a"}})
    assert response.status_code == 201, response.text
    job = response.json()
    assert job["id"].startswith("job_") and job["status"] in ("queued", "running")
    assert job["metadata"] == {"run": "a"} and job["spec"]["criterion"] == "deeplift"

    done = wait_for(client, f"/v1/jobs/{job['id']}", {"succeeded", "failed"})

    assert done["status"] == "succeeded", done["error"]
    assert done["progress"] == 1.0 and done["error"] is None
    assert done["started_at"] and done["finished_at"] and done["attempts"] == 1
    metrics = done["metrics"]
    layers = {row["name"]: row for row in metrics["layers"]}
    assert layers["conv2"]["channels_kept"] == 16 and layers["fc1"]["channels_kept"] == 32
    assert abs(layers["fc1"]["sparsity"] - 0.8) < 1e-3
    assert metrics["attribution"]["completeness_error"] < 1e-4
    assert metrics["export"]["onnx"]["max_abs_diff"] <= metrics["export"]["onnx"]["atol"]
    assert metrics["data"]["calibration_samples"] == 128
    device = "cuda:0" if torch.cuda.is_available() else "cpu"  # WORKER_DEVICE=auto
    assert metrics["runtime"]["device"] == device and metrics["latency"]["device"] == "cpu"

    events = client.get(f"/v1/jobs/{job['id']}/events", params={"limit": 1000}).json()["data"]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    statuses = [e["data"]["status"] for e in events if e["type"] == "status"]
    assert statuses == ["queued", "running", "succeeded"]
    (runtime,) = [e["data"] for e in events if e["type"] == "runtime"]
    assert runtime["device"] == device
    stages = [e["data"]["stage"] for e in events if e["type"] == "progress"]
    for stage in ("loading", "evaluating", "attributing", "pruning", "exporting"):
        assert stage in stages
    progress = [e["data"]["progress"] for e in events if e["type"] == "progress"]
    assert progress == sorted(progress)

    artifacts = client.get(f"/v1/jobs/{job['id']}/artifacts").json()
    names = [a["name"] for a in artifacts]
    assert names == [
        "metrics.json", "model.fp32.onnx", "model.onnx", "model.pt2", "model.xaic",
        "report.html", "scores.safetensors",
    ]  # fmt: skip
    files = {}
    for artifact in artifacts:
        download = client.get(artifact["download_url"])
        assert download.status_code == 200
        assert hashlib.sha256(download.content).hexdigest() == artifact["sha256"]
        assert len(download.content) == artifact["size_bytes"]
        assert download.headers["x-checksum-sha256"] == artifact["sha256"]
        files[artifact["name"]] = download.content
    assert json.loads(files["metrics.json"])["after"] == metrics["after"]
    session = onnxruntime.InferenceSession(files["model.onnx"], providers=["CPUExecutionProvider"])
    x = np.load(io.BytesIO(digits_npz))["x"][:4]
    (logits,) = session.run(None, {session.get_inputs()[0].name: x})
    assert logits.shape == (4, 10)
    scores = load_safetensors(files["scores.safetensors"])
    assert scores["scoring0.conv2.channels"].shape == (32,)


def test_events_page_and_stream_as_server_sent_events(
    client: TestClient, uploaded: dict[str, str]
) -> None:
    job = client.post("/v1/jobs", json={**uploaded, **SPEC}).json()
    with client.stream(
        "GET", f"/v1/jobs/{job['id']}/events", headers={"Accept": "text/event-stream"}
    ) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        text = "".join(stream.iter_text())
    blocks = [b for b in text.split("\n\n") if b.startswith("id:")]
    seqs = [int(b.split("\n")[0].removeprefix("id: ")) for b in blocks]
    assert seqs == list(range(1, len(seqs) + 1))
    assert '"status":"succeeded"' in blocks[-1]
    page = client.get(f"/v1/jobs/{job['id']}/events", params={"after": 1, "limit": 2}).json()
    assert [e["seq"] for e in page["data"]] == [2, 3] and page["has_more"]
    assert page["next_cursor"] == "3"


def test_idempotency_key_returns_the_same_job_or_409(
    client: TestClient, uploaded: dict[str, str]
) -> None:
    body = {**uploaded, **SPEC}
    headers = {"Idempotency-Key": "retry-1"}
    first = client.post("/v1/jobs", json=body, headers=headers)
    again = client.post("/v1/jobs", json=body, headers=headers)
    assert first.status_code == 201 and again.status_code == 201
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["idempotent-replayed"] == "true"
    other = client.post("/v1/jobs", json={**body, "criterion": "l1"}, headers=headers)
    assert_problem(other, 409, "idempotency_key_reused")
    assert len(client.get("/v1/jobs").json()["data"]) == 1


def test_bad_job_requests_get_clear_problems(client: TestClient, uploaded: dict[str, str]) -> None:
    body = assert_problem(
        client.post(
            "/v1/jobs", json={**uploaded, "steps": [{"type": "prune_filters", "ratio": 2}]}
        ),
        422,
        "validation_error",
    )
    assert any(error["loc"][-1] == "ratio" for error in body["errors"])
    missing = {**uploaded, **SPEC, "model_id": "mdl_missing"}
    assert_problem(client.post("/v1/jobs", json=missing), 404, "not_found")
    assert_problem(client.get("/v1/jobs/job_missing"), 404, "not_found")


def test_a_job_on_an_invalid_model_is_refused(
    client: TestClient, dispatcher: InProcessDispatcher, uploaded: dict[str, str]
) -> None:
    broken = upload(client, "models", b"junk" * 100, "broken.onnx")
    settle(client, dispatcher)
    body = {**uploaded, **SPEC, "model_id": broken["id"]}
    assert_problem(client.post("/v1/jobs", json=body), 409, "model_invalid")


def test_a_failing_job_reports_a_code_and_a_message(
    client: TestClient, uploaded: dict[str, str]
) -> None:
    spec = {**SPEC, "steps": [{"type": "prune_weights", "layers": ["no_such_layer"]}]}
    job = client.post("/v1/jobs", json={**uploaded, **spec}).json()
    done = wait_for(client, f"/v1/jobs/{job['id']}", {"succeeded", "failed"})
    assert done["status"] == "failed"
    assert done["error"]["code"] == "invalid_spec"
    assert "no_such_layer" in done["error"]["message"]
    assert "Traceback" not in done["error"]["message"]


def test_cancel_is_idempotent_for_queued_running_and_finished_jobs(
    client: TestClient, dispatcher: InProcessDispatcher, uploaded: dict[str, str]
) -> None:
    slow = {
        **SPEC,
        "steps": [{"type": "prune_filters", "ratio": 0.5, "iterative_steps": 20}],
        "attribution": {"samples": 1024, "batch_size": 1},
    }
    running = client.post("/v1/jobs", json={**uploaded, **slow}).json()
    queued = client.post("/v1/jobs", json={**uploaded, **SPEC}).json()
    wait_for(client, f"/v1/jobs/{running['id']}", {"running"})

    assert client.post(f"/v1/jobs/{queued['id']}/cancel").json()["status"] == "cancelled"
    assert client.post(f"/v1/jobs/{queued['id']}/cancel").json()["status"] == "cancelled"
    assert client.post(f"/v1/jobs/{running['id']}/cancel").json()["status"] == "cancelling"
    # the worker may already have stopped by the second request
    again = client.post(f"/v1/jobs/{running['id']}/cancel").json()["status"]
    assert again in ("cancelling", "cancelled")
    done = wait_for(client, f"/v1/jobs/{running['id']}", {"cancelled", "succeeded", "failed"})
    assert done["status"] == "cancelled"
    settle(client, dispatcher)
    assert client.get(f"/v1/jobs/{queued['id']}").json()["status"] == "cancelled"
    assert client.post(f"/v1/jobs/{done['id']}/cancel").json()["status"] == "cancelled"
    statuses = [
        e["data"]["status"]
        for e in client.get(f"/v1/jobs/{running['id']}/events", params={"limit": 1000}).json()[
            "data"
        ]
        if e["type"] == "status"
    ]
    assert statuses == ["queued", "running", "cancelling", "cancelled"]


def test_list_filters_by_status_and_model(client: TestClient, uploaded: dict[str, str]) -> None:
    bad = {**SPEC, "steps": [{"type": "prune_weights", "layers": ["nope"]}]}
    failed = client.post("/v1/jobs", json={**uploaded, **bad}).json()
    wait_for(client, f"/v1/jobs/{failed['id']}", {"failed"})
    listed = client.get("/v1/jobs", params={"status": "failed"}).json()["data"]
    assert [j["id"] for j in listed] == [failed["id"]]
    assert client.get("/v1/jobs", params={"status": "succeeded"}).json()["data"] == []
    assert client.get("/v1/jobs", params={"model_id": "mdl_other"}).json()["data"] == []


def test_a_model_used_by_an_unfinished_job_cannot_be_deleted(
    client: TestClient, dispatcher: InProcessDispatcher, uploaded: dict[str, str]
) -> None:
    dispatcher.stop()  # nothing runs: the job stays queued
    client.post("/v1/jobs", json={**uploaded, **SPEC})
    assert_problem(client.delete(f"/v1/models/{uploaded['model_id']}"), 409, "model_in_use")
    assert_problem(client.delete(f"/v1/datasets/{uploaded['dataset_id']}"), 409, "dataset_in_use")


def test_every_step_type_and_a_sweep_run_through_the_api(
    client: TestClient, uploaded: dict[str, str]
) -> None:
    steps = [
        {"type": "prune_filters", "ratio": 0.25},
        {"type": "prune_weights", "sparsity": 0.8, "layers": ["fc1"]},
        {"type": "share_weights", "clusters": 16, "layers": ["fc1", "fc2"]},
        {"type": "quantize_mixed", "average_bits": 6, "layers": ["conv1", "conv2"]},
        {"type": "finetune", "epochs": 1},
    ]
    sweep = {"step": 2, "parameter": "clusters", "values": [4, 16]}
    job = client.post("/v1/jobs", json={**uploaded, **SPEC, "steps": steps, "sweep": sweep})
    assert job.status_code == 201, job.text
    done = wait_for(client, f"/v1/jobs/{job.json()['id']}", {"succeeded", "failed"})

    assert done["status"] == "succeeded", done["error"]
    metrics = done["metrics"]
    assert [s["type"] for s in metrics["steps"]] == [s["type"] for s in steps]
    assert [p["clusters"] for p in metrics["sweep"]["points"]] == [4, 16]
    layers = metrics["export"]["onnx"]["layers"]
    assert {name: layer["kind"] for name, layer in layers.items()} == {
        "conv1": "quantized", "conv2": "quantized", "fc1": "shared", "fc2": "shared",
    }  # fmt: skip
    artifacts = {a["name"]: a for a in client.get(f"/v1/jobs/{done['id']}/artifacts").json()}
    assert artifacts["model.xaic"]["size_bytes"] == metrics["after"]["packed_bytes"]
    assert metrics["export"]["packed"]["bytes"] == metrics["after"]["packed_bytes"]
    assert artifacts["model.onnx"]["size_bytes"] == metrics["export"]["onnx"]["bytes"]["model.onnx"]

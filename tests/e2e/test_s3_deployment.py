"""The real server on S3 storage (moto's server over HTTP): uploads land in the bucket and
artifact downloads redirect to short-lived presigned URLs; a store that refuses an artifact's
write costs the job one attempt, and the bucket ends holding the recorded set and nothing else."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import pytest

from tests.e2e.server import EmbeddedServer
from tests.s3_faults import FaultyS3, MotoServer, free_port

BUCKET = "e2e-bucket"


def _server(tmp_path: Path, endpoint: str, **env: str) -> EmbeddedServer:
    s3 = {
        "STORAGE_BACKEND": "s3", "S3_ENDPOINT_URL": endpoint, "S3_BUCKET": BUCKET,
        "S3_ACCESS_KEY_ID": "test", "S3_SECRET_ACCESS_KEY": "test",
    }  # fmt: skip
    return EmbeddedServer(tmp_path, free_port(), s3 | env)


def _api(server: EmbeddedServer, tmp_path: Path) -> httpx.Client:
    key = (tmp_path / "data" / "api-key").read_text().strip()
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"})


def _run_job(api: httpx.Client, model: bytes, dataset: bytes) -> str:
    """Upload, submit a small pruning job, follow its feed to the end; -> the job's id."""
    model_id = api.post("/v1/models", files={"file": ("m.pt2", model)}).json()["id"]
    dataset_id = api.post("/v1/datasets", files={"file": ("d.npz", dataset)}).json()["id"]
    body = {
        "model_id": model_id, "dataset_id": dataset_id,
        "steps": [{"type": "prune_filters", "ratio": 0.3}],
        "evaluation": {"latency_repeats": 3}, "attribution": {"samples": 128},
    }  # fmt: skip
    job_id = api.post("/v1/jobs", json=body).json()["id"]
    with api.stream(
        "GET", f"/v1/jobs/{job_id}/events", headers={"Accept": "text/event-stream"}, timeout=600
    ) as stream:
        feed = "".join(stream.iter_text())
    assert "event: status" in feed and '"status":"succeeded"' in feed
    return job_id


def test_jobs_run_on_s3_and_downloads_are_presigned(
    s3_server: MotoServer, tmp_path: Path, digits_model_pt2: bytes, digits_npz: bytes
) -> None:
    s3_endpoint = s3_server.url
    server = _server(tmp_path, s3_endpoint)
    try:
        with _api(server, tmp_path) as api:
            assert api.get("/readyz").json()["checks"]["storage"] is True
            job = {"id": _run_job(api, digits_model_pt2, digits_npz)}

            artifacts = {a["name"]: a for a in api.get(f"/v1/jobs/{job['id']}/artifacts").json()}
            redirect = api.get(artifacts["model.onnx"]["download_url"])
            assert redirect.status_code == 307
            location = redirect.headers["location"]
            assert location.startswith(f"{s3_endpoint}/{BUCKET}/") and "Signature" in location
            onnx_bytes = httpx.get(location).content  # no API key: the URL itself grants access
            assert hashlib.sha256(onnx_bytes).hexdigest() == artifacts["model.onnx"]["sha256"]

        keys = s3_server.keys(BUCKET)
        assert any(k.endswith("/m.pt2") for k in keys)
        assert any(k.endswith(f"/jobs/{job['id']}/attempt-1/model.onnx") for k in keys)
        assert not any(Path(k).name == "m.pt2" for k in tmp_path.rglob("*") if k.is_file())
    finally:
        server.stop()


@pytest.mark.slow
def test_a_job_whose_artifact_write_s3_refuses_finishes_on_attempt_2_with_one_set(
    s3_server: MotoServer, faulty_s3: FaultyS3, tmp_path: Path, digits_model_pt2: bytes,
    digits_npz: bytes,
) -> None:  # fmt: skip
    faulty_s3.fail("PUT", "/attempt-1/model.pt2", "error")  # after metrics.json, model.onnx
    server = _server(
        tmp_path, faulty_s3.url, S3_READ_TIMEOUT_SECONDS="2", SWEEP_INTERVAL_SECONDS="1"
    )
    try:
        with _api(server, tmp_path) as api:
            job_id = _run_job(api, digits_model_pt2, digits_npz)
            job = api.get(f"/v1/jobs/{job_id}").json()
            events = api.get(f"/v1/jobs/{job_id}/events", params={"limit": 1000}).json()["data"]
            names = sorted(a["name"] for a in api.get(f"/v1/jobs/{job_id}/artifacts").json())
    finally:
        server.stop()
    assert faulty_s3.met  # the fault was met, by attempt 1 only
    assert (job["status"], job["attempts"]) == ("succeeded", 2)
    statuses = [e["data"] for e in events if e["type"] == "status"]
    assert {"status": "queued", "reason": "the storage was unavailable; retrying"} in statuses
    assert [s["status"] for s in statuses].count("running") == 2
    assert "model.pt2" in names and "report.html" in names
    job_keys = [k for k in s3_server.keys(BUCKET, "projects/") if f"/jobs/{job_id}/" in k]
    assert [k.split(f"/jobs/{job_id}/")[1] for k in job_keys] == [f"attempt-2/{n}" for n in names]

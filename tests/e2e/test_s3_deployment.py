"""The real server on S3 storage (moto's server over HTTP): uploads land in the bucket and
artifact downloads redirect to short-lived presigned URLs."""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx
import pytest
from moto.server import ThreadedMotoServer

from tests.e2e.server import EmbeddedServer

S3_ENV = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def s3_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    for name, value in S3_ENV.items():
        monkeypatch.setenv(name, value)
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


def test_jobs_run_on_s3_and_downloads_are_presigned(
    s3_endpoint: str, tmp_path: Path, digits_model_pt2: bytes, digits_npz: bytes
) -> None:
    env = {
        "STORAGE_BACKEND": "s3",
        "S3_ENDPOINT_URL": s3_endpoint,
        "S3_BUCKET": "e2e-bucket",
        "S3_ACCESS_KEY_ID": "test",
        "S3_SECRET_ACCESS_KEY": "test",
    }
    server = EmbeddedServer(tmp_path, _free_port(), env)
    try:
        key = (tmp_path / "data" / "api-key").read_text().strip()
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}) as api:
            assert api.get("/readyz").json()["checks"]["storage"] is True
            model = api.post("/v1/models", files={"file": ("m.pt2", digits_model_pt2)}).json()
            data = api.post("/v1/datasets", files={"file": ("d.npz", digits_npz)}).json()
            body = {
                "model_id": model["id"], "dataset_id": data["id"],
                "steps": [{"type": "prune_filters", "ratio": 0.3}],
                "evaluation": {"latency_repeats": 3}, "attribution": {"samples": 128},
            }  # fmt: skip
            job = api.post("/v1/jobs", json=body).json()
            with api.stream(
                "GET", f"/v1/jobs/{job['id']}/events", headers={"Accept": "text/event-stream"},
                timeout=300,
            ) as stream:  # fmt: skip
                feed = "".join(stream.iter_text())
            assert "event: status" in feed and '"status":"succeeded"' in feed

            artifacts = {a["name"]: a for a in api.get(f"/v1/jobs/{job['id']}/artifacts").json()}
            redirect = api.get(artifacts["model.onnx"]["download_url"])
            assert redirect.status_code == 307
            location = redirect.headers["location"]
            assert location.startswith(f"{s3_endpoint}/e2e-bucket/") and "Signature" in location
            onnx_bytes = httpx.get(location).content  # no API key: the URL itself grants access
            assert hashlib.sha256(onnx_bytes).hexdigest() == artifacts["model.onnx"]["sha256"]

        bucket = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
        keys = [o["Key"] for o in bucket.list_objects_v2(Bucket="e2e-bucket")["Contents"]]
        assert any(k.endswith("/m.pt2") for k in keys)
        assert any(k.endswith(f"/jobs/{job['id']}/attempt-1/model.onnx") for k in keys)
        assert not any(Path(k).name == "m.pt2" for k in tmp_path.rglob("*") if k.is_file())
    finally:
        server.stop()

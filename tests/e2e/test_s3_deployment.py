"""The real server on S3 storage (moto's server over HTTP): uploads land in the bucket and
artifact downloads redirect to short-lived presigned URLs."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx

from tests.e2e.server import EmbeddedServer
from tests.s3_faults import MotoServer, free_port


def test_jobs_run_on_s3_and_downloads_are_presigned(
    s3_server: MotoServer, tmp_path: Path, digits_model_pt2: bytes, digits_npz: bytes
) -> None:
    s3_endpoint = s3_server.url
    env = {
        "STORAGE_BACKEND": "s3",
        "S3_ENDPOINT_URL": s3_endpoint,
        "S3_BUCKET": "e2e-bucket",
        "S3_ACCESS_KEY_ID": "test",
        "S3_SECRET_ACCESS_KEY": "test",
    }
    server = EmbeddedServer(tmp_path, free_port(), env)
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

        keys = s3_server.keys("e2e-bucket")
        assert any(k.endswith("/m.pt2") for k in keys)
        assert any(k.endswith(f"/jobs/{job['id']}/attempt-1/model.onnx") for k in keys)
        assert not any(Path(k).name == "m.pt2" for k in tmp_path.rglob("*") if k.is_file())
    finally:
        server.stop()

"""GET /v1/jobs/{id}/report: the worker's report.html, served to its project only, under a
policy that lets it load nothing; its numbers are the job's metrics from the API."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.api.helpers import assert_problem, wait_for
from tests.report_checks import assert_numbers_match, assert_offline, parse

STEPS = [
    {"type": "prune_filters", "ratio": 0.5},
    {"type": "quantize_mixed", "average_bits": 4, "candidate_bits": [4], "layers": ["conv2"]},
]


def test_a_finished_job_serves_its_report_to_its_project_only(
    client: TestClient, uploaded: dict[str, str], other_key: str
) -> None:
    body = {**uploaded, "steps": STEPS, "attribution": {"samples": 128},
            "evaluation": {"latency_repeats": 3}}  # fmt: skip
    job_id = client.post("/v1/jobs", json=body).json()["id"]
    early = client.get(f"/v1/jobs/{job_id}/report")
    if client.get(f"/v1/jobs/{job_id}").json()["status"] in {"queued", "running"}:
        assert_problem(early, 409, "report_not_ready")
    done = wait_for(client, f"/v1/jobs/{job_id}", {"succeeded", "failed"})
    assert done["status"] == "succeeded", done["error"]

    response = client.get(f"/v1/jobs/{job_id}/report")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    policy = response.headers["content-security-policy"]
    assert policy.startswith("default-src 'none'; img-src data:;")
    html = response.text
    assert len(assert_offline(html)) == 3  # sizes, layers, relevance grid (no sweep)
    page = parse(html)
    assert assert_numbers_match(page.numbers, done["metrics"]) >= 40
    shown = {path for path, _, _ in page.numbers}
    assert {"export.onnx.bytes.model.onnx", "onnxruntime_latency.after.median_ms"} <= shown
    assert f"Compression report: {job_id}" in html
    assert "What the model looks at" in html and "not available" not in html

    artifacts = {a["name"]: a for a in client.get(f"/v1/jobs/{job_id}/artifacts").json()}
    assert artifacts["report.html"]["size_bytes"] == len(response.content)
    assert client.get(artifacts["report.html"]["download_url"]).content == response.content

    stranger = {"Authorization": f"Bearer {other_key}"}
    foreign = client.get(f"/v1/jobs/{job_id}/report", headers=stranger)
    missing = client.get("/v1/jobs/job_doesnotexist/report", headers=stranger)
    assert_problem(foreign, 404, "not_found")
    assert foreign.json()["detail"] == missing.json()["detail"].replace("job_doesnotexist", job_id)
    nobody = {"Authorization": "Bearer not-a-key"}
    assert_problem(client.get(f"/v1/jobs/{job_id}/report", headers=nobody), 401, "unauthorized")


def test_a_job_that_ended_without_a_report_answers_404(
    client: TestClient, uploaded: dict[str, str]
) -> None:
    job_id = client.post("/v1/jobs", json={**uploaded, "steps": STEPS}).json()["id"]
    client.post(f"/v1/jobs/{job_id}/cancel")
    done = wait_for(client, f"/v1/jobs/{job_id}", {"succeeded", "cancelled"})
    assert done["status"] == "cancelled"
    problem = assert_problem(client.get(f"/v1/jobs/{job_id}/report"), 404, "not_found")
    assert problem["title"] == "report not found"

"""The /ui dashboard: pages that carry no project data (the script reads /v1 with the key
from the browser session), a strict policy on what they may load, and forms built from the
job spec itself."""

from __future__ import annotations

from fastapi.testclient import TestClient

from jobspec import FineTune, PruneFilters, ShareWeights
from tests.api.helpers import assert_problem

PAGES = ["/ui/signin", "/ui/jobs", "/ui/new", "/ui/jobs/job_abc123"]


def test_pages_are_shells_under_a_strict_policy(app_client: TestClient) -> None:
    assert app_client.get("/ui", follow_redirects=False).headers["location"] == "/ui/jobs"
    for path in PAGES:
        response = app_client.get(path)
        assert response.status_code == 200, path
        assert response.headers["content-type"].startswith("text/html")
        policy = response.headers["content-security-policy"]
        assert "script-src 'self';" in policy and "frame-ancestors 'none'" in policy
        assert response.headers["cache-control"] == "no-store"
        assert '<script src="/ui/static/dashboard.js" defer></script>' in response.text
        assert "<script>" not in response.text  # no inline script: the policy forbids it
    script = app_client.get("/ui/static/dashboard.js")
    assert script.status_code == 200 and "sessionStorage" in script.text
    assert "localStorage" not in script.text and "document.cookie" not in script.text
    assert app_client.get("/ui/static/dashboard.css").status_code == 200
    assert "/ui" not in str(app_client.get("/openapi.json").json()["paths"])


def test_a_job_page_reveals_nothing_about_whether_the_job_exists(
    client: TestClient, uploaded: dict[str, str], other_key: str
) -> None:
    body = {**uploaded, "steps": [{"type": "prune_filters", "ratio": 0.5}]}
    job_id = client.post("/v1/jobs", json=body).json()["id"]
    client.post(f"/v1/jobs/{job_id}/cancel")
    stranger = {"Authorization": f"Bearer {other_key}"}
    mine = client.get(f"/ui/jobs/{job_id}").text
    theirs = client.get(f"/ui/jobs/{job_id}", headers=stranger).text
    unknown = client.get("/ui/jobs/job_unknown1").text
    assert mine == theirs == unknown.replace("job_unknown1", job_id)
    for secret in (uploaded["model_id"], uploaded["dataset_id"], 'prune_filters"'):
        assert secret not in mine
    # what the page's script asks for, with the other project's key
    assert job_id not in client.get("/v1/jobs", headers=stranger).text
    assert_problem(client.get(f"/v1/jobs/{job_id}", headers=stranger), 404, "not_found")
    assert_problem(client.get(f"/v1/jobs/{job_id}/events", headers=stranger), 404, "not_found")


def test_odd_job_ids_are_refused_before_any_page_is_built(app_client: TestClient) -> None:
    for path in ("/ui/jobs/job_<script>", "/ui/jobs/mdl_abc", "/ui/jobs/job_" + "a" * 65):
        assert_problem(app_client.get(path), 422, "validation_error")  # JSON, never a page


def test_the_job_form_offers_the_spec_own_steps_defaults_and_criteria(
    app_client: TestClient,
) -> None:
    page = app_client.get("/ui/new").text
    for step, field in ((PruneFilters, "ratio"), (ShareWeights, "clusters"), (FineTune, "epochs")):
        kind = step.model_fields["type"].default
        default = step.model_fields[field].default
        assert f'id="{kind}-{field}"' in page and f'value="{default}"' in page
        assert f'data-error-for="{kind}.{field}"' in page
    for criterion in ("deeplift", "auto", "l1", "taylor", "random"):
        assert f'<option value="{criterion}"' in page
    assert '<option value="deeplift" selected>' in page
    for slot in ("model_id", "dataset_id", "criterion", "file"):
        assert f'data-error-for="{slot}"' in page

"""Health, readiness, Prometheus metrics, the OpenAPI contract, and no torch in the API."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from fastapi.testclient import TestClient

from api.main import create_app
from core.settings import Settings
from tests.api.helpers import assert_problem
from worker.in_process import InProcessDispatcher


def test_health_and_readiness(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": True, "broker": True, "storage": True}


def test_readiness_names_what_is_down(settings: Settings, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    broken = settings.model_copy(update={"storage_path": blocker / "objects"})
    dispatcher = InProcessDispatcher(None)  # type: ignore[arg-type] - never started
    with TestClient(create_app(broken, dispatcher)) as client:
        body = assert_problem(client.get("/readyz"), 503, "not_ready")
    assert body["checks"] == {"database": True, "broker": False, "storage": False}


def test_prometheus_metrics_answer_only_to_their_token(
    settings: Settings, dispatcher: InProcessDispatcher
) -> None:
    guarded = settings.model_copy(update={"metrics_token": "scrape-secret"})
    with TestClient(create_app(guarded, dispatcher)) as client:
        client.get("/v1/models")
        assert_problem(client.get("/metrics"), 401, "unauthorized")
        wrong = {"Authorization": "Bearer not-the-token"}
        assert_problem(client.get("/metrics", headers=wrong), 401, "unauthorized")
        text = client.get("/metrics", headers={"Authorization": "Bearer scrape-secret"}).text
    assert 'xai_jobs{state="queued"} 0.0' in text
    assert 'xai_request_seconds_count{method="GET",route="/v1/models",status="401"} 1.0' in text
    assert "xai_queue_depth 0.0" in text


def test_metrics_do_not_exist_without_a_token(client: TestClient) -> None:
    """A project key does not open them either: they count every project's jobs."""
    assert_problem(client.get("/metrics"), 404, "not_found")


def test_openapi_has_stable_unique_operation_ids(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    operations = {
        operation["operationId"] for path in schema["paths"].values() for operation in path.values()
    }
    assert {
        "createModel", "listModels", "getModel", "deleteModel",
        "createDataset", "listDatasets", "getDataset", "deleteDataset",
        "createJob", "listJobs", "getJob", "cancelJob", "listJobEvents",
        "listJobArtifacts", "downloadJobArtifact", "healthz", "readyz",
    } <= operations  # fmt: skip
    job_schema = schema["components"]["schemas"]["JobCreate"]
    assert {"model_id", "dataset_id", "steps"} <= set(job_schema["required"])


def test_the_api_process_never_imports_torch(settings: Settings) -> None:
    script = (
        "import sys\n"
        "from api.main import create_app\n"
        "from core.settings import Settings\n"
        "from core.dispatch import CeleryDispatcher\n"
        f"app = create_app(Settings(database_url={settings.resolved_database_url!r}, "
        "redis_url='redis://127.0.0.1:6379/15'))\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "assert not any(m.split('.')[0] in ('compression', 'worker') for m in sys.modules)\n"
        "print('clean')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert result.stdout.strip() == "clean", result.stderr

"""A job logs to an MLflow server the operator configured, named by the job; never to a URI
or a path the tenant chooses, and MLflow's error text never reaches the tenant."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from mlflow.tracking import MlflowClient

from core.settings import MlflowServer, Settings
from tests.api.helpers import assert_problem, settle, upload, wait_for
from worker.in_process import InProcessDispatcher


@pytest.fixture
def mlflow_root(tmp_path: Path) -> Path:
    return tmp_path / "mlflow"


@pytest.fixture
def settings(settings: Settings, mlflow_root: Path) -> Settings:
    mlflow_root.mkdir()
    unwritable = mlflow_root / "not-a-folder"
    unwritable.write_text("a file where the server's database folder should be")
    return settings.model_copy(
        update={
            "mlflow_targets": {
                "team": MlflowServer(
                    tracking_uri=f"sqlite:///{mlflow_root / 'mlflow.db'}",
                    artifact_location=str(mlflow_root / "artifacts"),
                ),
                "broken": MlflowServer(tracking_uri=f"sqlite:///{unwritable / 'mlflow.db'}"),
            }
        }
    )


def _body(client: TestClient, dispatcher: InProcessDispatcher, pt2: bytes, npz: bytes) -> Any:
    model = upload(client, "models", pt2, "digits.pt2")
    dataset = upload(client, "datasets", npz, "digits.npz")
    settle(client, dispatcher)
    return {
        "model_id": model["id"],
        "dataset_id": dataset["id"],
        "steps": [{"type": "prune_filters", "ratio": 0.5}],
        "attribution": {"samples": 128},
        "evaluation": {"latency_repeats": 3},
    }


def test_a_job_logs_and_registers_its_model_in_a_configured_target(
    client: TestClient,
    dispatcher: InProcessDispatcher,
    digits_model_pt2: bytes,
    digits_npz: bytes,
    mlflow_root: Path,
) -> None:
    body = _body(client, dispatcher, digits_model_pt2, digits_npz)
    body["mlflow"] = {"target": "team", "experiment": "digits", "register_as": "digits-cnn-pruned"}
    job = client.post("/v1/jobs", json=body).json()
    done = wait_for(client, f"/v1/jobs/{job['id']}", {"succeeded", "failed"})
    assert done["status"] == "succeeded", done["error"]
    logged = done["metrics"]["mlflow"]
    assert "error" not in logged, logged

    mlflow = MlflowClient(tracking_uri=f"sqlite:///{mlflow_root / 'mlflow.db'}")
    run = mlflow.get_run(logged["run_id"])
    assert run.info.run_name == job["id"]
    assert run.info.artifact_uri.startswith(str(mlflow_root / "artifacts"))
    assert run.data.metrics["after.accuracy"] == done["metrics"]["after"]["accuracy"]
    assert run.data.metrics["before.parameters"] == done["metrics"]["before"]["parameters"]
    assert run.data.params["step0.prune_filters.ratio"] == "0.5"
    files = sorted(a.path for a in mlflow.list_artifacts(run.info.run_id, "model"))
    assert files == ["model/metrics.json", "model/model.onnx", "model/model.xaic"]
    assert logged["registered"] == {"name": "digits-cnn-pruned", "version": 1}
    version = mlflow.get_model_version("digits-cnn-pruned", "1")
    assert version.run_id == run.info.run_id


@pytest.mark.parametrize(
    ("mlflow", "status", "code"),
    [
        ({"target": "elsewhere"}, 422, "unknown_mlflow_target"),
        ({"target": "team", "tracking_uri": "sqlite:////tmp/x.db"}, 422, "validation_error"),
        ({"target": "team", "artifact_location": "file:///etc"}, 422, "validation_error"),
        ({"tracking_uri": "http://127.0.0.1:5432"}, 422, "validation_error"),
        ({"target": "team", "experiment": "x' OR name LIKE '%"}, 422, "validation_error"),
        ({"target": "team", "register_as": "../../models"}, 422, "validation_error"),
    ],
)
def test_a_job_can_only_name_a_configured_target(
    client: TestClient,
    uploaded: dict[str, str],
    mlflow_root: Path,
    mlflow: dict[str, str],
    status: int,
    code: str,
) -> None:
    body = {**uploaded, "steps": [{"type": "prune_filters"}], "mlflow": mlflow}
    assert_problem(client.post("/v1/jobs", json=body), status, code)
    assert client.get("/v1/jobs").json()["data"] == []
    assert sorted(path.name for path in mlflow_root.iterdir()) == ["not-a-folder"]


def test_mlflow_errors_reach_the_tenant_as_a_code_without_internals(
    client: TestClient, dispatcher: InProcessDispatcher, digits_model_pt2: bytes, digits_npz: bytes
) -> None:
    body = _body(client, dispatcher, digits_model_pt2, digits_npz)
    body["mlflow"] = {"target": "broken"}
    job = client.post("/v1/jobs", json=body).json()
    done = wait_for(client, f"/v1/jobs/{job['id']}", {"succeeded", "failed"})
    assert done["status"] == "succeeded", done["error"]
    assert done["metrics"]["mlflow"] == {
        "error": "MLflow target 'broken' could not be reached or failed; the worker log has "
        "details.",
        "error_code": "mlflow_unavailable",
    }

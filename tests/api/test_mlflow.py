"""A job that names an MLflow tracking server logs its parameters, metrics and model there."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from mlflow.tracking import MlflowClient

from tests.api.helpers import settle, upload, wait_for
from worker.in_process import InProcessDispatcher


def test_a_job_logs_and_registers_its_model_in_mlflow(
    client: TestClient,
    dispatcher: InProcessDispatcher,
    digits_model_pt2: bytes,
    digits_npz: bytes,
    tmp_path: Path,
) -> None:
    model = upload(client, "models", digits_model_pt2, "digits.pt2")
    dataset = upload(client, "datasets", digits_npz, "digits.npz")
    settle(client, dispatcher)
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    body = {
        "model_id": model["id"],
        "dataset_id": dataset["id"],
        "steps": [{"type": "prune_filters", "ratio": 0.5}],
        "attribution": {"samples": 128},
        "evaluation": {"latency_repeats": 3},
        "mlflow": {
            "tracking_uri": tracking,
            "experiment": "digits",
            "artifact_location": str(tmp_path / "artifacts"),
            "register_as": "digits-cnn-pruned",
        },
    }
    job = client.post("/v1/jobs", json=body).json()
    done = wait_for(client, f"/v1/jobs/{job['id']}", {"succeeded", "failed"})
    assert done["status"] == "succeeded", done["error"]
    logged = done["metrics"]["mlflow"]
    assert "error" not in logged, logged

    mlflow = MlflowClient(tracking_uri=tracking)
    run = mlflow.get_run(logged["run_id"])
    assert run.info.run_name == job["id"]
    assert run.data.metrics["after.accuracy"] == done["metrics"]["after"]["accuracy"]
    assert run.data.metrics["before.parameters"] == done["metrics"]["before"]["parameters"]
    assert run.data.params["step0.prune_filters.ratio"] == "0.5"
    files = sorted(a.path for a in mlflow.list_artifacts(run.info.run_id, "model"))
    assert files == ["model/metrics.json", "model/model.onnx", "model/model.xaic"]
    assert logged["registered"] == {"name": "digits-cnn-pruned", "version": 1}
    version = mlflow.get_model_version("digits-cnn-pruned", "1")
    assert version.run_id == run.info.run_id

"""Log a finished job to MLflow (optional extra ``mlflow``): parameters, metrics, the
compressed model files, and, when asked, a registered model version.

MLflow is a convenience beside the job, not part of it: when it is not installed or the
tracking server refuses, the job still succeeds and its metrics say why nothing was logged.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

log = logging.getLogger("worker.mlflow")
LOGGED_FILES = ("model.onnx", "model.xaic", "metrics.json")


def _params(job_id: str, spec: dict[str, Any]) -> dict[str, str]:
    params = {"job_id": job_id, "criterion": str(spec.get("criterion"))}
    for index, step in enumerate(spec.get("steps", [])):
        for key, value in step.items():
            if value not in (None, [], {}) and key != "type":
                params[f"step{index}.{step['type']}.{key}"] = str(value)[:250]
    return params


def _metrics(metrics: dict[str, Any]) -> dict[str, float]:
    flat = {}
    for section in ("before", "after", "reduction"):
        for key, value in (metrics.get(section) or {}).items():
            if isinstance(value, int | float) and value is not None:
                flat[f"{section}.{key}"] = float(value)
    completeness = (metrics.get("attribution") or {}).get("completeness_error")
    if completeness is not None:
        flat["attribution.completeness_error"] = float(completeness)
    return flat


def log_job(
    target: dict[str, Any], job_id: str, spec: dict[str, Any], metrics: dict[str, Any], out: Path
) -> dict[str, Any]:
    """Log to MLflow; return what to record in the job's metrics (run id or the error)."""
    try:
        import mlflow
        from mlflow.tracking import MlflowClient
    except ImportError:
        return {
            "error": "mlflow is not installed on the worker (pip install 'xai-compress[mlflow]')"
        }
    try:
        mlflow.set_tracking_uri(target["tracking_uri"])
        client = MlflowClient()
        experiment = client.get_experiment_by_name(target["experiment"])
        experiment_id = (
            experiment.experiment_id
            if experiment is not None
            else client.create_experiment(
                target["experiment"], artifact_location=target.get("artifact_location")
            )
        )
        with mlflow.start_run(experiment_id=experiment_id, run_name=job_id) as run:
            mlflow.log_params(_params(job_id, spec))
            mlflow.log_metrics(_metrics(metrics))
            for name in LOGGED_FILES:
                mlflow.log_artifact(str(out / name), artifact_path="model")
            model_uri = mlflow.get_artifact_uri("model")
        result: dict[str, Any] = {"run_id": run.info.run_id, "experiment_id": experiment_id}
        if target.get("register_as"):
            name = target["register_as"]
            if not client.search_registered_models(filter_string=f"name = '{name}'"):
                client.create_registered_model(name)
            version = client.create_model_version(name, source=model_uri, run_id=run.info.run_id)
            result["registered"] = {"name": name, "version": int(version.version)}
        return result
    except Exception as exc:
        log.exception("MLflow logging failed for %s", job_id)
        return {"error": f"{type(exc).__name__}: {exc}"[:500]}

"""Log a finished job to MLflow (optional extra ``mlflow``): parameters, metrics, the
compressed model files, and, when asked, a registered model version.

MLflow is a convenience beside the job, not part of it: when it is not installed or the
tracking server refuses, the job still succeeds and its metrics say why nothing was logged.

The server is one the operator configured (``MLFLOW_TARGETS``); the job only names it, so a
tenant can never point the worker at a URI or a path of their choosing. What went wrong is
told to the tenant as a stable code and a fixed sentence; MLflow's own error text (which can
name hosts, paths and internals) goes to the worker log only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from core.settings import MlflowServer

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


def _failure(code: str, message: str) -> dict[str, Any]:
    return {"error": message, "error_code": code}


def log_job(
    servers: Mapping[str, MlflowServer],
    target: dict[str, Any],
    job_id: str,
    spec: dict[str, Any],
    metrics: dict[str, Any],
    out: Path,
) -> dict[str, Any]:
    """Log to the server ``target`` names; return what to record in the job's metrics (run
    id, or a code and a sentence that leak nothing of the server)."""
    name = target.get("target", "")
    server = servers.get(name)
    if server is None:
        return _failure(
            "unknown_mlflow_target", f"The operator no longer configures MLflow target {name!r}."
        )
    try:
        from mlflow.entities import Metric, Param, RunStatus
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient
    except ImportError:
        return _failure("mlflow_not_installed", "mlflow is not installed on the worker.")
    try:  # the client only: no process-wide tracking URI or active run is set
        client = MlflowClient(tracking_uri=server.tracking_uri)
        experiment = client.get_experiment_by_name(target["experiment"])
        experiment_id = (
            experiment.experiment_id
            if experiment is not None
            else client.create_experiment(
                target["experiment"], artifact_location=server.artifact_location
            )
        )
        run = client.create_run(experiment_id, run_name=job_id)
        run_id, now = run.info.run_id, int(time.time() * 1000)
        client.log_batch(
            run_id,
            metrics=[Metric(key, value, now, 0) for key, value in _metrics(metrics).items()],
            params=[Param(key, value) for key, value in _params(job_id, spec).items()],
        )
        for file in LOGGED_FILES:
            client.log_artifact(run_id, str(out / file), artifact_path="model")
        client.set_terminated(run_id, RunStatus.to_string(RunStatus.FINISHED))
        result: dict[str, Any] = {"run_id": run_id, "experiment_id": experiment_id}
        if target.get("register_as"):
            model = target["register_as"]
            _ensure_registered_model(client, model, MlflowException)
            source = f"{run.info.artifact_uri}/model"
            version = client.create_model_version(model, source=source, run_id=run_id)
            result["registered"] = {"name": model, "version": int(version.version)}
        return result
    except MlflowException as exc:
        log.exception("MLflow target %r refused job %s", name, job_id)
        reason = exc.error_code if exc.error_code in SAYABLE_ERROR_CODES else "an error"
        return _failure(
            "mlflow_refused",
            f"MLflow target {name!r} refused the run ({reason}); the worker log has details.",
        )
    except Exception:
        log.exception("MLflow logging to %r failed for %s", name, job_id)
        return _failure(
            "mlflow_unavailable",
            f"MLflow target {name!r} could not be reached or failed; the worker log has details.",
        )


SAYABLE_ERROR_CODES = frozenset(
    {
        "RESOURCE_ALREADY_EXISTS", "RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE",
        "PERMISSION_DENIED", "UNAUTHENTICATED", "RESOURCE_EXHAUSTED", "INVALID_STATE",
    }
)  # fmt: skip
"""MLflow's own error codes are a fixed vocabulary that names no host or path."""


def _ensure_registered_model(client: Any, model: str, error: type[Exception]) -> None:
    """Looked up by name (no filter string is built from user text), created if absent."""
    try:
        client.get_registered_model(model)
    except error as exc:
        if getattr(exc, "error_code", "") != "RESOURCE_DOES_NOT_EXIST":
            raise
        client.create_registered_model(model)

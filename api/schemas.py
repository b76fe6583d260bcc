"""Request and response bodies of the public API (what OpenAPI documents)."""

from __future__ import annotations

import math
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.job_view import ErrorInfo, Timestamp, error_info
from core.tables import (
    Artifact,
    DatasetRecord,
    JobEvent,
    ModelRecord,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)
from jobspec import Spec

T = TypeVar("T")


class ProblemOut(BaseModel):
    """RFC 9457 problem details; ``code`` is stable and meant for programs to branch on."""

    type: str
    title: str
    status: int
    code: str = Field(examples=["not_found"])
    detail: str
    instance: str
    errors: list[dict[str, Any]] | None = Field(
        None, description="Field errors, for validation_error."
    )


PROBLEM_TEXTS = {
    400: "Malformed request: `invalid_cursor` (an `after` that is no item of this list), "
    "`invalid_multipart` (a garbled or cut-off multipart body, oversized part headers, two "
    "`file` parts, too many or too large form fields), `bad_request` (a body that cannot be "
    "parsed).",
    401: "Missing or invalid API key (`unauthorized`).",
    404: "No such object in this project (`not_found`).",
    409: "Conflict (`idempotency_key_reused`, `model_in_use`, `model_invalid`, ...).",
    413: "The body is larger than its limit (`payload_too_large`): `MAX_MODEL_BYTES` and "
    "`MAX_DATASET_BYTES` for uploads, `MAX_REQUEST_BODY_BYTES` for JSON bodies.",
    415: "Uploads must be sent as `multipart/form-data` (`unsupported_media_type`).",
    422: "The request is invalid (`validation_error`, `invalid_filename`, "
    "`unknown_mlflow_target`), with field errors.",
}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the problem+json answers a route can give."""
    return {
        status: {
            "model": ProblemOut,
            "content": {
                "application/problem+json": {"schema": {"$ref": "#/components/schemas/ProblemOut"}}
            },
            "description": PROBLEM_TEXTS[status],
        }
        for status in statuses
    }


PROBLEM_RESPONSES = problem_responses(400, 401, 404, 409, 413, 422)
"""What every /v1 route may answer besides its success."""


class Page(BaseModel, Generic[T]):
    """A page of a cursor-paged list: pass ``next_cursor`` as ``after`` for the next page."""

    data: list[T]
    has_more: bool
    next_cursor: str | None


class UploadOut(BaseModel):
    id: str
    name: str
    filename: str
    size_bytes: int
    sha256: str
    status: Literal["pending", "ready", "invalid"]
    error: ErrorInfo | None
    format: str | None
    created_at: Timestamp


class ModelOut(UploadOut):
    object: Literal["model"] = "model"
    architecture: str | None
    architecture_args: dict[str, Any] | None
    input_shape: list[int] | None
    num_classes: int | None
    parameters: int | None
    macs: int | None


class DatasetOut(UploadOut):
    object: Literal["dataset"] = "dataset"
    samples: int | None
    num_classes: int | None
    sample_shape: list[int] | None = Field(
        description="Shape of one sample; null for image archives (resized to the model's input)."
    )
    classes: list[str] | None


MLFLOW_NAME = r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,127}$"


class MlflowTarget(BaseModel):
    """Log the job's parameters, metrics and compressed model to one of the MLflow servers the
    operator configured (``MLFLOW_TARGETS``), by name: a job never gives a URI or a path."""

    model_config = ConfigDict(extra="forbid")

    target: str = Field(max_length=64, description="The name of an operator-configured server.")
    experiment: str = Field("xai-compress", pattern=MLFLOW_NAME)
    register_as: str | None = Field(
        None, pattern=MLFLOW_NAME, description="Register the compressed ONNX model under this name."
    )


class JobCreate(Spec):
    """The engine's Spec plus what to compress."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "model_id": "mdl_abc",
                    "dataset_id": "ds_abc",
                    "steps": [
                        {"type": "prune_filters", "ratio": 0.5},
                        {"type": "prune_weights", "sparsity": 0.9, "layers": ["fc1"]},
                    ],
                    "criterion": "deeplift",
                }
            ]
        },
    )

    model_id: str = Field(max_length=32)
    dataset_id: str = Field(max_length=32)
    eval_dataset_id: str | None = Field(None, max_length=32)
    metadata: dict[str, Any] = Field(default_factory=dict)
    mlflow: MlflowTarget | None = None

    @field_validator("metadata")
    @classmethod
    def _finite(cls, metadata: dict[str, Any]) -> dict[str, Any]:
        """JSON has no NaN or Infinity; a database that stores the body refuses them."""
        stack: list[Any] = [metadata]
        while stack:
            value = stack.pop()
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError("metadata holds NaN or Infinity, which JSON cannot carry")
            if isinstance(value, dict):
                stack.extend(value.values())
            elif isinstance(value, list):
                stack.extend(value)
        return metadata


WebhookEvent = Literal["job.succeeded", "job.failed", "job.cancelled"]


class WebhookCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=2000, examples=["https://example.com/hooks/xai"])
    events: list[WebhookEvent] = Field(
        default_factory=lambda: ["job.succeeded", "job.failed", "job.cancelled"]
    )
    description: str = Field("", max_length=500)


class WebhookOut(BaseModel):
    object: Literal["webhook"] = "webhook"
    id: str
    url: str
    events: list[str]
    description: str
    secret: str | None = Field(
        None, description="The signing secret (whsec_...); returned only when created."
    )
    created_at: Timestamp


class AttemptOut(BaseModel):
    attempt: int
    status_code: int | None
    error: str | None
    duration_ms: float
    created_at: Timestamp


class DeliveryOut(BaseModel):
    id: str
    event: str
    job_id: str
    status: Literal["pending", "succeeded", "failed"]
    attempts: list[AttemptOut]
    next_attempt_at: Timestamp | None
    created_at: Timestamp


class EventOut(BaseModel):
    seq: int
    type: str
    data: dict[str, Any]
    created_at: Timestamp


class ArtifactOut(BaseModel):
    name: str
    content_type: str
    size_bytes: int
    sha256: str
    download_url: str
    created_at: Timestamp


def _upload_fields(record: ModelRecord | DatasetRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "name": record.name,
        "filename": record.filename,
        "size_bytes": record.size_bytes,
        "sha256": record.sha256,
        "status": record.status,
        "error": error_info(record.error_code, record.error_message),
        "format": record.format,
        "created_at": record.created_at,
    }


def model_out(record: ModelRecord) -> ModelOut:
    return ModelOut(
        **_upload_fields(record),
        architecture=record.architecture,
        architecture_args=record.architecture_args,
        input_shape=record.input_shape,
        num_classes=record.num_classes,
        parameters=record.parameters,
        macs=record.macs,
    )


def dataset_out(record: DatasetRecord) -> DatasetOut:
    return DatasetOut(
        **_upload_fields(record),
        samples=record.samples,
        num_classes=record.num_classes,
        sample_shape=record.sample_shape,
        classes=record.classes,
    )


def event_out(event: JobEvent) -> EventOut:
    return EventOut(seq=event.seq, type=event.type, data=event.data, created_at=event.created_at)


def artifact_out(artifact: Artifact) -> ArtifactOut:
    return ArtifactOut(
        name=artifact.name,
        content_type=artifact.content_type,
        size_bytes=artifact.size_bytes,
        sha256=artifact.sha256,
        download_url=f"/v1/jobs/{artifact.job_id}/artifacts/{artifact.name}",
        created_at=artifact.created_at,
    )


def webhook_out(endpoint: WebhookEndpoint, show_secret: bool = False) -> WebhookOut:
    return WebhookOut(
        id=endpoint.id,
        url=endpoint.url,
        events=endpoint.events,
        description=endpoint.description,
        secret=endpoint.secret if show_secret else None,
        created_at=endpoint.created_at,
    )


def delivery_out(delivery: WebhookDelivery, attempts: list[WebhookAttempt]) -> DeliveryOut:
    return DeliveryOut(
        id=delivery.id,
        event=delivery.event,
        job_id=delivery.job_id,
        status=delivery.status,
        attempts=[
            AttemptOut(
                attempt=a.attempt, status_code=a.status_code, error=a.error,
                duration_ms=a.duration_ms, created_at=a.created_at,
            )
            for a in attempts
        ],
        next_attempt_at=delivery.next_attempt_at,
        created_at=delivery.created_at,
    )  # fmt: skip

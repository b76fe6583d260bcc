"""Request and response bodies of the public API (what OpenAPI documents)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from core.job_view import ErrorInfo, error_info
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


PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {
        "model": ProblemOut,
        "content": {
            "application/problem+json": {"schema": {"$ref": "#/components/schemas/ProblemOut"}}
        },
        "description": text,
    }
    for status, text in {
        401: "Missing or invalid API key (`unauthorized`).",
        404: "No such object in this project (`not_found`).",
        409: "Conflict (`idempotency_key_reused`, `model_in_use`, `model_invalid`, ...).",
        413: "Upload larger than the limit (`payload_too_large`).",
        422: "The request is invalid (`validation_error`), with field errors.",
    }.items()
}


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
    created_at: datetime


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


class MlflowTarget(BaseModel):
    """Log the job's parameters, metrics and compressed model to an MLflow tracking server."""

    model_config = ConfigDict(extra="forbid")

    tracking_uri: str = Field(description="e.g. http://mlflow:5000 or sqlite:///mlflow.db")
    experiment: str = "xai-compress"
    artifact_location: str | None = Field(
        None, description="Where a new experiment keeps artifacts (default: the server's)."
    )
    register_as: str | None = Field(
        None, description="Register the compressed ONNX model under this name."
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

    model_id: str
    dataset_id: str
    eval_dataset_id: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    mlflow: MlflowTarget | None = None


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
    created_at: datetime


class AttemptOut(BaseModel):
    attempt: int
    status_code: int | None
    error: str | None
    duration_ms: float
    created_at: datetime


class DeliveryOut(BaseModel):
    id: str
    event: str
    job_id: str
    status: Literal["pending", "succeeded", "failed"]
    attempts: list[AttemptOut]
    next_attempt_at: datetime | None
    created_at: datetime


class EventOut(BaseModel):
    seq: int
    type: str
    data: dict[str, Any]
    created_at: datetime


class ArtifactOut(BaseModel):
    name: str
    content_type: str
    size_bytes: int
    sha256: str
    download_url: str
    created_at: datetime


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

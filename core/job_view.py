"""How a job looks from outside: one rendering for API responses and webhook payloads.

The webhook outbox (core) and the HTTP layer (api) both need the public shape of a job; it
lives here so the core never imports the API's schemas and the two can never drift apart.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel

from core.tables import Job


def _as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


Timestamp = Annotated[datetime, AfterValidator(_as_utc)]
"""A moment as RFC 3339 in UTC with its offset (``2026-01-02T03:04:05.678901Z``); the database
keeps naive UTC, which a client could not tell from local time."""


class ErrorInfo(BaseModel):
    code: str
    message: str


class JobOut(BaseModel):
    object: Literal["job"] = "job"
    id: str
    status: Literal["queued", "running", "cancelling", "succeeded", "failed", "cancelled"]
    stage: str | None
    progress: float
    eta_seconds: float | None
    error: ErrorInfo | None
    metrics: dict[str, Any] | None
    model_id: str
    dataset_id: str
    eval_dataset_id: str | None
    spec: dict[str, Any]
    metadata: dict[str, Any]
    attempts: int
    created_at: Timestamp
    started_at: Timestamp | None
    finished_at: Timestamp | None


def error_info(code: str | None, message: str | None) -> ErrorInfo | None:
    return ErrorInfo(code=code, message=message or "") if code else None


def job_out(job: Job) -> JobOut:
    return JobOut(
        id=job.id,
        status=job.status,
        stage=job.stage,
        progress=job.progress,
        eta_seconds=job.eta_seconds,
        error=error_info(job.error_code, job.error_message),
        metrics=job.metrics,
        model_id=job.model_id,
        dataset_id=job.dataset_id,
        eval_dataset_id=job.eval_dataset_id,
        spec=job.spec,
        metadata=job.job_metadata,
        attempts=job.attempts,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
    )

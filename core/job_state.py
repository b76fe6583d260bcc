"""Job state transitions and the append-only event feed, shared by the API and the worker.

queued -> running -> succeeded | failed | cancelled, with cancelling in between when a
running job is asked to stop. Every transition appends a ``status`` event in the same
transaction, so the feed never disagrees with the row.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core import webhook_delivery
from core.job_notify import notify_job_event
from core.job_view import job_out
from core.tables import Job, JobEvent, utcnow

TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
ACTIVE = frozenset({"queued", "running", "cancelling"})


def append_event(session: Session, job: Job, kind: str, data: dict[str, Any]) -> JobEvent:
    last = session.scalar(select(func.max(JobEvent.seq)).where(JobEvent.job_id == job.id))
    event = JobEvent(job_id=job.id, seq=(last or 0) + 1, type=kind, data=data)
    session.add(event)
    session.flush()
    notify_job_event(session, job.id)  # followers of the feed wake at commit
    return event


def set_status(session: Session, job: Job, status: str, **data: Any) -> None:
    job.status = status
    now = utcnow()
    if status == "running" and job.started_at is None:
        job.started_at = now
    append_event(session, job, "status", {"status": status, **data})
    if status in TERMINAL:
        job.finished_at = now
        job.eta_seconds = None
        webhook_delivery.enqueue(session, job, job_out(job).model_dump(mode="json"))


def request_cancel(session: Session, job: Job) -> None:
    """Idempotent: a queued job is cancelled at once, a running one is asked to stop, a
    finished one stays as it is."""
    if job.status == "queued":
        set_status(session, job, "cancelled", reason="cancelled before it started")
    elif job.status == "running":
        set_status(session, job, "cancelling")


def fail(session: Session, job: Job, code: str, message: str) -> None:
    job.error_code, job.error_message = code, message
    set_status(session, job, "failed", error={"code": code, "message": message})

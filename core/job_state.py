"""Job state transitions and the append-only event feed, shared by the API and the worker.

queued -> running -> succeeded | failed | cancelled, with cancelling in between when a
running job is asked to stop. Every transition appends a ``status`` event in the same
transaction, so the feed never disagrees with the row.

A worker's attempt owns the job only while the row still names it: ``attempts`` is the
attempt's number and the job is running (or being cancelled). Every write of an attempt goes
through ``attempt_row``, which locks the row and checks that fence, so an attempt the reaper
gave up on (a frozen worker, a partitioned one) cannot overwrite what the next attempt did or
send a second terminal webhook.
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
MAX_ATTEMPTS = 3
"""Attempts a job gets (a dead worker, an unavailable dependency) before it is failed."""
OWNED = frozenset({"running", "cancelling"})
"""The states in which a job belongs to the attempt that claimed it."""


class AttemptSuperseded(Exception):
    """This attempt no longer owns its job: it was requeued, claimed again, or settled."""

    def __init__(self, job_id: str, attempt: int) -> None:
        super().__init__(f"attempt {attempt} of {job_id} no longer owns the job")
        self.job_id, self.attempt = job_id, attempt


def locked_job(session: Session, job_id: str) -> Job | None:
    """The job's row, locked, with its current values (Postgres ``FOR UPDATE``).

    ``populate_existing`` matters: without it a job the session already loaded keeps the values
    read before the lock, so a cancel could act on a ``queued`` that a worker has since claimed.
    """
    return session.get(Job, job_id, with_for_update=True, populate_existing=True)


def attempt_row(session: Session, job_id: str, attempt: int) -> Job:
    """The job's locked row, if ``attempt`` still owns it; else ``AttemptSuperseded``."""
    job = locked_job(session, job_id)
    if job is None or job.attempts != attempt or job.status not in OWNED:
        raise AttemptSuperseded(job_id, attempt)
    return job


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

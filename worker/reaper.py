"""Find jobs whose worker died and requeue them (or fail them after too many attempts).

A running job's heartbeat is refreshed every few seconds; when it is older than
``stale_job_seconds`` nobody is working on it. It is requeued until it has had
``MAX_ATTEMPTS`` tries, then failed with ``worker_lost``; a job that was being cancelled is
simply cancelled.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import or_, select

from core import outbox
from core.dispatch import RUN_JOB, Dispatcher
from core.job_state import MAX_ATTEMPTS, fail, set_status
from core.outbox import Due
from core.tables import Job, utcnow
from worker.resources import Resources


def reap(resources: Resources) -> list[str]:
    """Settle stale jobs; return the ids that must be queued again."""
    stale = utcnow() - timedelta(seconds=resources.settings.stale_job_seconds)
    requeue = []
    with resources.sessionmaker() as session, session.begin():
        jobs = session.scalars(
            select(Job)
            .where(
                Job.status.in_(("running", "cancelling")),
                or_(Job.heartbeat_at.is_(None), Job.heartbeat_at < stale),
            )
            .with_for_update(skip_locked=True)
        ).all()
        for job in jobs:
            if job.status == "cancelling":
                set_status(session, job, "cancelled", reason="its worker stopped")
            elif job.attempts >= MAX_ATTEMPTS:
                fail(
                    session, job, "worker_lost",
                    f"The worker running this job stopped {job.attempts} times; giving up.",
                )  # fmt: skip
            else:
                set_status(session, job, "queued", reason="its worker stopped; requeued")
                job.dispatched_at = None  # due for the outbox until a dispatch succeeds
                requeue.append(job.id)
    return requeue


def reap_and_requeue(resources: Resources, dispatcher: Dispatcher) -> list[str]:
    """One reaper round: settle stale jobs and hand the requeued ones to a worker (those the
    dispatcher refuses stay due, and the outbox sweeper sends them later)."""
    requeued = reap(resources)
    outbox.dispatch_all(resources.sessionmaker, dispatcher, [Due(RUN_JOB, i) for i in requeued])
    return requeued

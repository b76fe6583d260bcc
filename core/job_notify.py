"""Job event notifications: on Postgres, appending a job event also NOTIFYs its job id.

The notification is sent in the writer's transaction, so Postgres delivers it at commit (and
never for a rollback): a follower that LISTENs (the API's event streams) reads the new event
as soon as it is visible, instead of polling the table. SQLite has nothing of the kind; there
followers poll.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session

CHANNEL = "xai_job_events"
"""The channel; each notification's payload is the id of the job whose feed grew."""


def notify_job_event(session: Session, job_id: str) -> None:
    """Tell listeners, at commit, that ``job_id`` has a new event (Postgres only; repeats
    within one transaction are folded into one notification by Postgres)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            text("SELECT pg_notify(:channel, :job_id)"), {"channel": CHANNEL, "job_id": job_id}
        )

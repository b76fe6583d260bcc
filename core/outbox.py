"""The dispatch outbox: the database says what must be handed to a worker, not the broker.

A job (``queued``) or an upload (``pending``) is committed first and dispatched after; the
row's ``dispatched_at`` is set once the dispatcher took it. When the dispatch fails after the
commit (the broker is down, a blip, the process died in between), the row is left saying so,
and ``sweep`` — run periodically by the housekeeping worker or the embedded server's loop —
dispatches it again. Nothing is stuck because a message was lost: the worst a duplicate
message can do is be skipped, since a task carries only the record id and the worker claims
the row (``worker.runner``) before it does anything.

What is due:

- never dispatched, and older than ``dispatch_grace_seconds`` (the request that created it had
  its chance and did not report success);
- dispatched more than ``redispatch_seconds`` ago and still not picked up (the broker lost the
  message: Redis without persistence restarted). Set it above the longest wait a job has in the
  queue behind others, or accept a skipped duplicate per wait. When the queue is seen empty,
  ``lost_message_seconds`` is enough: nothing waits in it for that row.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from core.dispatch import RUN_JOB, VALIDATE_DATASET, VALIDATE_MODEL, Dispatcher
from core.settings import Settings
from core.tables import DatasetRecord, Job, ModelRecord, utcnow

log = logging.getLogger("core.outbox")

TABLES: dict[str, type[Job] | type[ModelRecord] | type[DatasetRecord]] = {
    RUN_JOB: Job,
    VALIDATE_MODEL: ModelRecord,
    VALIDATE_DATASET: DatasetRecord,
}
"""Which table each task works on; the sweeper reads them all."""


@dataclass(frozen=True)
class Due:
    task: str
    record_id: str


def dispatch(
    factory: sessionmaker[Session], dispatcher: Dispatcher, task: str, record_id: str
) -> bool:
    """Hand ``record_id`` to a worker and record that it was; ``False`` when the dispatcher
    refused (the row stays due, and the sweeper tries again). Never raises for the broker."""
    try:
        dispatcher.submit(task, record_id)
    except (
        Exception
    ) as exc:  # the broker's errors are many (kombu, redis, socket): all mean "later"
        log.warning("dispatching %s(%s) failed, the sweeper will retry: %s", task, record_id, exc)
        return False
    table = TABLES[task]
    try:
        with factory() as session, session.begin():
            session.execute(
                update(table).where(table.id == record_id).values(dispatched_at=utcnow())
            )
    except Exception as exc:  # the task is on its way; at worst the sweeper sends a duplicate
        log.warning("recording the dispatch of %s failed: %s", record_id, exc)
    return True


def due(
    session: Session, grace_seconds: float, redispatch_seconds: float, now: datetime | None = None
) -> list[Due]:
    """Rows waiting for a worker that no live dispatch covers, oldest first."""
    now = now or utcnow()
    fresh = now - timedelta(seconds=grace_seconds)
    lost = now - timedelta(seconds=redispatch_seconds)
    found: list[tuple[datetime, Due]] = []
    for task, table in TABLES.items():
        waiting = table.status == ("queued" if table is Job else "pending")
        statement = select(table.id, table.created_at).where(
            waiting,
            or_(
                (table.dispatched_at.is_(None)) & (table.created_at < fresh),
                table.dispatched_at < lost,
            ),
        )
        if table is not Job:
            statement = statement.where(table.deleted_at.is_(None))
        found += [
            (created, Due(task, record_id)) for record_id, created in session.execute(statement)
        ]
    return [item for _, item in sorted(found, key=lambda pair: pair[0])]


def waiting(session: Session) -> list[Due]:
    """Every row waiting for a worker, dispatched or not (a restarted embedded server, whose
    in-memory queue is gone, dispatches them all)."""
    return due(session, grace_seconds=0, redispatch_seconds=0, now=utcnow() + timedelta(days=1))


def sweep(factory: sessionmaker[Session], dispatcher: Dispatcher, settings: Settings) -> list[Due]:
    """Dispatch what is due; return what was handed over.

    When the queue is empty, a row handed over more than ``lost_message_seconds`` ago and still
    waiting has no message anywhere (a worker holds only the task it runs): the broker lost it
    (Redis restarted without persistence), so it is due at once, not after ``redispatch_seconds``.
    """
    redispatch = settings.redispatch_seconds
    if _queue_depth(dispatcher) == 0:
        redispatch = min(redispatch, settings.lost_message_seconds)
    with factory() as session:
        items = due(session, settings.dispatch_grace_seconds, redispatch)
    return dispatch_all(factory, dispatcher, items)


def _queue_depth(dispatcher: Dispatcher) -> int | None:
    try:
        return dispatcher.queue_depth()
    except Exception:  # the broker is away: nothing is sent this round anyway
        return None


def dispatch_all(
    factory: sessionmaker[Session], dispatcher: Dispatcher, items: list[Due]
) -> list[Due]:
    """Dispatch ``items`` in order; stop at the first refusal (the broker is down for all)."""
    sent = []
    for item in items:
        if not dispatch(factory, dispatcher, item.task, item.record_id):
            break
        sent.append(item)
    if sent:
        log.info("outbox: dispatched %d waiting record(s)", len(sent))
    return sent

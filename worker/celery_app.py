"""The Celery workers of the distributed deployment: GPU workers for jobs, a light one for
housekeeping, and beat.

    celery -A worker.celery_app worker --queues compress --concurrency 1       # one per GPU
    celery -A worker.celery_app worker --queues housekeeping --pool threads --concurrency 4
    celery -A worker.celery_app beat      # exactly one: reaper, outbox sweeper, webhook sender

Tasks carry only a record id. Jobs are acknowledged late and rejected when the worker is lost,
one task at a time per process (prefetch 1), and a fresh process per task so GPU memory is
returned between jobs. Housekeeping (reaping dead workers' jobs, dispatching what the outbox
says is due, sending webhooks) is routed to its own queue, so it never waits behind a
three-hour job on the concurrency-1 GPU worker.

A dead worker's job comes back through beat -> reaper -> requeue within ``stale_job_seconds``
plus one reaper interval; its unacknowledged message is redelivered once the broker's
visibility timeout (the job's hard time limit plus a minute) has passed, and is then skipped
by the claim, since the row says the job is running elsewhere or finished.

A worker asked to stop (SIGTERM) lets its job or validation run on for
``worker_shutdown_grace_seconds``, then hands it back: the job is ``queued`` again, fenced by
its attempt, and dispatched to another worker at once (``worker.shutdown``).

Each job and validation runs in a child of the pool process under the memory and time
limits (``worker.task_process``), which records a child killed by a limit; Celery's own hard
limit, a little longer, is the backstop for the pool process around it.
"""

from __future__ import annotations

from celery import Celery

from core import outbox
from core.dispatch import PUBLISH_RETRY
from core.settings import get_settings
from core.webhook_sender import deliver_due
from worker.reaper import reap_and_requeue
from worker.resources import default_resources
from worker.runner import TRANSIENT
from worker.shutdown import hand_back_after
from worker.task_process import ChildTransientFailure, run_in_child
from worker.tasks import DELIVER_WEBHOOKS, HANDLERS, HOUSEKEEPING, REAP, SWEEP

settings = get_settings()
VISIBILITY_MARGIN_SECONDS = 60
CHILD_MARGIN_SECONDS = 120
app = Celery("xai-compress", broker=settings.redis_url or "redis://127.0.0.1:6379/0")
app.conf.update(
    task_default_queue=settings.queue_name,
    task_routes={name: {"queue": settings.housekeeping_queue} for name in HOUSEKEEPING},
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    worker_max_tasks_per_child=1,
    task_time_limit=settings.job_time_limit + CHILD_MARGIN_SECONDS,
    broker_transport_options={
        "socket_timeout": 10.0,  # above the 1 s BRPOP poll; a hung broker is noticed
        "socket_connect_timeout": 5.0,
        "visibility_timeout": settings.job_time_limit
        + CHILD_MARGIN_SECONDS
        + VISIBILITY_MARGIN_SECONDS,
    },
    task_publish_retry_policy=PUBLISH_RETRY,
    broker_connection_retry_on_startup=True,
    broker_connection_max_retries=None,  # a worker outlives any broker outage
    task_ignore_result=True,
    beat_schedule={
        name: {"task": task, "schedule": every, "options": {"expires": every}}
        for name, task, every in (
            ("reap-stale-jobs", REAP, settings.reap_interval_seconds),
            ("sweep-outbox", SWEEP, settings.sweep_interval_seconds),
            ("deliver-webhooks", DELIVER_WEBHOOKS, 5.0),
        )
    },  # a round that waited past its interval expires: the next one does its work
)


class JobQueue:
    """The outbox's dispatcher inside a worker: jobs and validations go to the job queue."""

    def submit(self, task: str, record_id: str) -> None:
        app.send_task(task, args=[record_id], queue=settings.queue_name)

    def check(self) -> None:
        with app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1)

    def queue_depth(self) -> int | None:
        with app.connection_for_write() as connection:
            return int(connection.default_channel.client.llen(settings.queue_name))


def _register(name: str) -> None:
    # A dependency that is down (the database before the claim, the store while validating)
    # retries the task with backoff instead of dropping it; the row decides what it then does.
    @app.task(
        name=name,
        autoretry_for=(*TRANSIENT, ChildTransientFailure),
        retry_backoff=2,
        retry_backoff_max=60,
        max_retries=60,
    )
    def task(record_id: str) -> str:
        resources = default_resources()
        outcome = run_in_child(resources, name, record_id, start="fork")
        if outcome == "handed_back":  # the worker is stopping: another one takes it now
            outbox.dispatch(resources.sessionmaker, JobQueue(), name, record_id)
        return outcome


for _name in HANDLERS:
    _register(_name)
hand_back_after(settings.worker_shutdown_grace_seconds, frozenset(HANDLERS))


@app.task(name=REAP)
def reap_stale_jobs() -> list[str]:
    return reap_and_requeue(default_resources(), JobQueue())


@app.task(name=SWEEP)
def sweep_outbox() -> int:
    resources = default_resources()
    return len(outbox.sweep(resources.sessionmaker, JobQueue(), resources.settings))


@app.task(name=DELIVER_WEBHOOKS)
def deliver_webhooks() -> int:
    resources = default_resources()
    return deliver_due(resources.sessionmaker, resources.settings, budget_seconds=4.0)

"""The Celery worker of the distributed deployment.

    celery -A worker.celery_app worker --queues compress --concurrency 1
    celery -A worker.celery_app beat          # the stale-job reaper, every minute

Tasks carry only a record id. Acknowledged late and rejected when the worker is lost, so a
crashed worker's job is delivered again; one task at a time per process (prefetch 1), and a
fresh process per task so GPU memory is returned between jobs.
"""

from __future__ import annotations

from celery import Celery

from core.settings import get_settings
from core.webhook_sender import deliver_due
from worker.reaper import reap
from worker.resources import default_resources
from worker.tasks import DELIVER_WEBHOOKS, HANDLERS, REAP, RUN_JOB

settings = get_settings()
app = Celery("xai-compress", broker=settings.redis_url or "redis://127.0.0.1:6379/0")
app.conf.update(
    task_default_queue=settings.queue_name,
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    worker_max_tasks_per_child=1,
    task_soft_time_limit=settings.job_soft_time_limit,
    task_time_limit=settings.job_time_limit,
    broker_transport_options={"visibility_timeout": settings.job_time_limit + 600},
    broker_connection_retry_on_startup=True,
    task_ignore_result=True,
    beat_schedule={
        "reap-stale-jobs": {"task": REAP, "schedule": 60.0},
        "deliver-webhooks": {"task": DELIVER_WEBHOOKS, "schedule": 5.0},
    },
)


def _register(name: str) -> None:
    handler = HANDLERS[name]

    @app.task(name=name)
    def task(record_id: str) -> str:
        return handler(default_resources(), record_id)


for _name in HANDLERS:
    _register(_name)


@app.task(name=REAP)
def reap_stale_jobs() -> list[str]:
    requeued = reap(default_resources())
    for job_id in requeued:
        app.send_task(RUN_JOB, args=[job_id], queue=settings.queue_name)
    return requeued


@app.task(name=DELIVER_WEBHOOKS)
def deliver_webhooks() -> int:
    resources = default_resources()
    return deliver_due(resources.sessionmaker, resources.settings, budget_seconds=4.0)

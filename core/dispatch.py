"""How the API hands work to workers without importing them.

The API only knows this interface. In the distributed deployment it is a Celery client that
sends tasks *by name* (the API never imports the worker, so never torch); in the embedded
default the launcher injects an in-process dispatcher from ``launcher.embedded``.
"""

from __future__ import annotations

from typing import Protocol

RUN_JOB = "xai.run_job"
VALIDATE_MODEL = "xai.validate_model"
VALIDATE_DATASET = "xai.validate_dataset"


class Dispatcher(Protocol):
    def submit(self, task: str, record_id: str) -> None:
        """Queue ``task`` for ``record_id``; the database row carries everything else."""

    def check(self) -> None:
        """Raise if work cannot be queued right now (readiness)."""

    def queue_depth(self) -> int | None:
        """Tasks waiting, when the broker can tell."""


BROKER_OPTIONS = {"socket_timeout": 2.0, "socket_connect_timeout": 2.0}
"""A hung or unreachable Redis fails a send within seconds instead of hanging the request."""
PUBLISH_RETRY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.5, "interval_max": 0.5}
"""A send retries once; past that the row stays due and the outbox sweeper sends it later."""


class CeleryDispatcher:
    def __init__(self, broker_url: str, queue: str) -> None:
        from celery import Celery

        self.app = Celery("xai-compress", broker=broker_url)
        self.app.conf.update(
            broker_connection_retry_on_startup=True,
            broker_transport_options=BROKER_OPTIONS,
            task_publish_retry_policy=PUBLISH_RETRY,
        )
        self.queue = queue
        self.broker_url = broker_url

    def submit(self, task: str, record_id: str) -> None:
        """Blocking (it talks to the broker): call it off the event loop."""
        self.app.send_task(task, args=[record_id], queue=self.queue)

    def check(self) -> None:
        with self.app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=2)

    def queue_depth(self) -> int | None:
        import redis

        client = redis.Redis.from_url(self.broker_url, socket_timeout=2)
        try:
            return int(client.llen(self.queue))
        finally:
            client.close()

"""The embedded deployment's dispatcher: a background thread of this process runs the tasks,
one at a time, each in a child process under limits (``worker.task_process``), so a job that
runs out of memory or time never takes the API down with it.

The API receives it through the ``Dispatcher`` seam (``core.dispatch``) from the embedded
launcher, so the API never imports the worker. Housekeeping (the stale-job reaper, the outbox
sweeper and the webhook sender) runs on periodic threads beside it.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

from core import outbox
from core.settings import Settings
from core.webhook_sender import WebhookSender
from worker.reaper import reap_and_requeue
from worker.resources import Resources
from worker.task_process import run_in_child

log = logging.getLogger("worker.in_process")
WEBHOOK_INTERVAL = 1.0


class InProcessDispatcher:
    """Runs tasks one at a time on a background thread, in submission order."""

    def __init__(self, resources: Resources) -> None:
        self.resources = resources
        self.tasks: queue.Queue[tuple[str, str] | None] = queue.Queue()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._work, daemon=True, name="embedded-worker")
        settings = resources.settings if resources is not None else Settings(redis_url=None)
        self.reaper = self._periodic("embedded-reaper", settings.reap_interval_seconds, self._reap)
        self.sweeper = self._periodic(
            "embedded-sweeper", settings.sweep_interval_seconds, self._sweep
        )
        self.webhooks = (
            WebhookSender(resources.sessionmaker, resources.settings) if resources else None
        )
        self.sender = self._periodic("embedded-webhooks", WEBHOOK_INTERVAL, self._send)

    def start(self) -> InProcessDispatcher:
        self.thread.start()
        self.reaper.start()
        self.sweeper.start()
        self.sender.start()
        return self

    def submit(self, task: str, record_id: str) -> None:
        self.tasks.put((task, record_id))

    def check(self) -> None:
        if not self.thread.is_alive():
            raise RuntimeError("the embedded worker thread is not running")

    def queue_depth(self) -> int | None:
        return self.tasks.qsize()

    def join(self) -> None:
        """Wait until every submitted task has run."""
        self.tasks.join()

    def stop(self) -> None:
        """Finish the task at hand, then stop the worker and the periodic threads."""
        self.stopping.set()
        self.tasks.put(None)
        self.thread.join(timeout=60)
        if self.webhooks is not None:  # attempts in flight finish (each has a deadline)
            self.webhooks.close()
        if self.resources is not None:
            self.resources.close()

    def _work(self) -> None:
        while (item := self.tasks.get()) is not None:
            task, record_id = item
            try:
                run_in_child(self.resources, task, record_id, start="forkserver")
            except Exception:
                log.exception("task %s(%s) failed", task, record_id)
            finally:
                self.tasks.task_done()
        self.tasks.task_done()

    def _periodic(self, name: str, interval: float, action: Callable[[], None]) -> threading.Thread:
        """A thread running ``action`` every ``interval`` seconds until stop(); a failed round
        is logged and the next one runs anyway."""

        def loop() -> None:
            while not self.stopping.wait(interval):
                try:
                    action()
                except Exception:
                    log.exception("%s round failed", name)

        return threading.Thread(target=loop, daemon=True, name=name)

    def _send(self) -> None:
        """Start webhook deliveries that are due (first attempts and retries); attempts run
        on the sender's own pool, so a slow endpoint never holds up this loop."""
        if self.webhooks is not None:
            self.webhooks.tick()

    def _reap(self) -> None:
        reap_and_requeue(self.resources, self)

    def _sweep(self) -> None:
        """Dispatch what the database says is waiting and no dispatch covers (core.outbox)."""
        outbox.sweep(self.resources.sessionmaker, self, self.resources.settings)

"""The embedded server: SQLite, local storage and an in-process worker, with no settings.

    python -m worker.embedded            # what `make run` runs

It migrates the database, makes sure a default project and API key exist (the key is kept in
``<data_dir>/api-key`` with mode 0600 and printed), requeues jobs a previous run left behind,
and serves the same FastAPI app as the distributed deployment, with the same job runner
working through a queue in a background thread.
"""

from __future__ import annotations

import argparse
import logging
import os
import queue
import threading
from collections.abc import Callable
from pathlib import Path

import uvicorn
from alembic import command
from alembic.config import Config
from sqlalchemy import select

from api.auth import create_key, create_project, hash_key
from api.dispatch import RUN_JOB
from api.main import create_app
from api.models import ApiKey, Project
from api.settings import Settings
from api.webhooks import deliver_due
from worker.reaper import queued_jobs, reap
from worker.resources import Resources, build_resources
from worker.tasks import HANDLERS

log = logging.getLogger("worker.embedded")
DEFAULT_PROJECT = "default"
REAP_INTERVAL = 60.0
WEBHOOK_INTERVAL = 1.0


class InProcessDispatcher:
    """Runs tasks one at a time on a background thread, in submission order."""

    def __init__(self, resources: Resources) -> None:
        self.resources = resources
        self.tasks: queue.Queue[tuple[str, str] | None] = queue.Queue()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._work, daemon=True, name="embedded-worker")
        self.reaper = self._periodic("embedded-reaper", REAP_INTERVAL, self._reap)
        self.sender = self._periodic("embedded-webhooks", WEBHOOK_INTERVAL, self._send)

    def start(self) -> InProcessDispatcher:
        self.thread.start()
        self.reaper.start()
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

    def _work(self) -> None:
        while (item := self.tasks.get()) is not None:
            task, record_id = item
            try:
                HANDLERS[task](self.resources, record_id)
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
        """Webhook deliveries that are due (first attempts and retries)."""
        deliver_due(self.resources.sessionmaker, self.resources.settings)

    def _reap(self) -> None:
        for job_id in reap(self.resources):
            self.submit(RUN_JOB, job_id)


def migrate(settings: Settings) -> None:
    config = Config(str(Path(__file__).resolve().parents[1] / "alembic.ini"))
    config.set_main_option("sqlalchemy.url", settings.resolved_database_url)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    command.upgrade(config, "head")


def default_key(resources: Resources) -> str:
    """The default project's key, created on first start and kept in the data directory."""
    key_file = resources.settings.data_dir / "api-key"
    with resources.sessionmaker() as session, session.begin():
        if key_file.exists():
            key = key_file.read_text().strip()
            if session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(key))):
                return key
        project = session.scalar(select(Project).where(Project.name == DEFAULT_PROJECT))
        project = project or create_project(session, DEFAULT_PROJECT)
        key = create_key(session, project, name="embedded default").key
    key_file.write_text(key + "\n")
    os.chmod(key_file, 0o600)
    return key


def requeue_leftovers(resources: Resources, dispatcher: InProcessDispatcher) -> None:
    """Jobs a previous run left queued or running are worked on again, not lost."""
    for job_id in reap(resources) + queued_jobs(resources):
        dispatcher.submit(RUN_JOB, job_id)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = Settings(redis_url=None)
    migrate(settings)
    resources = build_resources(settings)
    dispatcher = InProcessDispatcher(resources).start()
    key = default_key(resources)
    requeue_leftovers(resources, dispatcher)
    print(f"\n  xai-compress at http://{args.host}:{args.port}  (docs: /docs)")
    print(f"  API key (project '{DEFAULT_PROJECT}'): {key}")
    print(f"  export XAI_COMPRESS_API_KEY={key}\n", flush=True)
    uvicorn.run(create_app(settings, dispatcher), host=args.host, port=args.port)


if __name__ == "__main__":
    main()

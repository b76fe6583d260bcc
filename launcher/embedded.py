"""The embedded server: SQLite, local storage and an in-process worker, with no settings.

    python -m launcher.embedded            # what `make run` runs

This is the composition root of the embedded deployment: it wires the HTTP layer (``api``)
to the in-process dispatcher (``worker``), which neither may import of the other. It migrates
the database, makes sure a default project and API key exist (the key is kept in
``<data_dir>/api-key`` with mode 0600 and printed), requeues jobs and uploads a previous run
left behind, and serves the same FastAPI app as the distributed deployment, with the same job
runner working through a queue in a background thread.
"""

from __future__ import annotations

import argparse
import logging
import os

import uvicorn
from sqlalchemy import select

from api.main import create_app
from core import outbox
from core.db import upgrade_schema
from core.keys import create_key, create_project, hash_key
from core.settings import Settings
from core.tables import ApiKey, Project
from worker.in_process import InProcessDispatcher
from worker.reaper import reap
from worker.resources import Resources, build_resources

DEFAULT_PROJECT = "default"


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
    """Jobs a previous run left queued or running, and uploads it left pending, are worked on
    again, not lost: the in-memory queue died with that run, so everything waiting is due."""
    reap(resources)  # its running jobs are queued again, and dispatched below
    with resources.sessionmaker() as session:
        waiting = outbox.waiting(session)
    outbox.dispatch_all(resources.sessionmaker, dispatcher, waiting)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = Settings(redis_url=None)
    upgrade_schema(settings)
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

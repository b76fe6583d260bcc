"""The FastAPI application factory. Everything it needs is injected or built from settings.

``uvicorn api.main:create_app --factory`` serves the distributed deployment (REDIS_URL set);
``python -m launcher.embedded`` serves the embedded one with an in-process worker.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from api import incoming, telemetry
from api.body_limit import BodyLimit
from api.dashboard import mount as mount_dashboard
from api.draining import on_stop_signal
from api.event_wakeups import EventWakeups
from api.incoming import incoming_dir
from api.problem_details import install_handlers
from api.routes import health, jobs, reports, webhooks
from api.routes.uploads import DATASET, MODEL, MULTIPART_OVERHEAD_BYTES, upload_router
from api.schemas import PROBLEM_RESPONSES
from core.db import make_read_sessionmaker, make_sessionmaker
from core.db_guard import guarded_engine
from core.dispatch import CeleryDispatcher, Dispatcher
from core.settings import Settings, get_settings
from core.storage import make_storage
from core.webhook_delivery import webhook_policy

DESCRIPTION = """
Compression as a service for neural networks, guided by DeepLIFT relevance.

Upload a model and a labelled dataset, submit a job, follow it, download the result.
Every error is an RFC 9457 `application/problem+json` body with a stable `code`.
Authenticate with `Authorization: Bearer <API key>`.
"""


def create_app(settings: Settings | None = None, dispatcher: Dispatcher | None = None) -> FastAPI:
    settings = settings or get_settings()
    if dispatcher is None:
        if settings.redis_url is None:
            raise RuntimeError(
                "REDIS_URL is not set: run the embedded server with `python -m launcher.embedded` "
                "(make run), or set REDIS_URL for the distributed deployment"
            )
        dispatcher = CeleryDispatcher(settings.redis_url, settings.queue_name)
    engine, db_guard = guarded_engine(settings)  # 503 at once while Postgres is away
    directory = incoming_dir(settings)

    wakeups = EventWakeups(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        sweeper = asyncio.create_task(_sweep_incoming(directory, settings))
        if db_guard:
            db_guard.start()
        await wakeups.start()
        on_stop_signal(wakeups.drain)  # event streams end, so the server's drain can finish
        yield
        await wakeups.stop()
        sweeper.cancel()
        if db_guard:
            db_guard.stop()
        engine.dispose()  # return every pooled connection when the server stops

    app = FastAPI(
        title="xai-compress",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.db_guard = db_guard  # None on SQLite
    app.state.sessionmaker = make_sessionmaker(engine)  # transactions that may write
    app.state.read_sessionmaker = make_read_sessionmaker(engine)  # never wait for writers
    app.state.storage = make_storage(settings)
    app.state.event_wakeups = wakeups  # SSE streams wake on Postgres NOTIFY
    app.state.dispatcher = dispatcher
    app.state.incoming_dir = directory
    app.state.outbound_policy = webhook_policy(settings)  # tests swap the resolver
    upload_limits = {
        "/v1/models": settings.max_model_bytes + MULTIPART_OVERHEAD_BYTES,
        "/v1/datasets": settings.max_dataset_bytes + MULTIPART_OVERHEAD_BYTES,
    }
    app.add_middleware(
        BodyLimit,
        limit_for=lambda scope: upload_limits.get(scope["path"], settings.max_request_body_bytes),
    )
    install_handlers(app)
    telemetry.install(app)
    app.include_router(health.router)
    for router in (
        upload_router(MODEL),
        upload_router(DATASET),
        jobs.router,
        reports.router,
        webhooks.router,
    ):
        app.include_router(router, responses=PROBLEM_RESPONSES)
    mount_dashboard(app)
    return app


INCOMING_SWEEP_SECONDS = 300.0


async def _sweep_incoming(directory: Path, settings: Settings) -> None:
    """At start and every few minutes: remove what killed or stalled uploads left."""
    while True:
        try:
            await run_in_threadpool(
                incoming.sweep, directory, settings.upload_temp_max_idle_seconds
            )
        except Exception:  # a sweep that failed is tried again next time
            logging.getLogger("api").exception("sweeping %s failed", directory)
        await asyncio.sleep(INCOMING_SWEEP_SECONDS)

"""The FastAPI application factory. Everything it needs is injected or built from settings.

``uvicorn api.main:create_app --factory`` serves the distributed deployment (REDIS_URL set);
``python -m worker.embedded`` serves the embedded one with an in-process worker.
"""

from __future__ import annotations

from fastapi import FastAPI

from api import telemetry
from api.db import make_engine, make_sessionmaker
from api.dispatch import CeleryDispatcher, Dispatcher
from api.errors import install_handlers
from api.routes import health, jobs, webhooks
from api.routes.uploads import DATASET, MODEL, upload_router
from api.schemas import PROBLEM_RESPONSES
from api.settings import Settings, get_settings
from api.storage import make_storage

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
                "REDIS_URL is not set: run the embedded server with `python -m worker.embedded` "
                "(make run), or set REDIS_URL for the distributed deployment"
            )
        dispatcher = CeleryDispatcher(settings.redis_url, settings.queue_name)
    app = FastAPI(title="xai-compress", version="0.1.0", description=DESCRIPTION)
    engine = make_engine(settings)
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessionmaker = make_sessionmaker(engine)
    app.state.storage = make_storage(settings)
    app.state.dispatcher = dispatcher
    install_handlers(app)
    telemetry.install(app)
    app.include_router(health.router)
    for router in (upload_router(MODEL), upload_router(DATASET), jobs.router, webhooks.router):
        app.include_router(router, responses=PROBLEM_RESPONSES)
    return app

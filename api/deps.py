"""FastAPI dependencies: everything a route needs arrives injected, nothing is global."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Header, Request
from sqlalchemy.orm import Session

from core.db import READ_ONLY
from core.dispatch import Dispatcher
from core.keys import project_for_key
from core.settings import Settings
from core.storage import Storage

READING_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
REQUEST_SESSIONS = 20
"""Requests holding a session at once; the others wait without holding a thread. Below the
Postgres pool (10 + 20 overflow), so the short sessions of streams and health checks still get
a connection, and a thread never waits for a connection that only another waiting request
could give back."""


def settings_of_app(request: Request) -> Settings:
    return request.app.state.settings


def get_session(request: Request) -> Iterator[Session]:
    """The request's one session: the API key lookup and the route share it.

    A GET reads without the write lock (SQLite: BEGIN DEFERRED); any other method may write
    and takes it (BEGIN IMMEDIATE), but only once the route itself starts its transaction (see
    ``get_project_id``). It commits when the route returns, before the response is sent, so a
    client never sees a success the database did not keep.
    """
    state = request.app.state
    factory = state.read_sessionmaker if request.method in READING_METHODS else state.sessionmaker
    with factory() as session:
        yield session
        session.commit()


def get_storage(request: Request) -> Storage:
    return request.app.state.storage


def get_dispatcher(request: Request) -> Dispatcher:
    return request.app.state.dispatcher


SessionDep = Annotated[
    Session, Depends(get_session, scope="function", max_concurrency=REQUEST_SESSIONS)
]


def get_project_id(
    request: Request,
    session: SessionDep,
    authorization: Annotated[str | None, Header(description="Bearer <API key>")] = None,
) -> str:
    """The caller's project, looked up in the request's session.

    In a writing request the lookup is a read transaction of its own, ended at once: the
    write lock is taken only when the route starts writing, in this session or its own.
    """
    if request.method in READING_METHODS:
        return project_for_key(session, authorization)
    session.connection(execution_options={READ_ONLY: True})
    try:
        return project_for_key(session, authorization)
    finally:
        session.commit()


def get_project_id_alone(
    request: Request,
    authorization: Annotated[str | None, Header(description="Bearer <API key>")] = None,
) -> str:
    """The caller's project, looked up in a short read session of its own, for routes that
    keep no request session: uploads (a long body arrives before the database is touched)
    and job creation (its own transactions, then the broker). Nothing (a session, a
    connection, a place among ``REQUEST_SESSIONS``) is held while they wait."""
    with request.app.state.read_sessionmaker() as session:
        return project_for_key(session, authorization)


SettingsDep = Annotated[Settings, Depends(settings_of_app)]
StorageDep = Annotated[Storage, Depends(get_storage)]
DispatcherDep = Annotated[Dispatcher, Depends(get_dispatcher)]
ProjectDep = Annotated[str, Depends(get_project_id)]
ProjectAloneDep = Annotated[str, Depends(get_project_id_alone)]

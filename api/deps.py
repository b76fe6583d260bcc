"""FastAPI dependencies: everything a route needs arrives injected, nothing is global."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Header, Request
from sqlalchemy.orm import Session

from core.dispatch import Dispatcher
from core.keys import project_for_key
from core.settings import Settings
from core.storage import Storage


def settings_of_app(request: Request) -> Settings:
    return request.app.state.settings


def get_session(request: Request) -> Iterator[Session]:
    with request.app.state.sessionmaker() as session, session.begin():
        yield session


def get_storage(request: Request) -> Storage:
    return request.app.state.storage


def get_dispatcher(request: Request) -> Dispatcher:
    return request.app.state.dispatcher


def get_project_id(
    request: Request,
    authorization: Annotated[str | None, Header(description="Bearer <API key>")] = None,
) -> str:
    with request.app.state.sessionmaker() as session:
        return project_for_key(session, authorization)


SettingsDep = Annotated[Settings, Depends(settings_of_app)]
SessionDep = Annotated[Session, Depends(get_session)]
StorageDep = Annotated[Storage, Depends(get_storage)]
DispatcherDep = Annotated[Dispatcher, Depends(get_dispatcher)]
ProjectDep = Annotated[str, Depends(get_project_id)]

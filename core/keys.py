"""API keys: random, shown once, stored as SHA-256, each bound to one project.

A key is ``xc_<prefix>_<secret>``; the prefix is kept in clear so a user can tell their keys
apart in listings, the hash identifies the key on every request.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.ids import new_id
from core.problems import Problem
from core.tables import ApiKey, Project


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class CreatedKey:
    key: str
    key_id: str
    project_id: str


def create_project(session: Session, name: str) -> Project:
    project = Project(id=new_id("project"), name=name)
    session.add(project)
    session.flush()
    return project


def create_key(session: Session, project: Project, name: str = "") -> CreatedKey:
    prefix = secrets.token_hex(4)
    key = f"xc_{prefix}_{secrets.token_urlsafe(32)}"
    record = ApiKey(
        id=new_id("api_key"),
        project_id=project.id,
        name=name,
        prefix=prefix,
        key_hash=hash_key(key),
    )
    session.add(record)
    session.flush()
    return CreatedKey(key, record.id, project.id)


def project_for_key(session: Session, authorization: str | None) -> str:
    """The project id of a valid ``Authorization: Bearer <key>``, or a 401 problem."""
    if not authorization or not authorization.lower().startswith("bearer "):
        raise Problem(
            401, "unauthorized", "Missing API key",
            "Send the key as 'Authorization: Bearer <key>'.",
        )  # fmt: skip
    key = authorization[7:].strip()
    record = session.scalar(
        select(ApiKey).where(ApiKey.key_hash == hash_key(key), ApiKey.revoked_at.is_(None))
    )
    if record is None:
        raise Problem(401, "unauthorized", "Invalid API key", "The API key is unknown or revoked.")
    return record.project_id

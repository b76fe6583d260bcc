"""Find a row the caller's project owns; anything else (missing, another project's, deleted)
answers the same 404, so ids of other projects reveal nothing."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy.orm import Session

from core.problems import not_found

T = TypeVar("T")


def owned(session: Session, table: type[T], record_id: str, project_id: str, kind: str) -> T:
    record: Any = session.get(table, record_id)
    if (
        record is None
        or record.project_id != project_id
        or getattr(record, "deleted_at", None) is not None
    ):
        raise not_found(kind, record_id)
    return record

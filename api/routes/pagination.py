"""Cursor pagination, newest first: the cursor is the id of the last item seen."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, or_, select
from sqlalchemy.orm import Session

from core.problems import Problem

MAX_LIMIT = 100


def page(
    session: Session,
    statement: Select[Any],
    table: Any,
    after: str | None,
    limit: int,
    render: Callable[[Any], Any],
    scope: ColumnElement[bool],
) -> dict[str, Any]:
    """One page of ``statement`` (already scoped to a project) after the cursor, each row
    rendered, as the API's ``Page`` body.

    The cursor is looked up within ``scope`` (the caller's project, or the endpoint whose
    deliveries are listed): another tenant's id must answer exactly as an unknown one does.
    """
    if after is not None:
        cursor = session.execute(
            select(table.created_at, table.id).where(table.id == after, scope)
        ).first()
        if cursor is None:
            raise Problem(400, "invalid_cursor", "Unknown cursor", f"No item with id {after!r}.")
        statement = statement.where(
            or_(
                table.created_at < cursor.created_at,
                and_(table.created_at == cursor.created_at, table.id < cursor.id),
            )
        )
    rows = session.scalars(
        statement.order_by(table.created_at.desc(), table.id.desc()).limit(limit + 1)
    ).all()
    shown, has_more = list(rows[:limit]), len(rows) > limit
    return {
        "data": [render(row) for row in shown],
        "has_more": has_more,
        "next_cursor": shown[-1].id if has_more else None,
    }
